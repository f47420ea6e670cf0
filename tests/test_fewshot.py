"""GM-NAS few-shot splitting: gradient-matching scores, partitions, routing of archs to sub-supernets, the split
tree's run directory and resume across a split."""

from __future__ import annotations

import itertools
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import searchspaces
import supernets
from nas import checkpoint
from nas.cli import main
from nas.fewshot import Node, SplitTree
from strategies import gm, partition

NB201 = searchspaces.get("nb201")
_EDGE_PARAM = re.compile(r"cells\.\d+\.edges\.([^.]+)\.")


def _tiny_batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [SimpleNamespace(x=torch.randn(16, 1, 8, 8, generator=g), y=torch.randint(0, 10, (16,), generator=g))
            for _ in range(n)]


def _brute_force(net, unit: str, candidates, batches, probes) -> np.ndarray:
    """The reference's definition written out: per repeat and candidate, the gradient of every parameter of the
    other edges (by module name), None as zeros, then 1 - cos with 1e-6 in the denominator, averaged."""
    rest = [(name, p) for name, p in net.named_parameters()
            if (m := _EDGE_PARAM.match(name)) and m.group(1) != unit]
    total = np.zeros((len(candidates), len(candidates)))
    for batch, probe in zip(batches, probes):
        vectors = []
        for choice in candidates:
            arch = NB201.make({**dict(probe.items()), unit: choice})
            loss = F.cross_entropy(net(batch.x, arch), batch.y)
            grads = torch.autograd.grad(loss, [p for _, p in rest], allow_unused=True)
            vectors.append(np.concatenate([(torch.zeros_like(p) if g is None else g).double().flatten().numpy()
                                           for (_, p), g in zip(rest, grads)]))
        for i, j in itertools.product(range(len(candidates)), repeat=2):
            a, b = vectors[i], vectors[j]
            total[i, j] += 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-6)
    return total / len(batches)


@pytest.mark.parametrize("unit", ["1<-0", "3<-2"])
def test_gradient_distances_equal_a_brute_force_computation(unit):
    torch.manual_seed(0)
    net = supernets.build(NB201, num_classes=10, in_channels=1, C=2, N=1)
    rng = np.random.default_rng(1)
    probes = [NB201.sample(rng, valid_only=True) for _ in range(3)]
    batches = _tiny_batches(3)
    candidates = NB201.decisions[NB201.label_index(unit)].candidates
    expected = _brute_force(net, unit, candidates, batches, probes)
    it = iter(probes)
    got = gm.gradient_distances(net, NB201, unit, candidates, iter(batches), lambda: next(it), repeats=3)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert not np.allclose(got, 0) and np.allclose(got, got.T)
    assert all(p.grad is None for p in net.parameters())  # scoring leaves no gradient behind


def test_shared_rest_leaves_out_the_unit_and_the_stem_and_head():
    net = supernets.build(NB201, num_classes=10, in_channels=1, C=2, N=1)
    names = {id(p): n for n, p in net.named_parameters()}
    rest = [names[id(m.param)] for m in gm.shared_rest(net, "2<-1")]
    assert rest and all(_EDGE_PARAM.match(n) and "2<-1" not in n for n in rest)
    with_head = [names[id(m.param)] for m in gm.shared_rest(net, "2<-1", include_stem_head=True)]
    assert set(rest) < set(with_head) and any(n.startswith("stem") for n in with_head)


def test_entangled_rest_masks_out_the_units_slices():
    """In the entangle build nor_conv_1x1 is the centre of nor_conv_3x3's kernel: the unit's own tensors are
    wholly its own, so they leave the vector; the other edges stay whole."""
    net = supernets.build(NB201, num_classes=10, in_channels=1, C=2, N=1, mode="entangle")
    rest = gm.shared_rest(net, "1<-0")
    owned = {id(p) for key, entries in net.choice_slices().items() if key[0] == "1<-0" for p, _ in entries}
    assert rest and not any(id(m.param) in owned for m in rest)


def test_distances_by_kind():
    a = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    b = [torch.tensor([[1.0, 0.0], [0.0, -1.0]])]
    cos = gm.distance_matrix([a, b], "cos")
    assert cos[0, 1] == pytest.approx(1.0, abs=1e-6)  # orthogonal flattened vectors
    per_filter = gm.distance_matrix([a, b], "per-filter-cos")
    assert per_filter[0, 1] == pytest.approx(0.0 + 2.0, abs=1e-5)  # filter 0 equal, filter 1 opposite
    mse = gm.distance_matrix([a, b], "mse")
    assert mse[0, 1] == pytest.approx(4.0 / 4)
    with pytest.raises(ValueError, match="accepted: cos"):
        gm.distance_matrix([a, b], "l1")


def _symmetric(n: int, rng) -> np.ndarray:
    D = rng.random((n, n))
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0)
    return D


def _all_assignments(D, sizes):
    n = len(D)
    best = None
    for bits in itertools.product([0, 1], repeat=n):
        member = np.array(bits, dtype=bool)
        if min(member.sum(), n - member.sum()) not in sizes:
            continue
        within = sum(D[i, j] for i in range(n) for j in range(i + 1, n) if member[i] == member[j])
        best = within if best is None else min(best, within)
    return best


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_partition_equals_exhaustive_search(n):
    rng = np.random.default_rng(n)
    cands = [f"op{i}" for i in range(n)]
    for _ in range(5):
        D = _symmetric(n, rng)
        balanced = partition.partition(D, cands, "balanced")
        assert balanced.within == pytest.approx(_all_assignments(D, {n // 2}))
        assert sorted(map(len, balanced.groups)) == sorted([n // 2, n - n // 2])
        any_size = partition.partition(D, cands, "any", min_group=1, edge_select="min_within")
        assert any_size.within == pytest.approx(_all_assignments(D, set(range(1, n // 2 + 1))))
        total = D[np.triu_indices(n, 1)].sum()
        assert balanced.cut == pytest.approx(total - balanced.within)
        assert sorted(c for g in balanced.groups for c in g) == sorted(cands) and balanced.groups[0][0] == "op0"


def test_graph_cut_recovers_planted_groups_of_a_long_candidate_list():
    n = 12
    planted = np.array([i % 2 == 0 for i in range(n)])
    rng = np.random.default_rng(0)
    D = np.where(planted[:, None] == planted[None, :], 0.1, 0.9) + 0.01 * _symmetric(n, rng)
    np.fill_diagonal(D, 0)
    cands = list(range(n))
    part = partition.partition(D, cands)
    assert set(part.groups[0]) == {c for c in cands if c % 2 == 0}


def test_unit_selection_rules_differ():
    """max_cut picks the unit whose groups are most separated; min_within the one whose groups are tightest."""
    parts = {"a": partition.Partition((("x",), ("y",)), within=0.1, cut=0.5),
             "b": partition.Partition((("x",), ("y",)), within=0.3, cut=2.0)}
    assert partition.select(parts, "max_cut") == "b"
    assert partition.select(parts, "min_within") == "a"


def _nb201_tree(seed: int) -> SplitTree:
    """A two-level tree of random balanced splits over NB201, as the random arm builds it."""
    rng = np.random.default_rng(seed)
    tree = SplitTree("random", [1, 2], 3)
    for node_id in ["0", "0.0", "0.1"]:
        node = tree.nodes[node_id]
        sub = tree.subspace(NB201, node)
        units = [(u, c) for u, c in sub.split_units() if sub.is_unsplit(u)]
        unit, cands = units[int(rng.integers(len(units)))]
        groups = partition.random_partition(cands, rng)
        for k, group in enumerate(groups):
            tree.nodes[f"{node_id}.{k}"] = Node(f"{node_id}.{k}", sub.restrict(unit, group).mask_json(), 0, 0)
            node.children.append(f"{node_id}.{k}")
    return tree


def test_masks_route_every_arch_to_exactly_one_sub_supernet():
    tree = _nb201_tree(3)
    leaves = [tree.subspace(NB201, n) for n in tree.leaves()]
    assert len(leaves) == 4 and sum(s.size() for s in leaves) == NB201.size()
    archs = list(NB201.enumerate())
    owners = tree.route(NB201, archs)
    for arch, owner in zip(archs[::97], owners[::97]):
        holders = [n.id for n, s in zip(tree.leaves(), leaves) if s.contains(arch)]
        assert holders == [owner]
    assert {o: owners.count(o) for o in set(owners)} == {n.id: s.size() for n, s in zip(tree.leaves(), leaves)}
    round_trip = SplitTree.from_json(json.loads(json.dumps(tree.to_json())))
    assert round_trip.route(NB201, archs[:50]) == owners[:50]


TINY_SPLIT = ["search", "--space", "nb201", "--strategy", "uniform", "--dataset", "digits", "--epochs", "4",
              "--split", "gm", "--split-epochs", "2", "--quiet", "--set", "supernet.C=4", "--set", "supernet.N=1",
              "--set", "train.batch_size=256", "--set", "split.repeats=1", "--set", "search.budget=4",
              "--set", "eval.sample_check=0", "--set", "eval.monitor_archs=0"]


def _leaf_states(run):
    tree = json.loads((run / "split.json").read_text())
    return tree, {leaf: checkpoint.load(run / "subnets" / leaf / "checkpoints" / "last.pt") for leaf in tree["leaves"]}


def _without_times(tree):
    for node in tree["nodes"].values():
        node["rows"] = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in node["rows"]]
        if node["split"]:
            node["split"].pop("seconds")
    return tree


@pytest.mark.slow
def test_split_run_resumes_bit_exact_across_a_split(tmp_path, interrupt_after):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*TINY_SPLIT, "--out", str(full)]) == 0
    interrupt_after(2)  # the root's last epoch is written, its split is not
    assert main([*TINY_SPLIT, "--out", str(cut)]) == 130
    assert json.loads((cut / "split.json").read_text())["nodes"]["0"]["children"] == []
    interrupt_after(3)  # inside the first leaf (epochs 3-4)
    assert main(["search", "--resume", str(cut), "--quiet"]) == 130
    interrupt_after.disarm()
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0
    (tree_a, states_a), (tree_b, states_b) = _leaf_states(full), _leaf_states(cut)
    assert _without_times(tree_a) == _without_times(tree_b)
    assert len(states_a) == 2
    for leaf, state in states_a.items():
        other = states_b[leaf]
        assert state["epoch"] == other["epoch"] == 4
        for key, tensor in state["model"].items():
            assert torch.equal(tensor, other["model"][key]), (leaf, key)
        assert state["strategy"]["rng"] == other["strategy"]["rng"]
    # the run directory: the split tree, a plot, per-node metrics, and the best arch of the leaves' picks
    root = tree_a["nodes"]["0"]
    assert root["split"]["unit"] in NB201.labels and set(root["split"]["scores"]) == set(NB201.labels)
    assert (full / "plots" / "split.png").stat().st_size > 0
    arch = json.loads((full / "arch.json").read_text())
    assert arch["subnet"] in tree_a["leaves"] and len(arch["leaf_picks"]) == 2
    assert tree_a["nodes"][arch["subnet"]]["mask"] and NB201.restrict_json(
        tree_a["nodes"][arch["subnet"]]["mask"]).contains(NB201.parse(arch["arch"]))
    assert all(p["evaluated"] == 2 for p in arch["leaf_picks"])  # budget 4 shared by 2 leaves
    summary = json.loads((full / "summary.json").read_text())
    per_epoch = root["rows"][0]["steps"]
    assert summary["steps"] == (2 + 2 * 2) * per_epoch  # 2 root epochs, 2 leaves x 2
    # children start from their parent at the split: the child's first row continues the parent's schedule
    child_rows = tree_a["nodes"]["0.0"]["rows"]
    assert [r["epoch"] for r in child_rows] == [3, 4] and child_rows[0]["lr"] < root["rows"][-1]["lr"]


@pytest.mark.parametrize("granularity", ["edge_op", "op_type"])
def test_pada_child_keeps_its_mask_when_it_inherits_the_parents_distribution(granularity):
    """A child loads its parent's state: its own row (edge_op) loses the mass of the candidates the split took away;
    a row shared by all edges (op_type, the reference) stays shared, and sampling keeps to the mask either way."""
    import strategies

    class Train:
        indices = torch.arange(10)

        def __len__(self):
            return 10

    class Data:
        train = Train()

    net = supernets.build(NB201, num_classes=10, in_channels=1, C=2, N=1)
    parent = strategies.get("pada", granularity=granularity)
    parent.setup(net, NB201, 0, Data())
    sub = NB201.restrict("1<-0", ["skip_connect", "nor_conv_3x3"])
    child = strategies.get("pada", granularity=granularity)
    child.setup(net.restrict(sub), sub, 0, Data())
    child.load_state_dict(parent.state_dict())
    row = child.p_host[child.slot_of[("1<-0", "none")][0]]
    allowed = [child.slot_of[("1<-0", c)][1] for c in ("skip_connect", "nor_conv_3x3")]
    assert row.sum() == pytest.approx(1.0)
    assert row[allowed].sum() == pytest.approx(1.0 if granularity == "edge_op" else 0.4)
    assert all(child.sample().choices[0] in ("skip_connect", "nor_conv_3x3") for _ in range(50))


@pytest.mark.parametrize("args, message", [
    (["--split", "gm"], "needs split.epochs"),
    (["--split-epochs", "2"], "needs split.method gm or random"),
    (["--split", "gm", "--split-epochs", "2,5"], "must all lie before the end of training"),
    (["--split", "gm", "--split-epochs", "3,2"], "not a list of split epochs"),
    (["--split", "gm", "--split-epochs", "1,2,3,4,5,6,7"], "has 6 units to split along"),
])
def test_bad_split_settings_are_one_sentence_errors(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    try:
        code = main(["search", "--dataset", "digits", "--epochs", "5", "--out", str(out), *args])
    except SystemExit as exc:  # a flag argparse refuses
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_darts_edge_scores_force_the_edge_and_leave_its_modules_out():
    """On the DARTS supernet a unit is one normal-cell edge: its candidates are forced one-hot into the probe's
    relaxed weights, and the gradient vector is every other edge's modules (the reduce cells' too), by name."""
    from searchspaces.darts import GENOTYPE_OPS, ROW_LABELS
    from supernets import ArchWeights

    space = searchspaces.get("darts")
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, in_channels=1, C=2, layers=3)
    unit = "normal:3<-1"
    row = ROW_LABELS.index(unit)
    probe = ArchWeights(torch.softmax(torch.randn(28, 8, generator=torch.Generator().manual_seed(2)), dim=1))
    batches = _tiny_batches(1)
    rest = [(n, p) for n, p in net.named_parameters() if ".edges." in n
            and not (net.cells[int(n.split(".")[1])].kind == "normal" and f".edges.{unit.split(':')[1]}." in n)]
    vectors = []
    for op in GENOTYPE_OPS:
        w = probe.weights.clone()
        w[row] = 0
        w[row, 1 + GENOTYPE_OPS.index(op)] = 1
        loss = F.cross_entropy(net(batches[0].x, ArchWeights(w)), batches[0].y)
        grads = torch.autograd.grad(loss, [p for _, p in rest], allow_unused=True)
        vectors.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for (_, p), g in zip(rest, grads)]
                                 ).double())
    V = torch.stack(vectors)
    n = V.norm(dim=1)
    expected = (1 - V @ V.T / (n[:, None] * n[None, :] + 1e-6)).numpy()
    got = gm.gradient_distances(net, space, unit, GENOTYPE_OPS, iter(batches), lambda: probe, repeats=1)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)
    child = space.restrict(unit, ["sep_conv_3x3", "skip_connect"])
    assert [u for u, _ in child.split_units()] == [u for u in ROW_LABELS[:14]]  # 3<-1 keeps two ops: still a unit
    assert not child.is_unsplit(unit) and child.is_unsplit("normal:2<-0")


def test_relaxed_strategy_in_a_darts_sub_supernet_weighs_only_the_allowed_ops():
    import strategies
    from searchspaces.darts import PRIMITIVES, ROW_LABELS

    space = searchspaces.get("darts").restrict("normal:3<-1", ["sep_conv_3x3", "skip_connect"])
    net = supernets.build(searchspaces.get("darts"), num_classes=10, in_channels=1, C=2, layers=3).restrict(space)
    strategy = strategies.get("darts")
    strategy.setup(net, space, 0)
    weights = strategy.probe(np.random.default_rng(0)).weights
    row = ROW_LABELS.index("normal:3<-1")
    allowed = {PRIMITIVES.index(o) for o in ("none", "sep_conv_3x3", "skip_connect")}
    assert all((weights[row, k] > 0) == (k in allowed) for k in range(len(PRIMITIVES)))
    assert torch.allclose(weights.sum(dim=1), torch.ones(28))
    derived = strategy.derive()
    assert space.contains(derived)


@pytest.mark.slow
def test_darts_split_run_keeps_every_leafs_pick_inside_its_edge_mask(tmp_path):
    out = tmp_path / "darts"
    """Single-path sampling and the post-training search stay inside a leaf's edge mask (the relaxed strategies'
    masked weights and derivation: test_relaxed_strategy_in_a_darts_sub_supernet_weighs_only_the_allowed_ops)."""
    assert main(["search", "--space", "darts", "--strategy", "uniform", "--dataset", "digits", "--epochs", "2",
                 "--split", "random", "--split-epochs", "1", "--quiet", "--out", str(out), "--set", "supernet.C=2",
                 "--set", "supernet.layers=3", "--set", "train.batch_size=256", "--set", "eval.sample_check=0",
                 "--set", "eval.monitor_archs=0", "--set", "search.budget=8", "--set", "search.population=4",
                 "--set", "search.sample_size=2"]) == 0
    tree = json.loads((out / "split.json").read_text())
    space = searchspaces.get("darts")
    unit = tree["nodes"]["0"]["split"]["unit"]
    assert unit.startswith("normal:") and len(tree["leaves"]) == 2
    arch = json.loads((out / "arch.json").read_text())
    for pick in arch["leaf_picks"]:
        mask = tree["nodes"][pick["subnet"]]["mask"]
        assert list(mask) == [unit] and space.restrict_json(mask).contains(space.parse(pick["arch"]))
        assert pick["method"] == "evolution" and pick["evaluated"] == 4

"""DARTS cell space: orders of the original code, Genotype and NB301 round trips (all 500 subset keys),
canonical pair order, sampling/mutation/crossover validity, masks, size, parse errors, and analytic
params/FLOPs against the DARTS paper and every NB301 subset value."""

from __future__ import annotations

import ast
import collections
import itertools
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, shared_data_dir

import searchspaces
from searchspaces import SpaceError
from searchspaces.darts import DARTS_V1, DARTS_V2, EDGE_LABELS, EDGES, GENOTYPE_OPS, PRIMITIVES, DartsSpace

NB301_FILE = "nb301/nb301_500_subset.json"


@pytest.fixture(scope="module")
def space() -> DartsSpace:
    return searchspaces.get("darts")


@pytest.fixture(scope="module")
def nb301() -> dict:
    base = shared_data_dir()
    path = base / NB301_FILE if base else None
    if path is None or not path.is_file():
        pytest.skip("shared data not found: set SUPERNAS_SHARED_DATA or put shared/data beside the project")
    return json.loads(path.read_text())["nasbench301"]["cifar10"]


def pairs_of(genotype: str) -> dict[str, list[tuple[str, int]]]:
    """The normal/reduce lists of a Genotype string, read independently of the space (ast, no eval)."""
    call = ast.parse(genotype, mode="eval").body
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("normal", "reduce")}


def sorted_pairs(pairs: list[tuple]) -> list[tuple]:
    """Each node's two pairs sorted by input (pairs are (op, input))."""
    return [p for k in range(0, 8, 2) for p in sorted(pairs[k:k + 2], key=lambda p: p[1])]


# --- structure ------------------------------------------------------------------------------------------
def test_orders_follow_the_original_code(space):
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                          "dil_conv_3x3", "dil_conv_5x5")
    assert GENOTYPE_OPS == PRIMITIVES[1:]
    assert len(EDGES) == 14 and EDGE_LABELS[:5] == ("2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    assert EDGE_LABELS[-1] == "5<-4"
    assert len(space.decisions) == 32 and space.labels[:4] == ("normal.n2.in0", "normal.n2.op0", "normal.n2.in1",
                                                               "normal.n2.op1")
    assert space.labels[16] == "reduce.n2.in0"
    assert len(space.op_labels()) == len(space.input_labels()) == 16
    op_candidates = {space.decisions[space.label_index(label)].candidates for label in space.op_labels()}
    assert op_candidates == {GENOTYPE_OPS}  # one shared candidate tuple
    assert space.decisions[space.label_index("reduce.n5.in1")].candidates == (0, 1, 2, 3, 4)
    assert space.size() == (1 * 3 * 6 * 10 * 7**8) ** 2 == 1_076_746_950_455_072_400
    assert searchspaces.get("darts").name == "darts" and "darts" in searchspaces.names()
    assert "darts" in searchspaces.DESCRIPTIONS


def test_searchspaces_does_not_import_torch():
    code = "import searchspaces, sys; searchspaces.get('darts'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- strings ----------------------------------------------------------------------------------------------
def test_well_known_genotypes_parse_and_print_sorted(space):
    for text in (DARTS_V1, DARTS_V2):
        arch = space.parse(text)
        assert space.is_valid(arch)
        printed = arch.to_string()
        original = pairs_of(text)
        assert pairs_of(printed) == {cell: sorted_pairs(p) for cell, p in original.items()}
        assert printed.endswith("reduce_concat=[2, 3, 4, 5])") and "normal_concat=[2, 3, 4, 5]," in printed
        assert space.parse(printed) == arch
    v2 = space.parse(DARTS_V2)
    # reduce node 3 is written (skip_connect, 2), (max_pool_3x3, 1) in the original: sorted here
    assert v2["reduce.n3.in0"] == 1 and v2["reduce.n3.op0"] == "max_pool_3x3" and v2["reduce.n3.op1"] == "skip_connect"
    assert v2.to_string() == (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
        "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 1), "
        "('skip_connect', 2), "
        "('max_pool_3x3', 0), ('skip_connect', 2), ('max_pool_3x3', 1), ('skip_connect', 2)], "
        "reduce_concat=[2, 3, 4, 5])"
    )


def test_other_spellings_of_a_genotype(space):
    arch = space.parse(DARTS_V2)
    assert space.parse(DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)")) == arch
    assert space.parse("genotypes." + DARTS_V2) == arch
    assert space.parse("  " + DARTS_V2.replace(", ", ",") + "\n") == arch
    assert pickle.loads(pickle.dumps(arch)) == arch


def test_make_canonicalises_and_rejects_duplicate_inputs(space):
    arch = space.parse(DARTS_V2)
    swapped = dict(arch)
    swapped.update({"normal.n4.in0": 1, "normal.n4.op0": "sep_conv_3x3", "normal.n4.in1": 0,
                    "normal.n4.op1": "skip_connect"})
    assert space.make(swapped) == arch
    with pytest.raises(SpaceError, match="takes input 0 twice"):
        arch.replace(**{"normal.n4.in1": 0})
    assert space.decode(arch.codes()) == arch


def test_nb301_form_round_trips_all_500_keys(space, nb301):
    archs = set()
    for key in nb301:
        arch = space.from_nb301(key)
        value = ast.literal_eval(key)
        expected = [sorted([tuple(p) for p in cell[k:k + 2]]) for cell in value for k in range(0, 8, 2)]
        compact = ast.literal_eval(space.to_nb301(arch))
        assert [sorted(cell[k:k + 2]) for cell in compact for k in range(0, 8, 2)] == expected
        assert space.to_nb301(arch) == str([[p for k in range(0, 8, 2) for p in sorted(cell[k:k + 2])]
                                            for cell in value])
        assert space.parse(arch.to_string()) == arch and space.from_nb301(space.to_nb301(arch)) == arch
        # op indices of the NB301 form are into GENOTYPE_OPS (no `none`)
        assert [arch[f"normal.n{2 + k // 2}.op{k % 2}"] for k in range(8)] == \
            [GENOTYPE_OPS[op] for _, op in compact[0]]
        archs.add(arch)
    assert len(archs) == 500
    unsorted = sum(cell[k][0] > cell[k + 1][0] for key in nb301 for cell in ast.literal_eval(key)
                   for k in range(0, 8, 2))
    assert unsorted > 0  # the source does not sort pairs: canonicalisation is exercised


@pytest.mark.parametrize("text, fragment", [
    ("", "cannot parse"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "cannot parse"),
    ("__import__('os').system('true')", "cannot parse"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('none', 2)"), "op 'none' of node 5 in the normal cell is not allowed"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('conv_9x9', 2)"), "op 'conv_9x9'"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)]", "]"), "needs 8 (op, input) pairs"),
    (DARTS_V2.replace("('skip_connect', 2), ('max_pool_3x3', 1)]", "('skip_connect', 2), ('max_pool_3x3', 5)]"),
     "input 5 of node 5 in the reduce cell is invalid; accepted: 0..4"),
    (DARTS_V2.replace("('sep_conv_3x3', 0), ('sep_conv_3x3', 1)", "('sep_conv_3x3', 0), ('sep_conv_3x3', 0)", 1),
     "node 2 of the normal cell takes input 0 twice"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]"), "normal_concat"),
    (DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 3, 4, 5], extra=1"), "exactly the fields"),
    (DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), "lacks the field(s) reduce_concat"),
])
def test_parse_errors_are_one_sentence(space, text, fragment):
    with pytest.raises(SpaceError) as info:
        space.parse(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("compact, fragment", [
    ("[[(0, 3)]]", "not a NAS-Bench-301 genotype"),
    (str([[(0, 7), (1, 3)] * 4, [(0, 1), (1, 1)] * 4]), "op index 7"),
    (str([[(0, 3), (0, 3)] * 4, [(0, 1), (1, 1)] * 4]), "takes input 0 twice"),
    (str([[(0, 3), (1, 3)] * 3, [(0, 1), (1, 1)] * 4]), "needs 8"),
])
def test_nb301_errors_are_one_sentence(space, compact, fragment):
    with pytest.raises(SpaceError) as info:
        space.from_nb301(compact)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# --- sampling and evolution --------------------------------------------------------------------------------
def test_sampling_is_seeded_valid_canonical_and_uniform(space):
    assert space.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(400)]
    for arch in archs:
        assert space.is_valid(arch) and space.parse(arch.to_string()) == arch
        for label in space.input_labels()[::2]:
            assert arch[label] < arch[label.replace("in0", "in1")]
    codes = space.sample_codes(np.random.default_rng(1), 20000)
    assert codes.shape == (20000, 32)
    ops = codes[:, [space.label_index(label) for label in space.op_labels()]].ravel()
    # 320,000 draws over 7 ops: 45,714 each, sd ~198; allow 5 sd
    assert np.all(np.abs(np.bincount(ops, minlength=7) - 320000 / 7) < 1000)
    # node 5: the 10 input pairs are equally likely (2,000 each, sd ~42)
    n5 = codes[:, [space.label_index("normal.n5.in0"), space.label_index("normal.n5.in1")]]
    assert np.all(n5[:, 0] < n5[:, 1])
    pairs = collections.Counter(map(tuple, n5))
    assert len(pairs) == 10 and all(abs(c - 2000) < 250 for c in pairs.values())


def test_mutate_and_crossover_keep_validity(space):
    rng = np.random.default_rng(2)
    kinds = collections.Counter()
    for _ in range(300):
        a, b = space.sample(rng), space.sample(rng)
        m = space.mutate(a, rng)
        assert space.is_valid(m) and m != a
        changed = {label.rsplit(".", 1)[0] for label in space.labels if a[label] != m[label]}
        assert len(changed) == 1  # one node
        kinds["input" if any(a[x] != m[x] for x in space.input_labels()) else "op"] += 1
        c = space.crossover(a, b, rng)
        assert space.is_valid(c)
        for node in {label.rsplit(".", 1)[0] for label in space.labels}:
            block = [f"{node}.{f}" for f in ("in0", "op0", "in1", "op1")]
            assert [c[x] for x in block] in ([a[x] for x in block], [b[x] for x in block])
    assert kinds["input"] > 20 and kinds["op"] > 100


def test_masks_sample_valid_archs_and_size_matches_brute_force(space):
    sub = space.restrict("normal.n3.op0", ["sep_conv_3x3"]).restrict("reduce.n4.in0", [1, 2])
    rng = np.random.default_rng(4)
    for _ in range(200):
        arch = sub.sample(rng)
        assert sub.contains(arch) and space.is_valid(arch) and arch["normal.n3.op0"] == "sep_conv_3x3"
        assert sub.contains(sub.mutate(arch, rng))
    # a small sub-space, counted by brute force over the raw product of its decisions
    small = space
    for label in space.labels:
        decision = space.decisions[space.label_index(label)]
        keep = {"normal.n3": 3, "reduce.n5": 5}.get(label.rsplit(".", 1)[0])
        if ".op" in label:
            small = small.restrict(label, GENOTYPE_OPS[:2] if keep else GENOTYPE_OPS[:1])
        elif not keep:
            small = small.restrict(label, [decision.candidates[0]] if label.endswith("in0") else [1])
    raw = [tuple(c) for c in itertools.product(*small.allowed)]
    valid = [v for v in raw if all(v[i] < v[i + 2] for i in range(0, 32, 4))]
    assert small.size() == len(valid) == (3 * 4) * (10 * 4)
    listed = list(small.enumerate())
    assert len(listed) == len(set(listed)) == small.size() and all(small.contains(a) for a in listed)
    assert {a.choices for a in listed} == set(valid)
    with pytest.raises(SpaceError, match="too many to enumerate"):
        next(space.enumerate())
    empty = space.restrict("normal.n3.in0", [2])  # in0 = 2 leaves no larger in1 < 3
    assert empty.size() == 0
    with pytest.raises(SpaceError, match="no pair of distinct inputs"):
        empty.sample(rng)


# --- analytic costs ----------------------------------------------------------------------------------------
def test_darts_v2_parameter_count_matches_the_paper(space):
    v2 = space.parse(DARTS_V2)
    # DARTS's train log for DARTS_V2 (C=36, 20 layers, auxiliary excluded): "param size = 3.349342MB"
    assert space.params(v2) == 3_349_342
    aux = 768 * 128 * 4 + 576 * 128 + 2 * (128 + 768) + 768 * 10 + 10  # head after layer 13: 4 x 144 channels
    assert space.params(v2, auxiliary=True) - space.params(v2) == aux
    assert space.params(v2, num_classes=100) - space.params(v2) == 90 * 576 + 90
    assert 500e6 < space.flops(v2) < 560e6  # DARTS_V2 is reported at ~0.53 GMACs on CIFAR-10


def test_params_and_flops_match_every_nb301_value(space, nb301):
    # NB301 training network: C=32, 8 cells, cell ops as in DARTS's search cell (BN without affine, BN after
    # pools); FLOPs as tensorwatch counts them (NASLib computed the subset's values with it).
    for key, entry in nb301.items():
        arch = space.from_nb301(key)
        assert space.params(arch, C=32, layers=8, search_ops=True) == round(entry["params"] * 1e6), key
        assert space.flops(arch, C=32, layers=8, search_ops=True, counter="tensorwatch") == \
            round(entry["flops"] * 1e6), key
    with pytest.raises(SpaceError, match="accepted: macs, tensorwatch"):
        space.flops(arch, counter="thop")


def test_largest_and_smallest(space):
    largest, smallest = space.largest(), space.smallest()
    assert all(largest[label] == "sep_conv_5x5" for label in space.op_labels())
    rng = np.random.default_rng(5)
    for _ in range(100):
        arch = space.sample(rng)
        assert space.params(smallest) <= space.params(arch) <= space.params(largest)
    # a skip on a cell input of the reduction cell is a FactorizedReduce, so the smallest avoids it
    assert all(not (smallest[f"reduce.n{n}.op{j}"] == "skip_connect" and smallest[f"reduce.n{n}.in{j}"] < 2)
               for n in range(2, 6) for j in (0, 1))
    sub = space.restrict("normal.n2.op0", ["max_pool_3x3"])
    assert sub.largest()["normal.n2.op0"] == "max_pool_3x3"


# --- edge masks (few-shot splitting, GM-NAS) ---------------------------------------------------------------
EDGE = "normal:3<-1"


def uses(arch, row: str) -> str | None:
    """The op `arch` runs on relaxation row `row` (`cell:t<-s`), or None when the edge is unused."""
    cell, edge = row.split(":")
    t, s = map(int, edge.split("<-"))
    for j in (0, 1):
        if arch[f"{cell}.n{t}.in{j}"] == s:
            return arch[f"{cell}.n{t}.op{j}"]
    return None


def test_edge_mask_contains_and_sampling_agree_and_splits_partition(space):
    group = list(GENOTYPE_OPS[:3])
    sub = space.restrict(EDGE, group)
    assert not space.is_restricted() and sub.is_restricted() and not sub.root.is_restricted()
    assert sub.mask_json() == {EDGE: group}
    rng = np.random.default_rng(10)
    seen = collections.Counter()
    for _ in range(1000):
        arch = sub.sample(rng)
        assert sub.contains(arch) and space.is_valid(arch)
        seen[uses(arch, EDGE)] += 1
    assert set(seen) - {None} == set(group)  # only (and every) allowed op shows on the restricted edge
    codes = sub.sample_codes(np.random.default_rng(11), 500)
    assert all(sub.contains(sub.decode(c)) for c in codes)
    # restrictions compose (intersection) and leave the parent alone
    assert sub.restrict(EDGE, GENOTYPE_OPS[2:5]).mask_json() == {EDGE: [GENOTYPE_OPS[2]]}
    assert sub.mask_json() == {EDGE: group}
    with pytest.raises(SpaceError, match="at least one genotype op on edge"):
        sub.restrict(EDGE, GENOTYPE_OPS[3:])
    # the two children of a split: an arch using the edge with op o lies in exactly the child whose group has o
    other = space.restrict(EDGE, GENOTYPE_OPS[3:])
    used = unused = 0
    for _ in range(300):
        arch = space.sample(rng)
        op = uses(arch, EDGE)
        if op is None:
            unused += 1
            assert sub.contains(arch) and other.contains(arch)
        else:
            used += 1
            assert sub.contains(arch) == (op in group) and other.contains(arch) == (op not in group)
    assert used > 100 and unused > 30
    # evolution and extremes stay inside the sub-space
    pools = space.restrict("normal:5<-4", ["max_pool_3x3"]).restrict(EDGE, ["avg_pool_3x3"])
    for _ in range(200):
        a, b = pools.sample(rng), pools.sample(rng)
        assert pools.contains(pools.mutate(a, rng)) and pools.contains(pools.crossover(a, b, rng))
    assert pools.contains(pools.largest()) and pools.contains(pools.smallest())
    assert uses(pools.largest(), EDGE) in (None, "avg_pool_3x3")


def test_edge_mask_size_matches_brute_force_and_sampling_is_uniform(space):
    small = space
    for label in space.labels:  # only normal nodes 3 and 4 are free (inputs all, 3 ops each)
        decision = space.decisions[space.label_index(label)]
        if label.rsplit(".", 1)[0] in ("normal.n3", "normal.n4"):
            if ".op" in label:
                small = small.restrict(label, GENOTYPE_OPS[:3])
        elif ".op" in label:
            small = small.restrict(label, GENOTYPE_OPS[:1])
        else:
            small = small.restrict(label, [decision.candidates[0]] if label.endswith("in0") else [1])
    edged = small.restrict(EDGE, [GENOTYPE_OPS[0], GENOTYPE_OPS[5]]).restrict("normal:4<-2", GENOTYPE_OPS[1:3])
    edged = edged.restrict("normal:4<-0", GENOTYPE_OPS[2:])
    base = list(small.enumerate())
    assert len(base) == small.size() == (3 * 9) * (6 * 9)
    inside = [a for a in base if edged.contains(a)]
    listed = list(edged.enumerate())
    # node 3: (0,1) 3*1 + (0,2) 3*3 + (1,2) 1*3 = 15; node 4: (0,1) 1*3 + (0,2) 1*2 + (0,3) 1*3 + (1,2) 3*2
    # + (1,3) 3*3 + (2,3) 2*3 = 29
    assert edged.size() == len(listed) == len(set(listed)) == len(inside) == 15 * 29
    assert set(listed) == set(inside)
    # uniform over the contained archs: 43,500 draws over 435 archs, 100 each (sd 10)
    counts = collections.Counter(edged.decode(c) for c in edged.sample_codes(np.random.default_rng(12), 43_500))
    assert set(counts) == set(listed) and all(50 < c < 150 for c in counts.values())
    empty = space.restrict("normal.n2.op0", ["sep_conv_3x3"]).restrict("normal:2<-0", ["skip_connect"])
    assert empty.size() == 0
    with pytest.raises(SpaceError, match="no pair of distinct inputs"):
        empty.sample(np.random.default_rng(0))


def test_edge_mask_relaxation_mask_and_discretize(space):
    assert space.relaxation_mask().shape == (28, 8) and space.relaxation_mask().all()
    rows = [label for label, _ in space.relaxation()]
    sub = space.restrict(EDGE, ["skip_connect"]).restrict("normal:4<-1", ["avg_pool_3x3", "skip_connect"])
    mask = sub.relaxation_mask()
    assert list(mask[rows.index(EDGE)]) == [op in ("none", "skip_connect") for op in PRIMITIVES]
    assert list(mask[rows.index("normal:4<-1")]) == [op in ("none", "avg_pool_3x3", "skip_connect")
                                                     for op in PRIMITIVES]
    assert mask.sum() == 26 * 8 + 2 + 3
    w = np.zeros((28, 8))
    w[:, 0] = 100.0  # `none` never wins
    col = PRIMITIVES.index
    w[rows.index(EDGE), [col("sep_conv_5x5"), col("skip_connect")]] = 10.0, 0.5  # heaviest op is disallowed
    w[rows.index("normal:3<-0"), col("sep_conv_3x3")] = 2.0
    w[rows.index("normal:3<-2"), col("max_pool_3x3")] = 1.0
    w[rows.index("normal:4<-1"), [col("dil_conv_5x5"), col("avg_pool_3x3")]] = 10.0, 5.0
    w[rows.index("normal:4<-3"), col("sep_conv_3x3")] = 1.0
    unmasked = space.discretize(w)
    assert uses(unmasked, EDGE) == "sep_conv_5x5" and uses(unmasked, "normal:4<-1") == "dil_conv_5x5"
    arch = sub.discretize(w)
    assert sub.contains(arch)
    assert uses(arch, EDGE) is None  # 0.5 on its allowed op: weaker than 3<-0 and 3<-2
    assert uses(arch, "normal:3<-0") == "sep_conv_3x3" and uses(arch, "normal:3<-2") == "max_pool_3x3"
    assert uses(arch, "normal:4<-1") == "avg_pool_3x3" and uses(arch, "normal:4<-3") == "sep_conv_3x3"


def test_edge_mask_json_round_trip_pickle_and_errors(space):
    sub = space.restrict("reduce.n4.in0", [0, 1]).restrict(EDGE, ["sep_conv_3x3", "max_pool_3x3"])
    sub = sub.restrict("reduce:5<-2", ["skip_connect"])
    assert sub.mask_json() == {"reduce.n4.in0": [0, 1], EDGE: ["max_pool_3x3", "sep_conv_3x3"],
                               "reduce:5<-2": ["skip_connect"]}
    rng = np.random.default_rng(13)
    archs = [space.sample(rng) for _ in range(300)] + [sub.sample(rng) for _ in range(50)]
    for again in (space.restrict_json(sub.mask_json()), space.restrict_json(json.dumps(sub.mask_json()))):
        assert again.mask_json() == sub.mask_json()
        assert np.array_equal(again.relaxation_mask(), sub.relaxation_mask())
        assert [again.contains(a) for a in archs] == [sub.contains(a) for a in archs]
    assert 0 < sum(map(sub.contains, archs[:300])) < 300
    arch = sub.sample(rng)
    back = pickle.loads(pickle.dumps(arch))
    assert back == arch and back.space.mask_json() == sub.mask_json() and back.space.contains(back)
    assert space.restrict(EDGE, GENOTYPE_OPS).mask_json() == {}  # all 7 ops: unrestricted
    for label, values, fragment in [(EDGE, ["none"], "op 'none' cannot be allowed on edge"),
                                    (EDGE, ["conv_9x9"], "accepted: max_pool_3x3"),
                                    ("normal:2<-2", ["skip_connect"], "neither a decision nor an edge row"),
                                    (EDGE, [], "at least one genotype op")]:
        with pytest.raises(SpaceError, match=fragment) as info:
            space.restrict(label, values)
        assert "\n" not in str(info.value)
    with pytest.raises(SpaceError, match="op 'none' cannot"):
        space.restrict_json({EDGE: ["none", "skip_connect"]})


def test_split_units_is_unsplit_and_force(space):
    units = space.split_units()
    assert [label for label, _ in units] == [f"normal:{e}" for e in EDGE_LABELS]
    assert all(ops == GENOTYPE_OPS for _, ops in units) and all(space.is_unsplit(label) for label, _ in units)
    sub = space.restrict("normal:2<-0", ["skip_connect"]).restrict(EDGE, GENOTYPE_OPS[:3])
    units = dict(sub.split_units())
    assert len(units) == 13 and "normal:2<-0" not in units and units[EDGE] == GENOTYPE_OPS[:3]
    assert not sub.is_unsplit(EDGE) and sub.is_unsplit("normal:3<-0") and sub.is_unsplit("reduce:3<-1")
    assert sub.is_unsplit("normal.n3.op0") and not space.restrict("normal.n3.op0", ["skip_connect"]).is_unsplit(
        "normal.n3.op0")
    rng = np.random.default_rng(14)
    rows = [label for label, _ in space.relaxation()]
    moved = kept = 0
    for _ in range(300):
        arch = sub.sample(rng)
        row = rows[int(rng.integers(0, 14))]
        op = GENOTYPE_OPS[int(rng.integers(0, 7))]
        forced = sub.force(arch, row, op)
        assert uses(forced, row) == op and not forced.space.is_restricted()
        assert space.is_valid(forced) and space.parse(forced.to_string()) == forced
        t = row.split(":")[1].split("<-")[0]
        block = [f"normal.n{t}.{f}" for f in ("in0", "op0", "in1", "op1")]
        assert all(forced[x] == arch[x] for x in space.labels if x not in block)  # only node t changes
        if uses(arch, row) is None:  # the pair with the larger input moved; the other pair stays
            moved += 1
            assert (arch[block[0]], arch[block[1]]) in ((forced[block[0]], forced[block[1]]),
                                                        (forced[block[2]], forced[block[3]]))
        else:
            kept += 1
            assert {forced[block[0]], forced[block[2]]} == {arch[block[0]], arch[block[2]]}
    assert moved > 50 and kept > 50
    arch = space.parse(DARTS_V2)
    assert space.force(arch, "normal.n2.op0", "skip_connect")["normal.n2.op0"] == "skip_connect"
    with pytest.raises(SpaceError, match="op 'none' cannot"):
        space.force(arch, EDGE, "none")

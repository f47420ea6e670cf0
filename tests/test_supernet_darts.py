"""DARTS supernet and evaluation network: parameter/FLOP counts against the space's analytic costs, and the
equivalences between single path, `mix` relaxation and exported child."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

import searchspaces
import supernets
from searchspaces.darts import DARTS_V1, DARTS_V2, EDGES, NODES, PRIMITIVES
from supernets.darts import RELAXED_ROWS, RELAXED_SHAPE, onehot_weights, relaxed_row
from supernets.darts_ops import DartsNetwork, drop_path
from supernets.nb201 import NB201Network


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("darts")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _archs(space, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [space.parse(DARTS_V2), space.parse(DARTS_V1)] + [space.sample(rng) for _ in range(n)]


def _tiny(space, **opts):
    torch.manual_seed(0)
    return supernets.build(space, num_classes=5, **{"C": 4, "layers": 5, **opts})


# --- parameter counts --------------------------------------------------------------------------------------
def test_eval_network_has_the_darts_parameter_count(space):
    arch = space.parse(DARTS_V2)
    assert _count(supernets.build_eval_network(arch, auxiliary=False)) == 3_349_342
    assert space.params(arch) == 3_349_342
    for arch in _archs(space):
        for aux in (False, True):
            model = supernets.build_eval_network(arch, auxiliary=aux)
            assert _count(model) == space.params(arch, auxiliary=aux), (arch, aux)
    small = space.sample(np.random.default_rng(5))
    model = supernets.build_eval_network(small, C=8, layers=5, num_classes=100, auxiliary=True, in_channels=1)
    assert _count(model) == space.params(small, C=8, layers=5, num_classes=100, auxiliary=True, in_channels=1)


def test_exported_child_has_the_nb301_parameter_count(space):
    net = supernets.build(space, num_classes=10, C=32, layers=8, bn_mode="running")
    for arch in _archs(space):
        assert _count(net.export(arch)) == space.params(arch, C=32, layers=8, search_ops=True), arch


# --- FLOPs by hooks ----------------------------------------------------------------------------------------
def _hook_flops(model: nn.Module, x: torch.Tensor) -> int:
    """NB201's convention on a real forward: conv k*k*Cin*Cout/groups per output position (+bias), linear
    in*out+out, pooling k*k per output element; BN, ReLU, sums and global pooling are free."""
    total = [0]

    def conv(m, inp, out):
        per_position = m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels // m.groups
        total[0] += (per_position + (m.out_channels if m.bias is not None else 0)) * out.shape[2] * out.shape[3]

    def linear(m, inp, out):
        total[0] += m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)

    def pool(m, inp, out):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        total[0] += k * k * out[0].numel()

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            handles.append(m.register_forward_hook(pool))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def test_eval_network_flops_match_the_space(space):
    arch = space.parse(DARTS_V2)
    model = supernets.build_eval_network(arch, auxiliary=True).eval()
    x = torch.randn(1, 3, 32, 32)
    assert _hook_flops(model, x) == space.flops(arch, image_size=32)
    model.train()  # the auxiliary head runs in training mode only
    assert _hook_flops(model, torch.randn(2, 3, 32, 32)) == space.flops(arch, image_size=32, auxiliary=True)


def test_exported_child_flops_match_the_search_ops_count(space):
    net = supernets.build(space, C=8, layers=5, bn_mode="running")
    for arch in _archs(space, n=2):
        child = net.export(arch).eval()
        assert _hook_flops(child, torch.randn(1, 3, 16, 16)) == space.flops(
            arch, C=8, layers=5, image_size=16, search_ops=True), arch


def test_affine_supernet_exports_its_preprocessing_weights(space):
    net = _tiny(space, affine=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 3, 8, 8)
    arch = space.parse(DARTS_V2)
    with torch.no_grad():
        assert torch.allclose(net(x, arch), net.export(arch)(x), atol=1e-5)


def test_relaxed_layout_matches_the_space(space):
    assert [f"{cell}:{edge}" for cell, edge in RELAXED_ROWS] == [label for label, _ in space.relaxation()]
    assert all(cands == PRIMITIVES for _, cands in space.relaxation())
    for arch in _archs(space, n=3, seed=1):  # a genotype's one-hot: both chosen edges of each of the 8 nodes
        weights = onehot_weights(space, arch)
        assert weights.shape == RELAXED_SHAPE and weights.sum() == 16 and space.onehot(arch)[1] is None
    assert relaxed_row("reduce", "2<-0") == len(EDGES)


def _candidate_calls(net) -> tuple[dict, list]:
    calls: dict[tuple[int, str, str], int] = {}
    handles = []
    for i, cell in enumerate(net.cells):
        for edge, candidates in cell.edges.items():
            for op, module in candidates.items():
                def hook(m, inp, out, key=(i, edge, op)):
                    calls[key] = calls.get(key, 0) + 1
                handles.append(module.register_forward_hook(hook))
    return calls, handles


def test_hard_weights_run_only_the_chosen_candidates_and_reach_alpha(space):
    net = _tiny(space)
    rng = np.random.default_rng(0)
    hard = tuple(int(k) for k in rng.integers(0, len(PRIMITIVES), size=RELAXED_SHAPE[0]))
    alpha = torch.zeros(RELAXED_SHAPE, requires_grad=True)
    y = torch.softmax(alpha + torch.randn(RELAXED_SHAPE), dim=1)
    onehot = torch.nn.functional.one_hot(torch.tensor(hard), RELAXED_SHAPE[1]).float()
    weights = onehot - y.detach() + y
    calls, handles = _candidate_calls(net)
    net(torch.randn(2, 3, 8, 8), supernets.ArchWeights(weights, hard=hard)).sum().backward()
    for h in handles:
        h.remove()
    expected = {(i, edge, PRIMITIVES[hard[relaxed_row(cell.kind, edge)]])
                for i, cell in enumerate(net.cells) for edge in cell.edges
                if hard[relaxed_row(cell.kind, edge)] != 0}
    assert set(calls) == expected
    assert alpha.grad is not None and bool((alpha.grad.abs().sum(dim=1) > 0).all())


def test_mix_gives_every_weight_a_gradient(space):
    net = _tiny(space)
    alpha = (1e-3 * torch.randn(RELAXED_SHAPE)).requires_grad_()
    net(torch.randn(2, 3, 8, 8), supernets.ArchWeights(torch.softmax(alpha, dim=1))).sum().backward()
    assert bool((alpha.grad.abs() > 0).all())


def test_single_path_gradients_reach_only_the_chosen_candidates(space):
    net = _tiny(space)
    arch = space.sample(np.random.default_rng(3))
    chosen = {(cell, f"{NODES[k // 2]}<-{src}", op) for cell, pairs in space.genotype(arch).items()
              for k, (op, src) in enumerate(pairs)}
    net(torch.randn(2, 3, 8, 8), arch).sum().backward()
    for key, name, p in net.parameter_registry():
        if key.label is None:
            assert p.grad is not None, name
            continue
        cell, edge = key.label.split(":")
        assert (p.grad is not None) == ((cell, edge, key.choice) in chosen), name


def test_choice_parameters_cover_every_op_decision(space):
    net = _tiny(space)
    params = net.choice_parameters()
    assert set(params) == {(d.label, c) for d in space.decisions for c in d.candidates}
    owned = {id(p) for key, _, p in net.parameter_registry() if key.label is not None}
    assert {id(p) for ps in params.values() for p in ps} == owned
    for cell in ("normal", "reduce"):
        for node in NODES:
            for j in (0, 1):
                label = f"{cell}.n{node}.op{j}"
                assert params[(label, "sep_conv_3x3")] and params[(label, "dil_conv_5x5")]
                assert params[(label, "max_pool_3x3")] == []  # the pool's BN is not affine
                assert bool(params[(label, "skip_connect")]) == (cell == "reduce")  # FactorizedReduce
            assert params[(f"{cell}.n{node}.op0", "sep_conv_5x5")] == params[(f"{cell}.n{node}.op1", "sep_conv_5x5")]
            assert params[(f"{cell}.n{node}.in0", 0)] == []
    # a node's op decision owns the op on each of its incoming edges, in each cell of that type
    n_normal = sum(cell.kind == "normal" for cell in net.cells)
    n_sep = len(list(net.cells[0].edges["3<-1"]["sep_conv_3x3"].parameters()))
    assert len(params[("normal.n3.op0", "sep_conv_3x3")]) == 3 * n_normal * n_sep


def test_restrict_shares_nothing(space):
    net = _tiny(space)
    sub = space.restrict("normal.n2.op0", ["sep_conv_3x3", "skip_connect"])
    clone = net.restrict(sub)
    assert clone.space is sub
    ours = {id(p) for p in net.parameters()} | {id(b) for b in net.buffers()}
    assert not ours & ({id(p) for p in clone.parameters()} | {id(b) for b in clone.buffers()})
    arch = sub.sample(np.random.default_rng(0))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(x, arch), clone(x, arch))
    with pytest.raises(ValueError, match="cannot restrict"):
        net.restrict(searchspaces.get("nb201"))


def test_build_options(space):
    assert set(supernets.entry("darts").defaults()) == {"C", "layers", "affine", "bn_mode", "stem_multiplier", "mode",
                                               "scale_group_by_mass"}
    with pytest.raises(ValueError, match="unknown supernet option"):
        supernets.build(space, N=5)
    with pytest.raises(ValueError, match="shape"):
        _tiny(space)(torch.randn(1, 3, 8, 8), supernets.ArchWeights(torch.zeros(14, 8)))


# --- evaluation network ------------------------------------------------------------------------------------
def test_drop_path_is_identity_in_eval_mode_and_at_zero(space):
    x = torch.randn(6, 4, 3, 3)
    assert torch.equal(drop_path(x, 0.0), x)
    arch = space.parse(DARTS_V2)
    torch.manual_seed(0)
    model = supernets.build_eval_network(arch, C=4, layers=5, num_classes=3, auxiliary=False, drop_path=0.5)
    x = torch.randn(4, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        reference = model(x)
        model.drop_path_prob = 0.0
        assert torch.equal(model(x), reference)
    model.train()
    outputs = []
    with torch.no_grad():
        for seed in (1, 2):
            torch.manual_seed(seed)
            outputs.append(model(x))
        assert torch.equal(outputs[0], outputs[1])  # p = 0: no randomness in training either
        model.drop_path_prob = 0.5
        torch.manual_seed(1)
        assert not torch.allclose(model(x), outputs[0])


def test_reduced_eval_network_on_digits_with_auxiliary_head(space):
    torch.manual_seed(0)
    arch = space.sample(np.random.default_rng(2))
    model = supernets.build_eval_network(arch, C=8, layers=5, num_classes=10, auxiliary=True, in_channels=1,
                                         drop_path=0.2)
    assert isinstance(model, DartsNetwork)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    logits, aux = model(x)
    assert logits.shape == aux.shape == (4, 10)
    loss = nn.functional.cross_entropy(logits, y) + 0.4 * nn.functional.cross_entropy(aux, y)
    loss.backward()
    assert all(p.grad is not None for p in model.auxiliary_head.parameters())
    assert model.stem[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (4, 10)


def test_eval_network_for_nb201_and_other_spaces():
    nb201 = searchspaces.get("nb201")
    arch = nb201.make(["nor_conv_3x3"] * 6)
    model = supernets.build_eval_network(arch)
    assert isinstance(model, NB201Network) and _count(model) == nb201.params(arch) == 1_531_546
    assert _count(supernets.build_eval_network(arch, C=8, layers=2)) == nb201.params(arch, C=8, N=2)
    with pytest.raises(ValueError, match="no evaluation network"):
        supernets.build_eval_network(types.SimpleNamespace(space=types.SimpleNamespace(name="mobilenet")))

"""NB201 supernet: exported children match the benchmark's parameter counts and the supernet's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import searchspaces
import supernets
from supernets.nb201 import NB201Network


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("nb201")


def _archs(space, n=40, seed=0):
    uniform = [space.make([op] * 6) for op in space.decisions[0].candidates]
    rng = np.random.default_rng(seed)
    return uniform + [space.sample(rng) for _ in range(n)]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("num_classes", [10, 100, 120])
def test_exported_child_has_the_benchmark_parameter_count(space, num_classes):
    net = supernets.build(space, num_classes=num_classes, affine=True, bn_mode="running")
    for arch in _archs(space):
        child = net.export(arch)
        assert _count(child) == space.params(arch, num_classes=num_classes), arch


def test_benchmark_reference_points_through_export(space, nb201_rows):
    net = supernets.build(space, num_classes=10, affine=True, bn_mode="running")
    assert _count(net.export(space.parse(nb201_rows[0]["arch_str"]))) == 129_306
    assert _count(net.export(space.make(["nor_conv_3x3"] * 6))) == 1_531_546


def test_supernet_configuration_counts_conv_biases_instead_of_bn_weights(space):
    net = supernets.build(space, num_classes=10)  # affine=False, as PA&DA/GM-NAS
    for arch in _archs(space, n=10):
        assert _count(net.export(arch)) == space.params(arch, affine=False)


def _hook_count(model: nn.Module, x: torch.Tensor, pools: bool) -> int:
    """Operations of one forward pass measured by hooks on the real network (independent of the formulas).

    Conv2d: k*k*C_in*C_out per output position, + C_out with a bias; Linear: in*out + out. That is the sum
    NAS-Bench-201's counter forms (xautodl `compute_average_flops_cost`: its pooling hooks are not summed).
    With `pools`, every AvgPool2d adds k*k per output element as well, as `macs` counts."""
    total = [0]

    def conv(m, inp, out):
        per_position = m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels // m.groups
        total[0] += (per_position + (m.out_channels if m.bias is not None else 0)) * out.shape[2] * out.shape[3]

    def linear(m, inp, out):
        total[0] += m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)

    def pool(m, inp, out):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        total[0] += out.shape[1] * out.shape[2] * out.shape[3] * k * k

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear)
        elif isinstance(m, nn.AvgPool2d) and pools:
            m.register_forward_hook(pool)
    model.eval()
    with torch.no_grad():
        model(x)
    return total[0]


def _has_dead_edges(arch) -> bool:
    """Whether some live edge ends at a node from which no live path leads to the output node 3."""
    edges = [((1, 0), arch["1<-0"]), ((2, 0), arch["2<-0"]), ((2, 1), arch["2<-1"]), ((3, 0), arch["3<-0"]),
             ((3, 1), arch["3<-1"]), ((3, 2), arch["3<-2"])]
    live = [(t, s) for (t, s), op in edges if op != "none"]
    reaches = {3}
    for node in (2, 1, 0):
        if any(s == node and t in reaches for t, s in live):
            reaches.add(node)
    return any(t not in reaches for t, _ in live)


@pytest.mark.parametrize("count, pools, affine", [("flops", False, True), ("flops", False, False),
                                                 ("macs", True, True)])
@pytest.mark.parametrize("image_size, num_classes", [(32, 10), (16, 120)])
def test_flops_match_a_hook_count_of_the_real_network(space, image_size, num_classes, count, pools, affine):
    """`flops` (the benchmark's convention) and `macs` (pools added) equal hook counts of the real network.

    Both count every non-`none` edge, as the benchmark's network runs them all; ours skips edges whose output
    cannot reach the cell output, so it does exactly that much work when there are none, and less otherwise."""
    checked = {True: 0, False: 0, "less": 0}
    for arch in _archs(space, n=30, seed=3):
        child = NB201Network(arch, num_classes=num_classes, affine=affine)
        measured = _hook_count(child, torch.randn(1, 3, image_size, image_size), pools)
        analytic = getattr(space, count)(arch, num_classes=num_classes, image_size=image_size, affine=affine)
        dead = _has_dead_edges(arch)
        assert (measured <= analytic) if dead else (measured == analytic), arch
        checked[dead] += 1
        checked["less"] += measured < analytic
    assert checked["less"] > 0 and checked[False] > 5


def test_gradients_reach_only_the_chosen_ops(space):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, C=4, N=1)
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|")
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 8, 8), arch), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    choice_params = net.choice_parameters()
    for (label, op), params in choice_params.items():
        used = arch[label] == op
        if op in ("nor_conv_1x1", "nor_conv_3x3"):
            assert len(params) == 2 * 3  # conv weight + bias in each of the 3 search cells (N=1)
        else:
            assert params == []
        for p in params:
            assert (p.grad is not None) == used, (label, op)
    registry = net.parameter_registry()
    scopes = {key.scope for key, _, _ in registry}
    assert scopes == {"stem", "cell", "reduction", "head"}
    assert len(registry) == len(list(net.parameters()))


def test_batch_statistics_leave_running_stats_untouched(space):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, C=4, N=1, bn_mode="running")
    arch = space.make(["nor_conv_3x3"] * 6)
    x = torch.randn(8, 3, 8, 8) * 3 + 1
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    with torch.no_grad(), supernets.batch_statistics(net):
        out = net(x, arch)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.training and not any(m.training for m in net.modules())
    reference = supernets.build(space, num_classes=10, C=4, N=1, bn_mode="batch")
    reference.load_state_dict({k: v for k, v in before.items() if "running" not in k and "num_batches" not in k})
    with torch.no_grad():
        torch.testing.assert_close(out, reference.eval()(x, arch))


def test_recalibration_estimates_the_path_statistics(space):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, C=4, N=1, bn_mode="recalibrate")
    arch = space.make(["nor_conv_1x1"] * 6)
    batches = [torch.randn(16, 3, 8, 8) * 2 + 0.5 for _ in range(3)]
    for bn in supernets.bn.batchnorms(net):
        bn.running_mean.fill_(123.0)
    used = supernets.recalibrate(net, lambda x: net(x, arch), batches)
    assert used == 3 and not net.training
    with torch.no_grad():
        stem_out = net.stem[0](torch.cat(batches))
    torch.testing.assert_close(net.stem[1].running_mean, stem_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    unused = net.cells[0].edges["1<-0"]["nor_conv_3x3"][2]
    assert torch.all(unused.running_mean == 0)  # reset, not left from another path
    with pytest.raises(ValueError, match="bn_mode batch"):
        supernets.check_eval_mode(supernets.build(space, C=4, N=1, bn_mode="batch"), "recalibrate")


def test_restrict_shares_nothing_mutable(space):
    net = supernets.build(space, num_classes=10, C=4, N=1)
    sub = net.restrict(space.restrict("1<-0", ["nor_conv_3x3"]))
    assert sub.space.mask_json() == {"1<-0": ["nor_conv_3x3"]} and not net.space.is_restricted()
    with torch.no_grad():
        next(sub.parameters()).add_(1.0)
    assert not torch.equal(next(sub.parameters()), next(net.parameters()))


def test_build_rejects_unknown_options(space):
    with pytest.raises(ValueError, match="unknown supernet option"):
        supernets.build(space, num_classes=10, width=3)

"""NAS-Bench-Macro supernet: sliced (entangled) weights, real-size paths, exports equal to the benchmark networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_data_dir
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import searchspaces
import supernets
from supernets import ArchWeights
from supernets.counting import count_flops, count_params
from supernets.elastic import ElasticMBConv

CORNERS = ("00000000", "11111111", "22222222")


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("nasbench-macro")


@pytest.fixture(scope="module")
def source() -> dict[str, dict]:
    base = shared_data_dir()
    path = base / "nasbench_macro" / "nas-bench-macro_cifar10.json" if base else None
    if path is None or not path.is_file():
        pytest.skip("shared data not found: set SUPERNAS_SHARED_DATA or put shared/data beside the project")
    return json.loads(path.read_text())


def _archs(space, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [space.parse(c) for c in CORNERS] + [space.sample(rng) for _ in range(n)]


def _trained(net: nn.Module, space, x: torch.Tensor, steps: int = 3) -> nn.Module:
    """Accumulate some running statistics (and nothing else) over a few random paths."""
    rng = np.random.default_rng(1)
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net(x, space.sample(rng))
    return net


@pytest.mark.parametrize("share_weights", [True, False])
def test_export_matches_supernet_benchmark_params_and_flops(space, source, share_weights):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, bn_mode="running", share_weights=share_weights)
    x = torch.randn(2, 3, 32, 32)
    _trained(net, space, x)
    for arch in _archs(space, n=17):
        child = net.export(arch)
        net.eval()
        child.eval()
        with torch.no_grad():
            torch.testing.assert_close(child(x), net(x, arch), rtol=0, atol=1e-5)
        code = arch.to_string()
        assert count_params(child) == space.params(arch) == source[code]["params"], code
        assert count_flops(child, (3, 32, 32)) == space.flops(arch) == source[code]["flops"], code


def test_digits_task_export_and_counts(space):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, in_channels=1, bn_mode="running")
    x = torch.randn(3, 1, 8, 8)
    _trained(net, space, x)
    task = dict(num_classes=10, in_channels=1, image_size=8)
    for arch in _archs(space, n=5, seed=3):
        child = net.export(arch).eval()
        net.eval()
        with torch.no_grad():  # the supernet drops depthwise taps that only meet padding on 1x1/2x2 maps
            torch.testing.assert_close(child(x), net(x, arch), rtol=0, atol=1e-5)
        assert count_params(child) == space.params(arch, **task)
        assert count_flops(child, (1, 8, 8)) == space.flops(arch, **task)


def test_paths_run_at_their_real_size(space):
    """The supernet's own forward does exactly the analytic multiply-adds of the arch: slices, not masks."""
    net = supernets.build(space, bn_mode="running").eval()
    x = torch.randn(2, 3, 32, 32)
    measured = {}
    for arch in _archs(space, n=3, seed=4):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x, arch)
        measured[arch.to_string()] = counter.get_total_flops() // (2 * len(x))  # FLOPs = 2 x multiply-adds
        assert measured[arch.to_string()] == space.flops(arch), arch
    assert measured["00000000"] < measured["11111111"] < measured["22222222"]
    assert measured["00000000"] * 13 < measured["22222222"]


def test_entangled_candidates_share_one_weight_and_e3k3_trains_only_its_slice(space):
    torch.manual_seed(0)
    net = supernets.build(space, bn_mode="running")
    layer = net.layers[3]  # l4: 128 -> 128, stride 1, residual
    mb = layer.ops["mb"]
    assert isinstance(mb, ElasticMBConv) and set(layer.ops) == {"mb"}
    params = net.choice_parameters()
    shared = {id(p) for p in mb.parameters()}
    assert {id(p) for p in params[("l4", "mb_e3_k3")]} == shared == {id(p) for p in params[("l4", "mb_e6_k5")]}
    assert params[("l4", "identity")] == [] and len(params[("l1", "identity")]) == 3  # 1x1 conv + BN weight, bias

    arch = space.parse("00010000")
    loss = net(torch.randn(4, 3, 32, 32), arch).square().mean()
    loss.backward()
    hidden = 128 * 3
    expand, depthwise, project = mb.expand_conv.weight.grad, mb.depthwise.weight.grad, mb.project.weight.grad
    assert expand[:hidden].abs().sum() > 0 and expand[hidden:].abs().sum() == 0
    assert project[:, :hidden].abs().sum() > 0 and project[:, hidden:].abs().sum() == 0
    centre = torch.zeros_like(depthwise, dtype=torch.bool)
    centre[:hidden, :, 1:4, 1:4] = True
    assert depthwise[centre].abs().sum() > 0 and depthwise[~centre].abs().sum() == 0

    # the slice is a view of the shared weight: changing the weight changes what mb_e3_k3 computes
    child = net.export(arch)
    torch.testing.assert_close(child.layers[3].depthwise[0].weight, mb.depthwise.weight[:hidden, :, 1:4, 1:4])
    with torch.no_grad():
        mb.depthwise.weight[0, 0, 2, 2] += 1.0
    assert not torch.equal(net.export(arch).layers[3].depthwise[0].weight, child.layers[3].depthwise[0].weight)


def test_separate_candidates_do_not_share_weights(space):
    torch.manual_seed(0)
    net = supernets.build(space, bn_mode="running", share_weights=False)
    params = net.choice_parameters()
    small, large = params[("l5", "mb_e3_k3")], params[("l5", "mb_e6_k5")]
    assert small and large and not {id(p) for p in small} & {id(p) for p in large}
    net(torch.randn(2, 3, 16, 16), space.parse("00001000")).sum().backward()
    assert all(p.grad is not None for p in small) and all(p.grad is None for p in large)
    assert count_params(net) > count_params(supernets.build(space, bn_mode="running"))


def test_parameter_registry_keys(space):
    for share_weights in (True, False):
        net = supernets.build(space, bn_mode="running", share_weights=share_weights)
        registry = net.parameter_registry()
        assert len(registry) == len(list(net.parameters()))
        assert {key.scope for key, _, _ in registry} == {"stem", "layer", "head"}
        layer_keys = {(key.index, key.label, key.choice) for key, _, _ in registry if key.scope == "layer"}
        expected = {(i, f"l{i + 1}", "mb_e6_k5") for i in range(8)} | {(i, f"l{i + 1}", "identity") for i in (0, 2, 5)}
        if not share_weights:
            expected |= {(i, f"l{i + 1}", "mb_e3_k3") for i in range(8)}
        assert layer_keys == expected


def test_relaxed_forward_mix_and_hard(space):
    torch.manual_seed(0)
    net = supernets.build(space, bn_mode="running").eval()
    x = torch.randn(2, 3, 16, 16)
    arch = space.parse("21020112")
    onehot = torch.zeros(8, 3)
    onehot[torch.arange(8), torch.tensor(arch.codes())] = 1.0
    with torch.no_grad():
        expected = net(x, arch)
        torch.testing.assert_close(net(x, ArchWeights(onehot)), expected)
    alpha = onehot.clone().requires_grad_(True)
    out = net(x, ArchWeights(alpha, hard=arch.codes()))
    torch.testing.assert_close(out.detach(), expected)
    out.sum().backward()
    assert alpha.grad is not None and (alpha.grad != 0).sum() > 8  # the non-chosen weights get a gradient too
    soft = torch.softmax(torch.randn(8, 3), dim=1)
    sub = net.restrict(space.restrict("l1", ["mb_e3_k3"]))
    with torch.no_grad():
        masked = soft.clone()
        masked[0, 0] = masked[0, 2] = 0.0  # disallowed candidates are skipped, the allowed keep their weight
        torch.testing.assert_close(sub(x, ArchWeights(soft)), net(x, ArchWeights(masked)))
    with pytest.raises(ValueError, match="shape"):
        net(x, ArchWeights(torch.zeros(6, 5)))


def test_bn_modes_and_recalibration(space):
    torch.manual_seed(0)
    batch = supernets.build(space, bn_mode="batch")
    assert not any(bn.track_running_stats for bn in supernets.bn.batchnorms(batch))
    with pytest.raises(ValueError, match="bn_mode batch"):
        supernets.check_eval_mode(batch, "recalibrate")
    arch = space.parse("12012012")
    x = torch.randn(4, 3, 16, 16)
    batch.eval()
    child = batch.export(arch).eval()  # also normalises with batch statistics
    torch.testing.assert_close(child(x), batch(x, arch), rtol=0, atol=1e-5)
    assert count_params(child) == space.params(arch)

    net = supernets.build(space)  # default: recalibrate
    assert net.bn_mode == supernets.entry("nasbench-macro").defaults()["bn_mode"] == "recalibrate"
    supernets.check_eval_mode(net, "recalibrate")
    calib = [torch.randn(8, 3, 16, 16) for _ in range(3)]
    assert supernets.recalibrate(net, lambda b: net(b, arch), calib) == 3 and not net.training
    with torch.no_grad():
        torch.testing.assert_close(net.export(arch).eval()(x), net(x, arch), rtol=0, atol=1e-5)


def test_build_options_export_without_weights_and_space_check(space):
    with pytest.raises(ValueError, match="share_weights"):
        supernets.build(space, C=16)
    with pytest.raises(ValueError, match="nasbench-macro"):
        supernets.NASBenchMacroSupernet(searchspaces.get("nb201"))
    net = supernets.build(space, num_classes=100, bn_mode="running")
    arch = space.parse("22222222")
    fresh = net.export(arch, inherit=False)
    assert count_params(fresh) == space.params(arch, num_classes=100)
    assert not torch.equal(fresh.stem[0].weight, net.stem[0].weight)
    inherited = net.export(arch)
    assert torch.equal(inherited.stem[0].weight, net.stem[0].weight)
    assert inherited.stem[0].weight.data_ptr() != net.stem[0].weight.data_ptr()  # a copy, not shared storage


def test_count_flops_refuses_elastic_layers(space):
    net = supernets.build(space, bn_mode="running")
    with pytest.raises(ValueError, match="export"):
        count_flops(net.layers[0].ops["mb"], (32, 32, 32))
    assert count_flops(nn.Linear(7, 5), (3, 7)) == 3 * 35
    assert count_flops(nn.Conv2d(4, 6, 3, padding=1), (4, 5, 5), bias=True) == 25 * 6 * 36 + 25 * 6


def test_the_old_name_of_share_weights_is_still_read_with_a_deprecation_note(space):
    from nas import config as cfg

    with pytest.warns(FutureWarning, match="now supernet.share_weights"):
        net = supernets.build(space, bn_mode="running", entangle=False)
    assert not net.share_weights and {"mb_e3_k3", "mb_e6_k5"} <= set(net.layers[3].ops)
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="contradicts"):
        supernets.build(space, share_weights=False, entangle=True)
    # a saved config.yaml of an older run still validates
    config = cfg.resolve(flags={"space.name": "nasbench-macro"}, overrides=["supernet.entangle=false"])
    assert config["supernet"]["entangle"] is False

"""The mixed-op execution modes (specs/ALGORITHMS.md §0.3, §3): TangleNAS's superposed weights (one op per group,
keyed by choice value, recomputed from the parameter) and the build-mode switch `supernet.mode`. The one-hot
invariants `mix(onehot(k)) == single(k)` and `entangle(onehot(k)) == single(k)` run on every registered supernet
in tests/test_registry.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import searchspaces
import supernets
from nas.cli import main
from supernets import ArchWeights
from supernets.mixed import Entangle, Mix


def _net(name: str, mode: str, bn_mode: str):
    """The registered smoke build of `name` in build mode `mode` (5 classes), and its input size."""
    torch.manual_seed(0)
    registered = supernets.entry(name)
    net = supernets.build(searchspaces.get(name), num_classes=5, bn_mode=bn_mode, mode=mode, **registered.smoke)
    return net, registered.smoke_image_size


def test_nb201_entangled_1x1_is_the_centre_tap_of_the_3x3_kernel():
    """§3.5 item 1: the weights are keyed by VALUE; the reference swaps them (a_1x1 scales the full kernel)."""
    net, _ = _net("nb201", "entangle", "batch")
    conv = net.cells[0].edges["1<-0"]["nor_conv_3x3"]
    assert set(net.cells[0].edges["1<-0"]) == {"skip_connect", "nor_conv_3x3", "avg_pool_3x3"}
    x = torch.randn(4, 4, 6, 6)
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    expected = conv[2](F.conv2d(F.relu(x), conv[1].weight[:, :, 1:2, 1:2], conv[1].bias))  # a 1x1 conv, padding 0
    for weights in ({1: one, 3: zero}, {3: zero, 1: one}):  # insertion order does not matter, the kernel size does
        torch.testing.assert_close(conv.forward_superposed(x, weights), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(conv.forward_slice(x, 1), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(conv.forward_superposed(x, {1: zero, 3: one}), conv(x), rtol=0, atol=1e-6)

    # through the whole supernet: one-hot nor_conv_1x1 everywhere is the exported child, whose 1x1 is the centre tap
    space = net.space
    arch = space.make(["nor_conv_1x1"] * 6)
    weights = torch.as_tensor(space.onehot(arch)[0], dtype=torch.float32)
    child = net.export(arch)
    torch.testing.assert_close(child.cells[0].edges["1<-0"][1].weight, conv[1].weight[:, :, 1:2, 1:2])
    net.eval()
    child.eval()
    images = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(net(images, ArchWeights(weights)), child(images), rtol=0, atol=1e-5)
    torch.testing.assert_close(net(images, arch), child(images), rtol=0, atol=1e-5)


def _kernel_padded(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    size = weight.shape[-1]
    pad = (size - kernel) // 2
    crop = weight[..., pad:pad + kernel, pad:pad + kernel]
    return F.pad(crop, (pad, pad, pad, pad))


def test_superposed_ops_use_the_weighted_sum_of_zero_padded_slices():
    """W_mix = sum_k a_k * Pad(Slice_k(W)) for the NB201 conv and both DARTS groups, against explicit padding."""
    torch.manual_seed(0)
    a_small, a_large = torch.tensor(0.3), torch.tensor(0.6)
    nb201, _ = _net("nb201", "entangle", "batch")
    conv = nb201.cells[0].edges["2<-1"]["nor_conv_3x3"]
    x = torch.randn(4, 4, 6, 6)
    w = conv[1].weight
    w_mix = a_large * w + a_small * _kernel_padded(w, 1)
    expected = conv[2](F.conv2d(F.relu(x), w_mix, conv[1].bias, padding=1))
    torch.testing.assert_close(conv.forward_superposed(x, {1: a_small, 3: a_large}), expected, rtol=1e-5, atol=1e-6)

    darts, _ = _net("darts", "entangle", "batch")
    edge = darts.cells[0].edges["3<-1"]
    assert "sep_conv_3x3" not in edge and "dil_conv_3x3" not in edge
    sep, dil = edge["sep_conv_5x5"], edge["dil_conv_5x5"]
    x = torch.randn(2, 4, 7, 7)
    h = F.relu(x)
    for i in (1, 5):  # both depthwise convs of a separable conv are superposed
        mixed = a_large * sep[i].weight + a_small * _kernel_padded(sep[i].weight, 3)
        h = sep[i + 1](F.conv2d(h, mixed, None, sep[i].stride, 2, 1, 4))
        h = sep[i + 2](h)
        if i == 1:
            h = F.relu(h)
    torch.testing.assert_close(sep.forward_superposed(x, {3: a_small, 5: a_large}), h, rtol=1e-5, atol=1e-6)
    mixed = a_large * dil[1].weight + a_small * _kernel_padded(dil[1].weight, 3)
    expected = dil[3](dil[2](F.conv2d(F.relu(x), mixed, None, 1, 4, 2, 4)))  # dilation 2, padding 4
    torch.testing.assert_close(dil.forward_superposed(x, {3: a_small, 5: a_large}), expected, rtol=1e-5, atol=1e-6)
    # the 3x3 slices keep DARTS's padding: the same sampling positions as the separate 3x3 ops
    torch.testing.assert_close(dil.forward_slice(x, 3), dil[3](dil[2](F.conv2d(
        F.relu(x), dil[1].weight[:, :, 1:4, 1:4], None, 1, 2, 2, 4))), rtol=1e-5, atol=1e-6)


def _conv_calls(monkeypatch, net, x, arch) -> int:
    calls = {"n": 0}
    real = F.conv2d

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting)
    with torch.no_grad():
        net(x, arch)
    monkeypatch.setattr(torch.nn.functional, "conv2d", real)
    return calls["n"]


@pytest.mark.parametrize("name, saved_per_edge", [("nb201", 1), ("darts", 6)])
def test_entangle_runs_one_op_per_group(monkeypatch, name, saved_per_edge):
    """NB201: one conv instead of two per edge; DARTS: one separable (4 convs) and one dilated conv (2) instead of
    two of each, i.e. 6 convs fewer per edge."""
    space = searchspaces.get(name)
    x = torch.randn(2, 3, 8, 8)
    weights = torch.softmax(torch.randn(len(space.relaxation()), len(space.relaxation()[0][1])), dim=1)
    counts = {}
    for mode in ("mix", "entangle"):
        net, _ = _net(name, mode, "batch")
        counts[mode] = _conv_calls(monkeypatch, net, x, ArchWeights(weights))
    edges = sum(len(cell.edges) for cell in net.cells if hasattr(cell, "edges"))
    assert counts["mix"] - counts["entangle"] == saved_per_edge * edges


def test_the_superposed_weight_is_recomputed_from_the_parameter_and_passes_gradients():
    """§0.3: never a cached Parameter; changing the shared kernel changes the next forward, and the loss reaches
    the kernel (every tap) and both candidates' weights."""
    net, _ = _net("nb201", "entangle", "batch")
    conv = net.cells[0].edges["1<-0"]["nor_conv_3x3"][1]
    params = {id(p) for p in net.parameters()}
    x = torch.randn(4, 3, 8, 8)
    alpha = torch.zeros(6, 5, requires_grad=True)
    out = net(x, ArchWeights(torch.softmax(alpha, dim=1)))
    out.square().sum().backward()
    assert alpha.grad[:, 2].abs().min() > 0 and alpha.grad[:, 3].abs().min() > 0  # nor_conv_1x1 and nor_conv_3x3
    assert conv.weight.grad[:, :, 0, 0].abs().sum() > 0 and conv.weight.grad[:, :, 1, 1].abs().sum() > 0
    assert {id(p) for p in net.parameters()} == params  # nothing was registered on the way
    with torch.no_grad():
        before = net(x, ArchWeights(torch.softmax(alpha, dim=1)))
        conv.weight[:, :, 0, 0] += 1.0  # an outer tap: only nor_conv_3x3's slice
        assert not torch.equal(before, net(x, ArchWeights(torch.softmax(alpha, dim=1))))


def test_hard_entangle_runs_the_chosen_group_superposed_and_reaches_every_weight():
    """GDAS in `entangle`: a chosen conv runs its group's superposed conv (so the other member's weight gets a real
    gradient); a chosen skip runs alone; every weight still gets a gradient through the zero-valued scalar."""
    net, _ = _net("nb201", "entangle", "batch")
    logits = torch.zeros(6, 5, requires_grad=True)
    y = torch.softmax(logits, dim=1)
    index = torch.tensor([2, 1, 3, 4, 0, 2])
    hard = F.one_hot(index, 5).float() - y.detach() + y
    out = net(torch.randn(4, 3, 8, 8), ArchWeights(hard, hard=tuple(index.tolist())))
    out.square().sum().backward()
    assert torch.count_nonzero(logits.grad) == logits.numel()
    assert net.cells[0].edges["1<-0"]["nor_conv_3x3"][1].weight.grad is not None
    assert net.cells[0].edges["2<-0"]["nor_conv_3x3"][1].weight.grad is None  # edge 2<-0 chose skip_connect


def test_scale_group_by_mass_multiplies_the_group_output_by_its_total_weight():
    """§3.5 item 2: off (the reference) the group's output ignores how much weight its members have together."""
    net, _ = _net("nb201", "entangle", "batch")
    op = net.cells[0].edges["1<-0"]
    x = torch.randn(4, 4, 6, 6)
    w = torch.tensor([[0.1, 0.2, 0.15, 0.25, 0.3]])
    allowed = range(1, 5)
    plain, _ = Entangle()(op, x, w, 0, allowed)
    scaled, _ = Entangle(scale_group_by_mass=True)(op, x, w, 0, allowed)
    mixed, _ = Mix()(op, x, w, 0, allowed)
    assert len(plain) == 3 and len(mixed) == 4  # skip, the conv group once, pool vs. four candidates
    torch.testing.assert_close(scaled[1], plain[1] * 0.4)
    torch.testing.assert_close(scaled[0], mixed[0])  # skip is mixed at the output in both modes


def test_entangled_candidates_share_weights_in_the_registry_the_slices_and_the_child():
    net, _ = _net("darts", "entangle", "batch")
    space = net.space
    params = net.choice_parameters()
    label = "normal.n3.op0"
    assert {id(p) for p in params[(label, "sep_conv_3x3")]} == {id(p) for p in params[(label, "sep_conv_5x5")]}
    slices = net.choice_slices()[(label, "sep_conv_3x3")]
    depthwise = net.cells[0].edges["3<-0"]["sep_conv_5x5"][1].weight
    assert any(p is depthwise and index[2:] == (slice(1, 4), slice(1, 4)) for p, index in slices)
    arch = space.sample(np.random.default_rng(3))
    net.eval()
    child = net.export(arch).eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(child(x), net(x, arch), rtol=0, atol=1e-5)

    nb201, _ = _net("nb201", "entangle", "batch")
    slices = nb201.choice_slices()[("1<-0", "nor_conv_1x1")]
    kernel = nb201.cells[0].edges["1<-0"]["nor_conv_3x3"][1].weight
    assert any(p is kernel and index[2:] == (slice(1, 2), slice(1, 2)) for p, index in slices)
    params = nb201.choice_parameters()
    assert len(params[("1<-0", "nor_conv_1x1")]) == 6  # kernel and bias of the shared conv in each of 3 cells
    assert {id(p) for p in params[("1<-0", "nor_conv_1x1")]} == {id(p) for p in params[("1<-0", "nor_conv_3x3")]}


def test_mobilenet_entangle_reaches_every_decision_and_mix_is_refused():
    net, _ = _net("mobilenet", "entangle", "batch")
    space, size = net.space, 32  # on a 1x1 map (16x16 input, last stage) every kernel computes the same: no gradient
    alpha = torch.zeros(len(space.labels), 3, requires_grad=True)
    net(torch.randn(2, 3, size, size), ArchWeights(torch.softmax(alpha, dim=1))).square().sum().backward()
    assert torch.count_nonzero(alpha.grad.abs().sum(dim=1)) == len(space.labels)  # depth, kernel and expand rows
    mix, _ = _net("mobilenet", "mix", "batch")
    with pytest.raises(ValueError, match="supernet.mode=entangle"):
        mix(torch.randn(2, 3, size, size), ArchWeights(torch.softmax(alpha, dim=1)))
    with pytest.raises(ValueError, match="'mix' mode, which the mobilenet supernet does not"):
        supernets.check("mobilenet", {"mode": "mix"}, "mix", "strategy darts")
    supernets.check("mobilenet", {"mode": "entangle"}, "mix", "strategy darts")


def test_build_mode_is_checked_in_one_sentence():
    space = searchspaces.get("nasbench-macro")
    with pytest.raises(ValueError, match="accepted: mix, entangle"):
        supernets.build(searchspaces.get("nb201"), mode="superposed")
    with pytest.raises(ValueError, match="share_weights=false"):
        supernets.build(space, share_weights=False, mode="entangle")


@pytest.mark.parametrize("overrides, fragment", [
    (["--set", "supernet.mode=magic"], "supernet.mode='magic' is not valid; accepted: mix, entangle"),
    (["--space", "nasbench-macro", "--set", "supernet.mode=entangle", "--set", "supernet.share_weights=false"],
     "set share_weights=true or mode=mix"),
    (["--space", "mobilenet", "--set", "supernet.mode=mix"], "set supernet.mode=entangle"),
])
def test_a_build_mode_that_cannot_run_is_refused_before_the_run(tmp_path, capsys, overrides, fragment):
    assert main(["search", "--strategy", "darts", *overrides, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy", ["darts", "gdas"])
def test_relaxed_strategies_search_in_entangle_mode(strategy, tmp_path):
    out = tmp_path / strategy
    assert main(["search", "--space", "nb201", "--strategy", strategy, "--dataset", "digits", "--epochs", "1",
                 "--set", "supernet.C=4", "--set", "supernet.N=1", "--set", "supernet.mode=entangle",
                 "--set", "train.batch_size=128", "--set", "eval.monitor_archs=0", "--set", "eval.sample_check=0",
                 "--quiet", "--out", str(out)]) == 0
    assert (out / "arch.json").is_file() and "mode: entangle" in (out / "config.yaml").read_text()

"""The once-for-all MobileNetV3 space and its weight-entangled supernet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import searchspaces
import supernets
from searchspaces.mobilenet import DEPTHS, EXPANDS, KERNELS, make_divisible
from supernets.counting import count_flops, count_params
from supernets.elastic import ElasticBatchNorm2d, centre_crop

CIFAR = dict(num_classes=10, in_channels=3, image_size=32, schedule="cifar")
IMAGENET = dict(num_classes=1000, in_channels=3, image_size=224, schedule="imagenet")


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("mobilenet")


@pytest.fixture(scope="module")
def net(space):
    torch.manual_seed(0)
    return supernets.build(space, num_classes=10, in_channels=3, bn_mode="running")


def _archs(space, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]


# --- space ------------------------------------------------------------------------------------------
def test_make_divisible_matches_the_mobilenet_rounding():
    # values of the MobileNetV2/V3 channel rounding (round to the nearest multiple of 8, never 10% below)
    assert [make_divisible(v) for v in (16, 24 * 0.35, 40 * 1.2, 96 * 0.75, 3, 100)] == [16, 8, 48, 72, 8, 104]


def test_size_counts_distinct_networks(space):
    per_stage = sum((len(KERNELS) * len(EXPANDS)) ** d for d in DEPTHS)  # 9^2 + 9^3 + 9^4 = 7371
    assert space.size() == per_stage ** 5  # ~2.2e19, the "~2x10^19 canonical archs" of the spec


def test_inactive_blocks_are_nulled_so_encodings_of_one_network_are_one_arch(space):
    rng = np.random.default_rng(1)
    arch = space.sample(rng).replace(d1=2)
    other = space.make({**dict(arch), "k1_3": 7, "e1_4": 6})  # choices of blocks beyond depth 2
    assert other == arch and hash(other) == hash(arch) and other.to_string() == arch.to_string()
    assert space.parse(arch.to_string()) == arch


def test_parse_rejects_bad_strings_with_one_sentence(space):
    for text in ("k3e3", "k3e3|k3e3|k3e3|k3e3|k3e3", "k3e3-k9e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3",
                 "k3e3-x|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3"):
        with pytest.raises(searchspaces.SpaceError) as err:
            space.parse(text)
        assert "\n" not in str(err.value)


def test_restricted_space_checks_active_blocks_only(space):
    sub = space.restrict("e1_4", [6]).restrict("d2", [2])
    shallow = space.parse("k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3")
    assert sub.contains(shallow)  # block 1_4 is inactive, so its expand mask does not apply
    assert not sub.contains(space.parse("k3e3-k3e3-k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3"))
    rng = np.random.default_rng(0)
    assert all(sub.contains(sub.sample(rng)) for _ in range(50))
    assert all(sub.contains(sub.mutate(sub.sample(rng), rng)) for _ in range(50))
    assert sub.largest().to_string().startswith("k7e6-k7e6-k7e6-k7e6|k7e6-k7e6|")


def test_enumerate_small_subspace_matches_size(space):
    mask = {label: [2] if label.startswith("d") else [3] for label in space.labels}
    mask.update(d1=[2, 3], k1_3=[3, 5])
    sub = space.restrict_json(mask)
    archs = list(sub.enumerate())
    assert len(archs) == len(set(archs)) == sub.size() == 3


def test_mutate_and_crossover_give_canonical_archs(space):
    rng = np.random.default_rng(2)
    a, b = space.sample(rng), space.sample(rng)
    for _ in range(100):
        child = space.crossover(a, space.mutate(b, rng), rng)
        assert space.parse(child.to_string()) == child


@pytest.mark.parametrize("task", [CIFAR, IMAGENET], ids=["cifar", "imagenet"])
def test_analytic_costs_equal_counting_the_exported_network(space, task):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=task["num_classes"], schedule=task["schedule"])
    for arch in _archs(space, 2):
        child = net.export(arch)
        assert count_params(child) == space.params(arch, **task)
        shape = (3, task["image_size"], task["image_size"])
        assert count_flops(child.eval(), shape) == space.flops(arch, **task)


def test_width_multiplier_scales_widths_and_costs(space):
    arch = space.largest()
    task = dict(CIFAR, width_mult=0.5)
    net = supernets.build(space, num_classes=10, width_mult=0.5)
    assert count_params(net.export(arch)) == space.params(arch, **task) < space.params(arch, **CIFAR)
    assert count_flops(net.export(arch).eval(), (3, 32, 32)) == space.flops(arch, **task)


def test_cost_terms_reproduce_params_and_flops(space):
    for kind in ("params", "flops"):
        constant, terms = space.cost_terms(kind, **CIFAR)
        for arch in _archs(space, 5, seed=3):
            codes = arch.codes()
            total = constant + sum(table[tuple(codes[space.label_index(label)] for label in labels)]
                                   for labels, table in terms)
            assert total == getattr(space, kind)(arch, **CIFAR)


def test_subnets_run_at_their_real_size(space, net):
    """Sliced weights, not masks: the activations of the smallest subnet are narrower and fewer."""
    widths = []
    hooks = [block.depthwise.register_forward_hook(lambda m, i, o: widths.append(o.shape[1]))
             for stage in net.stages for block in stage]
    x = torch.randn(2, 3, 32, 32)
    for arch in (space.smallest(), space.largest()):
        widths.clear()
        net(x, arch)
        if arch == space.smallest():
            small = list(widths)
    for h in hooks:
        h.remove()
    assert len(small) == 10 and len(widths) == 20
    same_blocks = [widths[4 * s + b] for s in range(5) for b in range(2)]  # blocks 1-2 of every stage
    assert sum(small) <= 0.55 * sum(same_blocks)  # expand 3 instead of 6
    assert space.flops(space.smallest(), **CIFAR) < 0.25 * space.flops(space.largest(), **CIFAR)


def test_a_subnet_trains_only_its_slice_of_the_shared_weights(space, net):
    arch = space.parse("k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3")
    net.zero_grad(set_to_none=True)
    net(torch.randn(2, 3, 32, 32), arch).sum().backward()
    block = net.stages[1][1]
    hidden = block.hidden_channels(3)
    grad = block.depthwise.weight.grad
    assert grad[:hidden, :, 2:5, 2:5].abs().sum() > 0
    assert grad[hidden:].abs().sum() == 0  # channels beyond expand 3
    assert grad[:, :, :2].abs().sum() == 0 and grad[:, :, :, 5:].abs().sum() == 0  # taps outside the 3x3 centre
    assert net.stages[1][2].depthwise.weight.grad is None  # a block beyond the stage's depth
    net.zero_grad(set_to_none=True)


def test_one_hot_masks_leave_the_output_unchanged_and_carry_gradient(space, net):
    x = torch.randn(3, 3, 32, 32)
    net.eval()
    for arch in _archs(space, 2, seed=6):
        codes = arch.codes()
        onehot = torch.zeros(len(codes), 3)
        onehot[torch.arange(len(codes)), torch.tensor(codes)] = 1.0
        onehot.requires_grad_(True)
        out = net(x, supernets.ArchWeights(onehot, hard=codes))
        torch.testing.assert_close(out, net(x, arch), rtol=0, atol=1e-5)
        out.square().sum().backward()
        # gradient reaches depth, kernel and expand rows of the subnet (depth only where blocks can be gated)
        assert onehot.grad[5:].abs().sum() > 0
    mixed = supernets.build(space, num_classes=10, in_channels=3, bn_mode="running", mode="mix")
    with pytest.raises(ValueError, match="hard"):  # built with mode=mix, relaxed weights need a hard sample
        mixed(x, supernets.ArchWeights(torch.zeros(45, 3)))


def test_elastic_bn_updates_only_the_active_channels():
    bn = ElasticBatchNorm2d(8)
    bn.train()
    bn(torch.randn(16, 5, 4, 4) + 3.0)
    assert (bn.running_mean[:5] > 0.1).all() and (bn.running_mean[5:] == 0).all()
    assert (bn.running_var[5:] == 1).all()


def test_recalibration_reestimates_the_sliced_statistics(space, net):
    arch = space.smallest()
    batches = [torch.randn(32, 3, 32, 32) for _ in range(2)]
    supernets.recalibrate(net, lambda x: net(x, arch), batches)
    stats = net.stages[0][0].depthwise_bn.running_mean.clone()
    hidden = net.stages[0][0].hidden_channels(3)
    assert (stats[hidden:] == 0).all() and stats[:hidden].abs().sum() > 0  # only the subnet's slice
    net.train()


def test_centre_crop_takes_the_middle_taps():
    w = torch.arange(49.0).view(1, 1, 7, 7)
    assert centre_crop(w, 3).flatten().tolist() == [16, 17, 18, 23, 24, 25, 30, 31, 32]
    assert centre_crop(w, 7) is not None and centre_crop(w, 7).shape == (1, 1, 7, 7)


def test_registry_keys_blocks_and_no_choice_owns_a_parameter(space, net):
    keys = {key.scope for key, _, _ in net.parameter_registry()}
    assert keys == {"stem", "stage_fixed", "block", "head"}
    assert all(not params for params in net.choice_parameters().values())


def test_choice_slices_are_the_parts_of_the_shared_weights_each_candidate_runs(space, net):
    """A kernel's slice is the centre of the depthwise kernel; an expand ratio's slices are exactly the tensors the
    exported block of that ratio holds (export copies what the forward computes with); a depth's, the first d
    blocks. Slices are views: reading a gradient through them copies nothing."""
    slices = net.choice_slices()
    assert set(slices) == {(d.label, c) for d in space.decisions for c in d.candidates}
    block = net.stages[1][0]  # stage 2 has SE; its first block changes width
    for kernel in (3, 5, 7):
        [(weight, index)] = slices[("k2_1", kernel)]
        assert weight is block.depthwise.weight
        assert torch.equal(weight[index], centre_crop(weight, kernel))
        assert weight[index]._base is weight  # a view
    for expand in (3, 4, 6):
        child = block.export(7, expand)
        expected = [child.expand[0].weight, child.expand[1].weight, child.expand[1].bias, child.depthwise[0].weight,
                    child.depthwise[1].weight, child.depthwise[1].bias, child.se.reduce.weight, child.se.reduce.bias,
                    child.se.expand.weight, child.se.expand.bias, child.project[0].weight]
        got = [p[index] for p, index in slices[("e2_1", expand)]]
        assert len(got) == len(expected)
        for part, copy in zip(got, expected):
            assert torch.equal(part.reshape(copy.shape), copy)
    stage = list(net.stages[2])
    for depth in (2, 3, 4):
        params = [p for p, index in slices[("d3", depth)]]
        assert all(index == () for _, index in slices[("d3", depth)])
        assert {id(p) for p in params} == {id(p) for b in stage[:depth] for p in b.parameters()}


def test_active_choices_leave_out_the_placeholders_of_inactive_blocks(space, net):
    arch = space.smallest()
    active = dict(net.active_choices(arch))
    assert all(active[f"d{s}"] == 2 for s in range(1, 6))
    assert {label for label in active if label[0] in "ke"} == {f"{t}{s}_{b}" for t in "ke" for s in range(1, 6)
                                                               for b in (1, 2)}
    assert len(net.active_choices(space.largest())) == len(space.decisions)

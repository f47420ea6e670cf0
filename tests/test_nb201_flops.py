"""NB201 `flops` equals NAS-Bench-201's published FLOPs; `macs` is our own count (pooling windows added).

The benchmark counted FLOPs with xautodl's hooks (`utils/flop_benchmark.py`, `get_model_infos` on `TinyNetwork`,
input (1, 3, 32, 32) or (1, 3, 16, 16)): the sum covers Conv2d and Linear only and is reported in MFLOPs
(`/ 1e6`). Every value below is the benchmark API's own output, quoted in a public source named next to it.

The `flops` that NAS-Bench-Suite-Zero / NASLib publish for NB201 (`zc_nasbench201.json`, e.g. 17.9586 for index 0
on CIFAR-10, the table of issue 11) are a different count: tensorwatch's `ModelStats` on the same network, which
also counts BN, ReLU and pooling and skips the classifier bias. `flops(arch, counter="tensorwatch")` reproduces
them; over the 491 archs of that file they equal the benchmark's value + 1,290,240 per `avg_pool_3x3` edge +
430,080 per conv edge + 160,822 on CIFAR-10, the structure the counter encodes.
"""

from __future__ import annotations

import json
import math

import pytest

import searchspaces

TASKS = {  # dataset -> the benchmark network's classes and input size
    "cifar10": dict(num_classes=10, image_size=32),
    "cifar100": dict(num_classes=100, image_size=32),
    "ImageNet16-120": dict(num_classes=120, image_size=16),
}

INDEX_0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
ISSUE_36 = "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"

PUBLISHED = [  # (arch, dataset, MFLOPs as the benchmark API returns them)
    # D-X-Y/NATS-Bench issue #24: `api.get_cost_info` of index 0 (cifar10-valid, cifar100, ImageNet16-120);
    # the cifar10-valid figure is also the cost_info of index 0 in NASLib's tests/test_nb201_search_space.py.
    (INDEX_0, "cifar10", 15.64737),
    (INDEX_0, "cifar100", 15.65322),
    (INDEX_0, "ImageNet16-120", 3.91948),
    # D-X-Y/NATS-Bench issue #36: `api.get_cost_info(idx, "cifar10", hp="12")` of this arch.
    (ISSUE_36, "cifar10", 113.95137),
]

# The smallest and largest FLOPs over all 15,625 archs, as ELO-Lab/LOMONAS problems/nasbench201.py normalises
# the benchmark's FLOPs (`_set_up`: CIFAR-10, CIFAR-100, ImageNet16-120).
PUBLISHED_RANGE = {
    "cifar10": (7.78305, 220.11969),
    "cifar100": (7.78890, 220.12554),
    "ImageNet16-120": (1.95340, 55.03756),
}


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("nb201")


def _half_unit_of_6th_digit(value: float) -> float:
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 5)


@pytest.mark.parametrize("arch, dataset, mflops", PUBLISHED)
def test_flops_equal_the_published_value(space, arch, dataset, mflops):
    ours = space.flops(space.parse(arch), **TASKS[dataset]) / 1e6
    assert abs(ours - mflops) <= _half_unit_of_6th_digit(mflops), (arch, dataset, ours, mflops)


@pytest.mark.parametrize("dataset", list(PUBLISHED_RANGE))
def test_range_over_the_whole_space_equals_the_published_one(space, dataset):
    values = [space.flops(arch, **TASKS[dataset]) for arch in space.enumerate()]
    for ours, published in zip((min(values) / 1e6, max(values) / 1e6), PUBLISHED_RANGE[dataset]):
        assert abs(ours - published) <= _half_unit_of_6th_digit(published), (dataset, ours, published)
    # Only convs add FLOPs: 6 edges with 3 choices at no cost (none, skip, pool) and 2 costed ones.
    assert len(set(values)) == 28


def test_pooling_costs_nothing_in_flops_and_its_windows_in_macs(space):
    pooled, skipped = space.parse(INDEX_0), space.parse(INDEX_0.replace("avg_pool_3x3", "skip_connect"))
    task = TASKS["cifar10"]
    assert space.flops(pooled, **task) == space.flops(skipped, **task)
    # One 3x3 pool edge in 5 cells per stage: 9 adds per output element at 16x32x32, 32x16x16 and 64x8x8.
    assert space.macs(pooled, **task) - space.macs(skipped, **task) == 5 * 9 * (16 * 1024 + 32 * 256 + 64 * 64)
    # The shortcuts' 2x2 pools: 4 adds per output element, 16 channels at 16x16 and 32 channels at 8x8.
    assert space.macs(skipped, **task) - space.flops(skipped, **task) == 4 * (16 * 256 + 32 * 64)


def test_only_the_classifier_differs_between_cifar_tasks(space):
    for arch in (space.parse(INDEX_0), space.parse(ISSUE_36)):
        assert space.flops(arch, **TASKS["cifar100"]) - space.flops(arch, **TASKS["cifar10"]) == 90 * 64 + 90


def test_conv_biases_count_when_bn_is_not_affine(space):
    """The PA&DA/GM-NAS configuration (`affine=False`) gives ReLU-Conv-BN convs a bias: one add per output."""
    arch, task = space.make(["nor_conv_1x1"] + ["none"] * 5), TASKS["cifar10"]
    extra = space.flops(arch, affine=False, **task) - space.flops(arch, **task)
    edge = 5 * (16 * 1024 + 32 * 256 + 64 * 64)  # the one conv edge, 5 cells per stage
    blocks = 2 * (32 * 256 + 64 * 64)  # conv_a and conv_b of both reduction blocks
    assert extra == edge + blocks


# Issue 11's table (NAS-Bench-Suite-Zero's NB201 `flops`, MFLOPs): index -> (arch of ../shared/data/nb201
# nb201_acc.csv, cifar10, cifar100, ImageNet16-120).
TENSORWATCH = {
    0: (INDEX_0, 17.9586, 17.9644, 4.49747),
    1: ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
        116.693, 116.698, 29.181),
    857: ("|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
          124.127, 124.133, 31.0396),
    7000: ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|nor_conv_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
           46.3439, 46.3496, 11.5938),
    15624: ("|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|none~0|nor_conv_1x1~1|nor_conv_1x1~2|",
            25.3928, 25.3986, 6.35603),
}


@pytest.mark.parametrize("index", list(TENSORWATCH))
def test_tensorwatch_counter_equals_naslib_published_flops(space, index):
    arch, *published = TENSORWATCH[index]
    for dataset, mflops in zip(TASKS, published):
        ours = space.flops(space.parse(arch), counter="tensorwatch", **TASKS[dataset]) / 1e6
        assert abs(ours - mflops) <= _half_unit_of_6th_digit(mflops), (index, dataset, ours, mflops)


def test_unknown_counter_is_refused(space):
    with pytest.raises(searchspaces.SpaceError, match="accepted: benchmark, tensorwatch"):
        space.flops(space.parse(INDEX_0), counter="fvcore")


def test_arch_info_prints_both_conventions(capsys):
    from nas.cli import main

    assert main(["arch", "info", "--space", "nb201", "--arch", TENSORWATCH[857][0], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert round(info["flops_tensorwatch"] / 1e6, 3) == 124.127
    assert info["flops"] == searchspaces.get("nb201").flops(searchspaces.get("nb201").parse(TENSORWATCH[857][0]))

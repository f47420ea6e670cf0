"""NAS-Bench-Macro space: the benchmark's 8-character codes, and analytic costs checked against the benchmark file."""

from __future__ import annotations

import collections
import json
import pickle

import numpy as np
import pytest
from conftest import shared_data_dir

import searchspaces
from nasbench.keys import key_function
from searchspaces import Space, SpaceError
from searchspaces.nasbench_macro import CANDIDATES, LABELS

MACRO_FILE = "nasbench_macro/nas-bench-macro_cifar10.json"


@pytest.fixture()
def space():
    return searchspaces.get("nasbench-macro")


@pytest.fixture(scope="module")
def source() -> dict[str, dict]:
    """The benchmark file: code -> {test_acc, mean_acc, std, params, flops}."""
    base = shared_data_dir()
    path = base / MACRO_FILE if base else None
    if path is None or not path.is_file():
        pytest.skip("shared data not found: set SUPERNAS_SHARED_DATA or put shared/data beside the project")
    return json.loads(path.read_text())


def test_registered_with_benchmark_order(space):
    assert "nasbench-macro" in searchspaces.names() and "nasbench-macro" in searchspaces.DESCRIPTIONS
    assert space.labels == LABELS == ("l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8")
    assert CANDIDATES == ("identity", "mb_e3_k3", "mb_e6_k5")  # benchmark codes 0, 1, 2
    assert space.size() == 3 ** 8 == 6561
    arch = space.parse("02012100")
    assert arch["l1"] == "identity" and arch["l2"] == "mb_e6_k5" and arch["l4"] == "mb_e3_k3"
    assert arch.codes() == (0, 2, 0, 1, 2, 1, 0, 0)


def test_every_benchmark_code_round_trips(space, source):
    assert len(source) == 6561
    archs = set()
    for code in source:
        arch = space.parse(code)
        assert arch.to_string() == code and "".join(map(str, arch.codes())) == code
        archs.add(arch)
    assert archs == set(space.enumerate())  # the file covers every code exactly once


def test_params_equal_the_benchmark_for_every_arch(space, source):
    wrong = [code for code, entry in source.items() if space.params(space.parse(code)) != entry["params"]]
    assert not wrong, f"{len(wrong)} archs differ, e.g. {wrong[:3]}"
    assert space.params(space.parse("00000000")) == 387_882
    assert space.params(space.parse("22222222")) == 2_932_586


def test_flops_equal_the_benchmark_for_every_arch(space, source):
    wrong = [code for code, entry in source.items() if space.flops(space.parse(code)) != entry["flops"]]
    assert not wrong, f"{len(wrong)} archs differ, e.g. {wrong[:3]}"
    assert space.flops(space.parse("11111111")) == 53_246_464


def test_network_code_groups_codes_that_the_benchmark_gives_one_result(space, source):
    groups = collections.defaultdict(set)
    for code, entry in source.items():
        groups[space.network_code(space.parse(code))].add(tuple(entry["test_acc"]))
    assert len(groups) == 3969  # distinct networks: non-first identities of a stage are pure skips
    assert all(len(results) == 1 for results in groups.values())
    assert space.network_code(space.parse("00001000")) == "00010000"
    assert space.network_code(space.parse("01020120")) == "01020120"


@pytest.mark.parametrize("text, fragment", [
    ("0120", "not a NAS-Bench-Macro code"),
    ("01201203", "not a NAS-Bench-Macro code"),
    ("l1=identity", "not a NAS-Bench-Macro code"),
    ("", "e.g. 02012100"),
])
def test_parse_rejects_bad_codes_with_one_sentence(space, text, fragment):
    with pytest.raises(SpaceError) as info:
        space.parse(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_largest_and_smallest_match_a_full_enumeration(space, source):
    assert space.largest() == Space.largest(space) == space.parse("22222222")
    assert space.smallest() == Space.smallest(space) == space.parse("00000000")
    best = max(source, key=lambda code: source[code]["params"])
    assert space.largest().to_string() == best
    sub = space.restrict("l3", ["identity", "mb_e3_k3"]).restrict("l8", ["mb_e3_k3"])
    assert sub.largest() == Space.largest(sub) == space.parse("22122221")
    assert sub.smallest() == Space.smallest(sub) == space.parse("00000001")


def test_costs_follow_the_task_and_ignore_other_keys(space):
    arch = space.parse("12021021")
    base = space.params(arch)
    assert space.params(arch, num_classes=100) == base + 90 * 1281  # 90 more classifier rows (weights + bias)
    assert space.params(arch, in_channels=1) == base - 2 * 32 * 9  # stem conv over 1 input channel
    assert space.params(arch, C=4, N=1, width_mult=2.0) == base
    assert space.flops(arch, image_size=8, in_channels=1) < space.flops(arch) // 10
    constant, terms = space.cost_terms("flops", image_size=8, in_channels=1)
    assert [labels for labels, _ in terms] == [(label,) for label in LABELS]
    assert constant + sum(int(table[c]) for (_, table), c in zip(terms, arch.codes())) == space.flops(
        arch, image_size=8, in_channels=1)
    constant, terms = space.cost_terms("params")
    assert constant + sum(int(table[c]) for (_, table), c in zip(terms, arch.codes())) == base


def test_sampling_pickling_and_the_benchmark_key(space):
    rng = np.random.default_rng(0)
    codes = space.sample_codes(rng, 2000)
    assert codes.shape == (2000, 8) and set(np.unique(codes)) == {0, 1, 2}
    arch = space.sample(rng)
    assert pickle.loads(pickle.dumps(arch)) == arch
    child = space.mutate(arch, rng)
    assert sum(a != b for a, b in zip(arch.choices, child.choices)) == 1
    assert key_function(space.name)(arch) == arch.to_string()

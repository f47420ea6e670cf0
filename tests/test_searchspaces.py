"""NB201 space: encoding in the benchmark's exact order, parsing, sampling, masks, analytic costs."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest

import searchspaces
from searchspaces import SpaceError
from searchspaces.nb201 import EDGE_LABELS, OPS


@pytest.fixture()
def space():
    return searchspaces.get("nb201")


def test_order_matches_the_benchmark(space):
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert EDGE_LABELS == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    assert space.size() == 15_625


def test_every_benchmark_string_round_trips_and_matches_op_idx(space, nb201_rows):
    assert len(nb201_rows) == 15_625
    seen = set()
    for row in nb201_rows:
        arch = space.parse(row["arch_str"])
        assert arch.to_string() == row["arch_str"]
        assert space.op_idx(arch) == row["op_idx"]
        seen.add(arch)
    assert len(seen) == 15_625  # the table covers every encoding exactly once


def test_arch_is_immutable_hashable_and_mapping(space):
    arch = space.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    assert arch["2<-1"] == "skip_connect" and len(arch) == 6 and list(arch) == list(EDGE_LABELS)
    same = space.make(dict(arch))
    assert same == arch and hash(same) == hash(arch) and len({arch, same}) == 1
    changed = arch.replace(**{"2<-1": "none"})
    assert changed["2<-1"] == "none" and arch["2<-1"] == "skip_connect"
    with pytest.raises(AttributeError):
        arch.x = 1  # __slots__: no new attributes
    assert pickle.loads(pickle.dumps(arch)) == arch
    assert arch.codes() == (3, 0, 1, 4, 2, 0)


@pytest.mark.parametrize("text, fragment", [
    ("", "not an NB201 arch string"),
    ("|nor_conv_3x3~0|+|none~0|skip_connect~1|", "not an NB201 arch string"),
    ("|conv~0|+|none~0|skip_connect~1|+|none~0|none~1|none~2|", "unknown NB201 op 'conv'"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "appears twice"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "source < 1"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "must have 2 input edge"),
])
def test_parse_rejects_bad_strings_with_one_sentence(space, text, fragment):
    with pytest.raises(SpaceError) as info:
        space.parse(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_space_names_the_accepted_ones():
    with pytest.raises(SpaceError, match="accepted: nb201"):
        searchspaces.get("nb999")


def test_sampling_is_seeded_and_uniform(space):
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(0)
    counts = collections.Counter(op for _ in range(5000) for op in space.sample(rng).choices)
    for op in OPS:  # 30,000 draws, expected 6,000 each; 5 sigma is about 350
        assert abs(counts[op] - 6000) < 350
    codes = space.sample_codes(np.random.default_rng(0), 20000)
    assert codes.shape == (20000, 6)
    assert np.all(np.abs(np.bincount(codes.ravel(), minlength=5) - 24000) < 800)


def test_connectivity_rule(space):
    # the output node 3 is reachable only through the GM-NAS rule's paths
    assert not space.is_valid(space.make(["none"] * 6))
    assert space.is_valid(space.make(["none", "none", "none", "skip_connect", "none", "none"]))  # 3<-0
    assert space.is_valid(space.make(["none", "skip_connect", "none", "none", "none", "avg_pool_3x3"]))  # 2<-0,3<-2
    assert space.is_valid(space.make(["nor_conv_1x1", "none", "none", "none", "skip_connect", "none"]))  # 1<-0,3<-1
    assert space.is_valid(space.make(["skip_connect", "none", "skip_connect", "none", "none", "skip_connect"]))
    assert not space.is_valid(space.make(["skip_connect", "skip_connect", "none", "none", "none", "none"]))
    valid = sum(space.is_valid(a) for a in space.enumerate())
    # brute-force reachability on the DAG agrees with the closed-form rule
    def reachable(arch):
        live = {(t, s) for (t, s), op in zip(((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)), arch.choices)
                if op != "none"}
        seen = {0}
        for node in (1, 2, 3):
            if any((node, s) in live and s in seen for s in range(node)):
                seen.add(node)
        return 3 in seen
    assert valid == sum(reachable(a) for a in space.enumerate())
    assert all(space.is_valid(space.sample(np.random.default_rng(i), valid_only=True)) for i in range(200))


def test_enumerate_mutate_crossover(space):
    archs = list(space.enumerate())
    assert len(archs) == len(set(archs)) == 15_625
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = space.sample(rng)
        m = space.mutate(a, rng)
        assert sum(x != y for x, y in zip(a.choices, m.choices)) == 1
        b = space.sample(rng)
        c = space.crossover(a, b, rng)
        assert all(z in (x, y) for x, y, z in zip(a.choices, b.choices, c.choices))


def test_masks_restrict_sample_enumerate_and_round_trip(space):
    sub = space.restrict("2<-1", ["nor_conv_3x3", "none"]).restrict("3<-0", ["skip_connect"])
    assert space.size() == 15_625  # the parent is unchanged
    assert sub.size() == 5**4 * 2 * 1
    assert sub.mask_json() == {"2<-1": ["none", "nor_conv_3x3"], "3<-0": ["skip_connect"]}
    enc = sub.mask_matrix()
    assert enc.shape == (6, 5) and enc.sum() == 4 * 5 + 2 + 1
    rng = np.random.default_rng(0)
    for _ in range(300):
        arch = sub.sample(rng)
        assert sub.contains(arch) and arch["2<-1"] in ("none", "nor_conv_3x3") and arch["3<-0"] == "skip_connect"
        assert sub.contains(sub.mutate(arch, rng))
    assert len(list(sub.enumerate())) == sub.size()
    again = space.restrict_json(sub.mask_json())
    assert again.mask_json() == sub.mask_json()
    arch = sub.sample(rng)
    assert arch == space.parse(arch.to_string())  # sub-space archs are archs of the parent
    assert not sub.contains(space.make(["none"] * 6))
    with pytest.raises(SpaceError, match="at least one candidate"):
        space.restrict("1<-0", [])
    with pytest.raises(SpaceError, match="not a candidate"):
        space.restrict("1<-0", ["conv"])


def test_parameter_counts_match_the_benchmark(space, nb201_rows):
    # NB201 reference points (issue #2): index 0 of the table, and the all-3x3 cell, CIFAR-10
    assert space.params(space.parse(nb201_rows[0]["arch_str"]), num_classes=10) == 129_306
    assert space.params(space.make(["nor_conv_3x3"] * 6), num_classes=10) == 1_531_546


def test_parameter_count_reference_without_table(space):
    assert space.params(space.make(["nor_conv_3x3"] * 6)) == 1_531_546
    arch = space.parse(
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    )
    assert space.params(arch) == 129_306
    # the classifier is the only part that depends on the number of classes
    assert space.params(arch, num_classes=100) - space.params(arch, num_classes=10) == 90 * 65
    assert space.largest() == space.make(["nor_conv_3x3"] * 6)
    assert space.smallest() == space.make(["none"] * 6)

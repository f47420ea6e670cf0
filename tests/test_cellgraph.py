"""NB201 cells as graphs and their classes of same-network encodings (issues 11 §2 and 16).

The networkx classes are checked against two independent derivations (a brute-force canonical form over the
two orders of nodes 1 and 2, and an expression form), and the authors' 6,466 is checked by re-implementing
their rule, so the difference between the two counts is pinned rather than assumed.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import networkx as nx
import numpy as np
import pytest

import searchspaces
from searchspaces import cellgraph
from searchspaces.nb201 import EDGE_LABELS, EDGES, OPS

ALL_CODES = list(itertools.product(range(len(OPS)), repeat=len(EDGES)))
# The four input->output paths of the cell, as edge indices (benchmark order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2).
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))
SWAP = {0: 0, 1: 2, 2: 1, 3: 3}


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("nb201")


def arch_of(space, **ops):
    """An arch with the given edges (`e1_0="skip_connect"` for `1<-0`); the other edges are `none`."""
    choices = {label: "none" for label in EDGE_LABELS}
    choices.update({f"{k[1]}<-{k[3]}": v for k, v in ops.items()})
    return space.make(choices)


def partition(key_of) -> set[frozenset]:
    groups = defaultdict(set)
    for codes in ALL_CODES:
        groups[key_of(codes)].add(codes)
    return {frozenset(g) for g in groups.values()}


def brute_force_key(codes):
    """Independent canonical form: an edge is live when it lies on one of the four paths with no `none` edge;
    the class key is the smaller of the live (source, target, op) sets under both orders of nodes 1 and 2."""
    live = {i for path in PATHS if all(codes[i] != 0 for i in path) for i in path}
    edges = [(EDGES[i][1], EDGES[i][0], OPS[codes[i]]) for i in sorted(live)]
    return min(tuple(sorted(edges)), tuple(sorted((SWAP[s], SWAP[t], op) for s, t, op in edges)))


def expression_key(codes, skip_is_identity=False, nats_zeros=False):
    """Each node as the sorted `+`-join of its input terms, `none` as the zero `#`.

    Defaults: `skip_connect` is an op like any other and zeros are propagated and dropped from sums.
    `skip_is_identity=True, nats_zeros=True` is the NATS-Bench rule (`to_unique_str(consider_zero=True)`):
    skip passes its input's string through, and an input counts as zero only when its string is exactly `#`
    (so a two-input node of zeros reads `#+#`), with zero terms kept in the sums.
    """
    value = {0: "0"}
    for node in (1, 2, 3):
        terms = []
        for (t, s), c in zip(EDGES, codes):
            if t != node:
                continue
            if OPS[c] == "none" or value[s] == "#":
                terms.append("#")
            elif OPS[c] == "skip_connect" and skip_is_identity:
                terms.append(value[s])
            else:
                terms.append(f"({value[s]})@{OPS[c]}")
        if not nats_zeros:
            terms = [x for x in terms if x != "#"] or ["#"]
        value[node] = "+".join(sorted(terms))
    return value[3]


def nats_key(codes):
    return expression_key(codes, skip_is_identity=True, nats_zeros=True)


# --- the graph ----------------------------------------------------------------------------------------------
def test_graph_of_a_cell_with_both_kinds_of_dead_edge(space):
    # 1<-0 none: node 1 carries nothing, so 2<-1 pool and 3<-1 conv1x1 are dead; 3<-2 none: node 2 never
    # reaches the output, so 2<-0 conv3x3 is dead; only 3<-0 skip is live.
    arch = space.parse("|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    graph = space.to_graph(arch)
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert dict(graph.nodes(data="role")) == {0: "input", 1: "intermediate", 2: "intermediate", 3: "output"}
    assert {(s, t): (d["op"], d["label"], d["live"]) for s, t, d in graph.edges(data=True)} == {
        (0, 2): ("nor_conv_3x3", "2<-0", False),
        (1, 2): ("avg_pool_3x3", "2<-1", False),
        (0, 3): ("skip_connect", "3<-0", True),
        (1, 3): ("nor_conv_1x1", "3<-1", False),
    }
    assert set(cellgraph.pruned_graph(arch).edges) == {(0, 3)}
    assert set(cellgraph.pruned_graph(arch).nodes) == {0, 1, 2, 3}


def test_graph_of_benchmark_row_1_has_six_live_edges(space):
    arch = space.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    )
    graph = cellgraph.nb201_graph(arch)
    assert sorted((s, t, op) for s, t, op in graph.edges(data="op")) == [
        (0, 1, "nor_conv_3x3"), (0, 2, "nor_conv_3x3"), (0, 3, "skip_connect"),
        (1, 2, "avg_pool_3x3"), (1, 3, "nor_conv_3x3"), (2, 3, "skip_connect"),
    ]
    assert all(live for _, _, live in graph.edges(data="live"))


def test_live_edges_agree_with_paths_and_with_the_connectivity_rule(space):
    for arch in space.enumerate():
        codes = arch.codes()
        live = cellgraph.live_edges(codes)
        on_a_path = {i for path in PATHS if all(codes[i] != 0 for i in path) for i in path}
        assert live == tuple(i in on_a_path for i in range(6))
        assert any(live) == space.is_valid(arch)


# --- the classes ---------------------------------------------------------------------------------------------
def test_swapping_nodes_1_and_2_gives_the_same_network_with_equal_costs(space):
    a = arch_of(space, e1_0="nor_conv_3x3", e2_0="avg_pool_3x3", e3_0="skip_connect",
                e3_1="nor_conv_1x1", e3_2="nor_conv_3x3")
    b = arch_of(space, e1_0="avg_pool_3x3", e2_0="nor_conv_3x3", e3_0="skip_connect",
                e3_1="nor_conv_3x3", e3_2="nor_conv_1x1")
    assert a != b and all(cellgraph.live_edges(a.codes())[i] for i in (0, 1, 3, 4, 5))
    assert space.canonical(a) == space.canonical(b)
    assert cellgraph.same_network(a, b)
    for task in ({"num_classes": 10}, {"num_classes": 100}, {"num_classes": 120, "image_size": 16}):
        assert space.params(a, **task) == space.params(b, **task)
        assert space.flops(a, **task) == space.flops(b, **task)


def test_every_cell_without_edge_2_1_shares_its_class_with_its_swap(space):
    for codes in ALL_CODES:
        if codes[2] == 0:
            e0, e1, _, e3, e4, e5 = codes
            assert cellgraph.class_representative(codes) == cellgraph.class_representative((e1, e0, 0, e3, e5, e4))


def test_a_live_edge_2_1_has_no_swapped_partner(space):
    # The swap would need an edge 1<-2, which the encoding lacks: the class is this arch plus dead-edge variants.
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|none~1|skip_connect~2|")
    assert cellgraph.class_members(arch.codes()) == (arch.codes(),)


def test_archs_differing_only_in_dead_edges_are_one_class_but_not_equal_in_params(space):
    dead = space.parse("|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    clean = space.parse("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert space.canonical(dead) == space.canonical(clean) == clean
    assert cellgraph.same_network(dead, clean)
    # The benchmark's network still builds (and counts) dead convs: weights and FLOPs differ.
    assert space.params(dead) > space.params(clean)
    assert space.flops(dead) > space.flops(clean)


def test_setting_any_dead_edge_to_none_keeps_the_class():
    for codes in ALL_CODES:
        live = cellgraph.live_edges(codes)
        pruned = tuple(c if on else 0 for c, on in zip(codes, live))
        assert cellgraph.class_representative(pruned) == cellgraph.class_representative(codes)


def test_invalid_archs_form_exactly_one_class(space):
    invalid = {a.codes() for a in space.enumerate() if not space.is_valid(a)}
    assert invalid
    reps = {cellgraph.class_representative(c) for c in invalid}
    assert reps == {(0,) * 6}
    assert set(cellgraph.class_members((0,) * 6)) == invalid


def test_networkx_classes_equal_the_brute_force_classes(space):
    ours = {frozenset(m) for m in cellgraph._class_table()[1].values()}
    assert ours == partition(brute_force_key)


def test_networkx_classes_equal_the_expression_classes_with_skip_as_an_op():
    ours = {frozenset(m) for m in cellgraph._class_table()[1].values()}
    assert ours == partition(expression_key)


def test_same_network_agrees_with_the_class_table(space):
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = space.sample(rng)
        members = cellgraph.class_members(a.codes())
        b = space.decode(members[int(rng.integers(len(members)))])
        c = space.sample(rng)
        assert cellgraph.same_network(a, b)
        assert cellgraph.same_network(a, c) == (space.canonical(a) == space.canonical(c))


def test_class_count(space):
    # 8,765 = 8,764 networks that compute something + the invalid class; equal to the brute-force count above.
    assert cellgraph.num_classes() == len(partition(brute_force_key)) == 8_765
    classes = cellgraph.equivalence_classes(space)
    assert len(classes) == 8_765
    assert sum(len(m) for m in classes.values()) == 15_625
    for rep, members in classes.items():
        assert members[0] == rep  # members in code order, the representative first


def test_canonical_is_idempotent_and_returns_the_smallest_member_without_dead_edges(space):
    for arch in space.enumerate():
        rep = space.canonical(arch)
        assert space.canonical(rep) == rep
        members = cellgraph.class_members(arch.codes())
        assert arch.codes() in members and rep.codes() == min(members)
        assert all(live or c == 0 for c, live in zip(rep.codes(), cellgraph.live_edges(rep.codes())))


def test_spaces_without_equivalences_are_their_own_canonical():
    rng = np.random.default_rng(0)
    for name in ("darts", "mobilenet", "nasbench-macro"):
        space = searchspaces.get(name)
        arch = space.sample(rng)
        assert space.canonical(arch) is arch


def test_equivalence_classes_of_a_sub_space(space):
    sub = space.restrict("1<-0", ["none"]).restrict("2<-0", ["nor_conv_3x3"])
    classes = cellgraph.equivalence_classes(sub)
    members = [m for ms in classes.values() for m in ms]
    assert len(members) == sub.size() == 625
    assert all(sub.contains(sub.parse(m)) for m in members)
    # a representative may lie outside the sub-space: its class is taken over the whole space
    outside = [rep for rep in classes if not sub.contains(sub.parse(rep))]
    assert outside


# --- the authors' figure -------------------------------------------------------------------------------------
def test_nats_bench_rule_gives_the_published_6466():
    # NATS-Bench Table 1 ("6.5K" unique topologies); exactly 6,466 in D-X-Y/NATS-Bench tests/api_test.py
    # (test_12_th_issue) and notebooks/issue-12.ipynb.
    assert len({nats_key(c) for c in ALL_CODES}) == 6_466
    assert len({expression_key(c, skip_is_identity=True) for c in ALL_CODES}) == 5_390


def test_where_the_nats_rule_and_the_graph_classes_differ(space):
    # (1) skips contract there: a skip then a conv equals the conv alone; here the graphs differ.
    chain = arch_of(space, e1_0="skip_connect", e3_1="nor_conv_3x3")
    direct = arch_of(space, e3_0="nor_conv_3x3")
    assert nats_key(chain.codes()) == nats_key(direct.codes())
    assert not cellgraph.same_network(chain, direct)
    # ... which also merges one conv used twice with two convs of their own weights (all edges live in both).
    one = space.parse("|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|")
    two = space.parse("|none~0|+|nor_conv_1x1~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|")
    assert nats_key(one.codes()) == nats_key(two.codes()) == "#+#+(0)@nor_conv_1x1+(0)@nor_conv_1x1"
    assert (space.params(one), space.params(two)) == (101_306, 129_306)
    assert not cellgraph.same_network(one, two)
    # (2) a node 2 of zeros reads `#+#` there, so a dead 3<-2 conv stays visible; here it is pruned.
    dead = arch_of(space, e3_0="nor_conv_3x3", e3_2="nor_conv_1x1")
    clean = arch_of(space, e3_0="nor_conv_3x3")
    assert nats_key(dead.codes()) != nats_key(clean.codes())
    assert space.canonical(dead) == clean

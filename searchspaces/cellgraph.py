"""NB201 cells as graphs, and the classes of encodings that describe the same network.

Why: 15,625 NB201 encodings describe far fewer distinct networks. Swapping the two intermediate nodes, or
changing an edge whose result can never reach the output, gives another encoding of the same computation
graph. Ranking studies that deduplicate (`eval.dedup` of specs/ALGORITHMS.md §0.1), samplers that should
not waste steps on duplicates, and analyses of the benchmark all need one shared answer to "are these two
archs the same network?".

**The graph** (`nb201_graph`): nodes 0..3 (`role` = input / intermediate / output), one edge `s -> t` per
non-`none` cell edge with attributes `op`, `label` (`"t<-s"`) and `live`. An edge is *live* when it lies on a
path from node 0 to node 3 through non-`none` edges, that is when its source is reachable from node 0 and
node 3 is reachable from its target. *Dead* edges are the others: their output can never reach the output
node, or their input carries nothing from the input because every path into their source is `none`.

**The definition.** Two archs are the same network when their *pruned* graphs (all four nodes, live edges
only) are isomorphic as directed graphs with node 0 and node 3 fixed (matched by `role`), nodes 1 and 2 free
to permute, and edge `op` labels matched. Every op, `skip_connect` included, is a labelled edge: a chain of
skip connections is *not* contracted, and two parametric edges are never merged into one. All archs whose
output is unreachable from the input (`NB201Space.is_valid` false) have no live edge, so they form exactly one
class. Classes are computed with networkx: the distinct pruned edge sets are bucketed by a cheap isomorphism
invariant (per intermediate node, the ops and neighbour roles of its in- and out-edges) and split inside a
bucket by exact `nx.is_isomorphic` checks with node (`role`) and edge (`op`) matchers. (networkx's
`weisfeiler_lehman_graph_hash` would bucket as well but took three quarters of the time, and its directed
hashes changed in networkx 3.5; here the cheap invariant happens to separate the classes completely.)

**The representative** (`class_representative`, `NB201Space.canonical`) is the member with the smallest
op-code tuple in edge order (`none`=0 < `skip_connect` < `nor_conv_1x1` < `nor_conv_3x3` < `avg_pool_3x3`),
compared lexicographically. The rule needs no data file. Because `none` has code 0 and setting a dead edge
to `none` keeps an arch in its class (removing a dead edge changes no other edge's liveness), the
representative never has a dead non-`none` edge. The invalid class is represented by the all-`none` cell.

**Count.** This definition gives 8,765 classes over the 15,625 encodings: 8,764 networks that compute
something plus the one class of 341 invalid cells. (Removing dead edges leaves 9,445 distinct edge sets;
swapping nodes 1 and 2 joins 680 pairs of them. The swap only relates archs whose `2<-1` edge is `none` or
dead, since the swapped edge `1<-2` does not exist in the encoding.) The same partition results from an
expression form where each node is the sorted sum of `op(input)` terms, `skip_connect` kept as an op, and
zeros propagated and dropped; the tests check both.

**The authors' figure** is 6,466 unique ("isomorphism") architectures. The NAS-Bench-201 paper (Dong & Yang,
ICLR 2020) reports the 15,625 encodings; the unique count is given by its extension NATS-Bench (Dong, Liu,
Musial, Gabrys, TPAMI 2021), Table 1 "#Unique architectures 6.5K" (also on xuanyidong.com/assets/projects/NATS-Bench),
and the exact 6,466 is printed by `notebooks/issue-12.ipynb` and asserted by
`tests/api_test.py::test_12_th_issue` of D-X-Y/NATS-Bench (issues #13 and #43). It counts the distinct
strings of `Structure.to_unique_str(consider_zero=True)`, a *functional* form: each node is the sorted
`+`-join of its input terms; `none`, or an input whose string is exactly `#`, gives `#`; `skip_connect` gives
its input's string unchanged; any other op gives `(input)@op`. Relative to the 8,765 classes here it merges
3,305 classes away and splits 685 classes into 1,006 extra strings (8,765 - 3,305 + 1,006 = 6,466), for two
reasons:

1. `skip_connect` is the identity there, so chains of skips contract (`1<-0 skip, 3<-1 conv` equals
   `3<-0 conv`) and sums are compared as expressions, not graphs. That merges, too, archs that are different
   networks in the benchmark: `|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|`
   (one conv, output `2 conv(x)`, 101,306 parameters) and
   `|none~0|+|nor_conv_1x1~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|` (two convs with their own
   weights, 129,306 parameters) both read `#+#+(0)@nor_conv_1x1+(0)@nor_conv_1x1`; 430 of its 6,466
   classes hold archs whose live edges have different parameter counts. With zeros handled as here,
   contracting skips alone would give 5,390 classes.
2. Zeros are only partly propagated: node 2 with both inputs `none` reads `#+#`, not `#`, so ops on `3<-2`
   stay visible (a dead `3<-2` conv differs from `3<-2 none` there), and `#` terms of dead inputs stay in the
   sums. This is what splits classes (and takes 5,390 up to 6,466).

So 6,466 is not a count of isomorphism classes of cell graphs, and this module does not try to reproduce
it; `tests/test_cellgraph.py` re-implements that rule independently to check the 6,466 and these examples.

Pure Python + networkx (no torch, no files). The class table is built once per process, in about a second.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Sequence

import networkx as nx
from networkx.algorithms.isomorphism import categorical_edge_match, categorical_node_match

from .core import Arch, Space
from .nb201 import EDGE_LABELS, EDGES, OPS

ROLES: dict[int, str] = {0: "input", 1: "intermediate", 2: "intermediate", 3: "output"}
_NONE = OPS.index("none")
_node_match = categorical_node_match("role", None)
_edge_match = categorical_edge_match("op", None)

Codes = tuple[int, ...]
EdgeKey = tuple[tuple[int, int, int], ...]  # live edges as (source, target, op code), in edge order


def live_edges(codes: Sequence[int]) -> tuple[bool, ...]:
    """Per cell edge (benchmark order): whether it is non-`none` and on a path from node 0 to node 3."""
    present = [c != _NONE for c in codes]
    from_input = {0}  # nodes reachable from node 0; sources precede targets in EDGES
    for (t, s), on in zip(EDGES, present):
        if on and s in from_input:
            from_input.add(t)
    to_output = {3}  # nodes from which node 3 is reachable; walk the edges backwards
    for (t, s), on in reversed(list(zip(EDGES, present))):
        if on and t in to_output:
            to_output.add(s)
    return tuple(on and s in from_input and t in to_output for (t, s), on in zip(EDGES, present))


def nb201_graph(arch: Arch) -> nx.DiGraph:
    """The cell of an NB201 arch as a DAG: nodes 0..3 with `role`, one edge per non-`none` cell edge with
    `op`, `label` (`"t<-s"`) and `live` (on a path from node 0 to node 3)."""
    codes = arch.codes()
    graph = nx.DiGraph(arch=arch.to_string())
    for node, role in ROLES.items():
        graph.add_node(node, role=role)
    for (t, s), label, code, live in zip(EDGES, EDGE_LABELS, codes, live_edges(codes)):
        if code != _NONE:
            graph.add_edge(s, t, op=OPS[code], label=label, live=live)
    return graph


def pruned_graph(arch: Arch) -> nx.DiGraph:
    """`nb201_graph` without its dead edges (all four nodes kept): the graph that defines the class."""
    graph = nb201_graph(arch)
    graph.remove_edges_from([(s, t) for s, t, live in graph.edges(data="live") if not live])
    return graph


def same_network(a: Arch, b: Arch) -> bool:
    """Whether two NB201 archs are the same network: their pruned graphs are isomorphic with input and output
    fixed and ops matched (computed directly with networkx, without the class table)."""
    return nx.is_isomorphic(pruned_graph(a), pruned_graph(b), node_match=_node_match, edge_match=_edge_match)


def _edge_key(codes: Codes) -> EdgeKey:
    return tuple((s, t, c) for (t, s), c, live in zip(EDGES, codes, live_edges(codes)) if live)


def _graph_of(key: EdgeKey) -> nx.DiGraph:
    graph = nx.DiGraph()
    for node, role in ROLES.items():
        graph.add_node(node, role=role)
    for s, t, c in key:
        graph.add_edge(s, t, op=OPS[c])
    return graph


def _invariant(key: EdgeKey) -> tuple:
    """A cheap isomorphism invariant of a pruned graph (input and output fixed, nodes 1 and 2 free): the
    direct input->output ops, and per intermediate node the sorted (neighbour role, op) of its in- and
    out-edges, the two nodes sorted. Used only to bucket graphs before the exact networkx check."""
    direct = tuple(sorted(c for s, t, c in key if (s, t) == (0, 3)))
    nodes = []
    for node in (1, 2):
        ins = tuple(sorted((ROLES[s], c) for s, t, c in key if t == node))
        outs = tuple(sorted((ROLES[t], c) for s, t, c in key if s == node))
        nodes.append((ins, outs))
    return direct, tuple(sorted(nodes))


@functools.lru_cache(maxsize=1)
def _class_table() -> tuple[dict[Codes, Codes], dict[Codes, tuple[Codes, ...]]]:
    """`(representative of every code tuple, members of every representative)` over all 15,625 encodings."""
    by_key: dict[EdgeKey, list[Codes]] = defaultdict(list)
    for codes in itertools.product(range(len(OPS)), repeat=len(EDGES)):
        by_key[_edge_key(codes)].append(codes)
    # Bucket the distinct pruned graphs by an isomorphism invariant, then split each bucket with exact
    # networkx isomorphism checks (node roles and edge ops must match).
    buckets: dict[tuple, list[EdgeKey]] = defaultdict(list)
    for key in by_key:
        buckets[_invariant(key)].append(key)
    classes: list[list[Codes]] = []
    for keys in buckets.values():
        if len(keys) == 1:
            classes.append(list(by_key[keys[0]]))
            continue
        found: list[tuple[nx.DiGraph, list[Codes]]] = []
        for key in keys:
            graph = _graph_of(key)
            for other, members in found:
                if nx.is_isomorphic(graph, other, node_match=_node_match, edge_match=_edge_match):
                    members.extend(by_key[key])
                    break
            else:
                found.append((graph, list(by_key[key])))
        classes.extend(members for _, members in found)
    representative: dict[Codes, Codes] = {}
    members_of: dict[Codes, tuple[Codes, ...]] = {}
    for members in classes:
        members.sort()
        members_of[members[0]] = tuple(members)
        for codes in members:
            representative[codes] = members[0]
    return representative, members_of


def class_representative(codes: Sequence[int]) -> Codes:
    """Op codes (benchmark edge order) of the representative of the class of `codes`: the member with the
    smallest code tuple."""
    codes = tuple(int(c) for c in codes)
    return _class_table()[0][codes]


def class_members(codes: Sequence[int]) -> tuple[Codes, ...]:
    """All op-code tuples in the class of `codes`, sorted (the first is the representative)."""
    table, members = _class_table()
    return members[table[tuple(int(c) for c in codes)]]


def num_classes() -> int:
    """Number of classes over the whole NB201 space (the invalid cells count as one class)."""
    return len(_class_table()[1])


def equivalence_classes(space: Space) -> dict[str, list[str]]:
    """`representative string -> member strings` over every arch `space.enumerate()` yields, grouped by
    `space.canonical`.

    For NB201 the representative is taken over the whole space, so for a restricted sub-space a key can be
    an arch outside the sub-space; members are always archs of `space`. Spaces without known equivalences
    give one class per arch (and refuse, as `enumerate` does, when they are too large).
    """
    classes: dict[str, list[str]] = defaultdict(list)
    for arch in space.enumerate():
        classes[space.canonical(arch).to_string()].append(arch.to_string())
    return dict(classes)

"""How alike two archs are: the measures of the ENAS hidden-state analysis (specs/ALGORITHMS.md §5.4).

- `common_ops`: decisions (other than input choices) with the same choice (NB201: edges with the same op; the
  paper's "# common activations").
- `common_connections`: edges `(source, target)` present in both graphs, whatever their op (the paper's "# common
  connections"; NB201: edges that are not `none` in both).
- `edit_distance`: graph edit distance between the `space.to_graph` DAGs with networkx, nodes matched by `role`,
  edges by `op`, every edit costing 1. Exact unless the search for a pair outlasts `timeout` seconds; then the
  best edit path found so far, an upper bound, and the pair is reported as not exact.

Pure Python + networkx.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import networkx as nx

from .core import Arch, Space


def common_ops(space: Space, a: Arch, b: Arch) -> int:
    """Decisions that are not input choices on which `a` and `b` agree."""
    inputs = set(space.input_labels())
    return sum(x == y for label, x, y in zip(space.labels, a.choices, b.choices) if label not in inputs)


def common_connections(ga: nx.DiGraph, gb: nx.DiGraph) -> int:
    """Edges (source, target) of both graphs, ops ignored."""
    return len(set(ga.edges()) & set(gb.edges()))


def _role_match(x: dict, y: dict) -> bool:
    return x.get("role") == y.get("role")


def _op_match(x: dict, y: dict) -> bool:
    return x.get("op") == y.get("op")


def edit_distance(ga: nx.DiGraph, gb: nx.DiGraph, timeout: float = 1.0) -> tuple[float, bool]:
    """(graph edit distance, whether it is exact): the last cost of networkx's strictly decreasing edit-path search,
    exact when the search finished within `timeout` seconds."""
    started = time.perf_counter()
    best = float("inf")
    for _, _, cost in nx.optimize_edit_paths(ga, gb, node_match=_role_match, edge_match=_op_match,
                                             strictly_decreasing=True, timeout=timeout):
        best = cost
    return float(best), time.perf_counter() - started < timeout


class EditDistances:
    """`edit_distance` memoised by the pair of graphs' contents (sampled archs repeat, and so do their pairs)."""

    def __init__(self, timeout: float = 1.0):
        self.timeout = timeout
        self._cache: dict[tuple[Hashable, Hashable], tuple[float, bool]] = {}
        self.inexact = 0

    @staticmethod
    def _key(graph: nx.DiGraph) -> Hashable:
        return (tuple(sorted((str(n), d.get("role")) for n, d in graph.nodes(data=True))),
                tuple(sorted((str(s), str(t), d.get("op")) for s, t, d in graph.edges(data=True))))

    def __call__(self, ga: nx.DiGraph, gb: nx.DiGraph) -> float:
        key = (self._key(ga), self._key(gb))
        if key not in self._cache:
            self._cache[key] = self._cache[key[::-1]] = edit_distance(ga, gb, self.timeout)
            self.inexact += not self._cache[key][1]
        return self._cache[key][0]

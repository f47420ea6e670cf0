"""How alike two archs are: the measures of the ENAS hidden-state analysis (specs/ALGORITHMS.md §5.4).

- `common_ops`: decisions (other than input choices) with the same choice (NB201: edges with the same op; the
  paper's "# common activations").
- `common_connections`: edges `(source, target)` present in both graphs, whatever their op (the paper's "# common
  connections"; NB201: edges that are not `none` in both).
- `edit_distance`: graph edit distance between the `space.to_graph` DAGs, nodes matched by `role`, edges by `op`,
  every edit costing 1. For two graphs with the same number n <= 7 of nodes (NB201's cells) it is computed exactly
  by trying every bijection of the nodes (`permutation_edit_distance`): with unit costs, deleting a node and
  inserting another never beats substituting one for the other, so some bijection is optimal, and under a
  bijection every node whose role differs and every ordered node pair whose edge differs (one missing, or another
  op) costs 1. Otherwise networkx's edit-path search, exact unless it outlasts `timeout` seconds for a pair; then
  the best path found so far, an upper bound, and the pair is counted as not exact.

Pure Python + networkx.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Hashable

import networkx as nx
import numpy as np

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


PERMUTATION_LIMIT = 7  # nodes; 7! = 5,040 bijections per pair


def _matrix(graph: nx.DiGraph, codes: dict[Hashable, int]) -> tuple[np.ndarray, np.ndarray]:
    """Node roles and the op of every ordered node pair (0: no edge) as integer arrays, nodes in sorted order."""
    nodes = sorted(graph.nodes, key=str)
    at = {n: i for i, n in enumerate(nodes)}
    roles = np.array([codes.setdefault(("role", graph.nodes[n].get("role")), len(codes) + 1) for n in nodes])
    ops = np.zeros((len(nodes), len(nodes)), dtype=np.int64)
    for s, t, d in graph.edges(data=True):
        ops[at[s], at[t]] = codes.setdefault(("op", d.get("op")), len(codes) + 1)
    return roles, ops


def permutation_edit_distance(ga: nx.DiGraph, gb: nx.DiGraph) -> float:
    """The exact unit-cost edit distance of two graphs with the same number of nodes, over every node bijection."""
    n = ga.number_of_nodes()
    if gb.number_of_nodes() != n or n > PERMUTATION_LIMIT:
        raise ValueError(f"permutation_edit_distance needs two graphs of the same size <= {PERMUTATION_LIMIT} nodes")
    codes: dict[Hashable, int] = {}
    (ra, oa), (rb, ob) = _matrix(ga, codes), _matrix(gb, codes)
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)  # [P, n]: node i of a -> perms[:, i]
    role_cost = (ra[None, :] != rb[perms]).sum(1)
    edge_cost = (oa[None, :, :] != ob[perms[:, :, None], perms[:, None, :]]).sum((1, 2))
    return float((role_cost + edge_cost).min())


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
            if ga.number_of_nodes() == gb.number_of_nodes() <= PERMUTATION_LIMIT:
                result = (permutation_edit_distance(ga, gb), True)
            else:
                result = edit_distance(ga, gb, self.timeout)
            self._cache[key] = self._cache[key[::-1]] = result
            self.inexact += not self._cache[key][1]
        return self._cache[key][0]

"""Which unit to split and how: partition a unit's candidates into groups of least within-group gradient distance.

Given the mean distance matrix `D` of one unit (`strategies.gm`), a partition into two groups is scored by
`within` (the sum of D over pairs inside a group) and `cut` (the sum over pairs across groups, `total - within`);
specs/ALGORITHMS.md §2.3:
- the partition of a unit minimises `within` over the allowed group sizes: exhaustive enumeration up to
  `EXHAUSTIVE_MAX` candidates, above it a Kernighan-Lin bisection (networkx) of the graph whose edge weights are
  `max(D) - D` (for halves of fixed sizes, a minimum cut of that graph is a maximum cut of D);
- the unit to split is the one whose partition has the largest `cut` (`max_cut`, NB201 and OFA reference) or the
  smallest `within` (`min_within`, the DARTS-space and ProxylessNAS reference); the two differ across units, whose
  total distance differs.
Group sizes: `balanced` (sizes floor(n/2) and ceil(n/2), the NB201 reference's 2 vs 3) or `any` (the smaller group
`min_group`..floor(n/2), the DARTS-space reference with `min_group` 2).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

EXHAUSTIVE_MAX = 8
GROUP_SIZES: tuple[str, ...] = ("balanced", "any")
EDGE_SELECT: tuple[str, ...] = ("max_cut", "min_within")


@dataclass(frozen=True)
class Partition:
    """Two groups of candidates (each in candidate order, the group holding the first candidate first) with the
    within-group and cut sums of the distance matrix they were scored on."""

    groups: tuple[tuple[Hashable, ...], ...]
    within: float
    cut: float


def _sizes(n: int, group_sizes: str, min_group: int) -> list[int]:
    """The allowed sizes of the smaller group."""
    if group_sizes == "balanced":
        return [n // 2]
    low = min(max(min_group, 1), n // 2)
    return list(range(low, n // 2 + 1))


def _score(D: np.ndarray, member: np.ndarray) -> tuple[float, float]:
    """(within, cut) of a two-group assignment (`member` bool per candidate), pairs counted once."""
    same = member[:, None] == member[None, :]
    upper = np.triu(np.ones_like(D, dtype=bool), k=1)
    within = float(D[same & upper].sum())
    return within, float(D[upper].sum()) - within


def _named(candidates: Sequence[Hashable], member: np.ndarray, D: np.ndarray) -> Partition:
    first = bool(member[0])
    groups = (tuple(c for c, m in zip(candidates, member) if m == first),
              tuple(c for c, m in zip(candidates, member) if m != first))
    within, cut = _score(D, member)
    return Partition(groups, within, cut)


def exhaustive(D: np.ndarray, candidates: Sequence[Hashable], group_sizes: str = "balanced",
               min_group: int = 1) -> Partition:
    """The two-group partition of least `within` over every assignment with allowed sizes (ties: the first in
    enumeration order of the smaller group's candidate indices)."""
    return _least_within(np.asarray(D, dtype=float), candidates, _sizes(len(candidates), group_sizes, min_group))


def _least_within(D: np.ndarray, candidates: Sequence[Hashable], sizes: Sequence[int]) -> Partition:
    n = len(candidates)
    best = None
    for size in sizes:
        for chosen in itertools.combinations(range(n), size):
            member = np.zeros(n, dtype=bool)
            member[list(chosen)] = True
            part = _named(candidates, member, D)
            if best is None or part.within < best.within - 1e-12:
                best = part
    assert best is not None
    return best


def graph_cut(D: np.ndarray, candidates: Sequence[Hashable], seed: int = 0) -> Partition:
    """A balanced two-group partition by Kernighan-Lin bisection of the similarity graph (`max(D) - D` on every
    pair), for candidate lists too long to enumerate."""
    import networkx as nx
    from networkx.algorithms.community import kernighan_lin_bisection

    D = np.asarray(D, dtype=float)
    n = len(candidates)
    top = float(D.max())
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from((i, j, top - D[i, j]) for i in range(n) for j in range(i + 1, n))
    left, _ = kernighan_lin_bisection(graph, weight="weight", seed=seed)
    member = np.array([i in left for i in range(n)])
    return _named(candidates, member, D)


def partition(D: np.ndarray, candidates: Sequence[Hashable], group_sizes: str = "balanced", min_group: int = 1,
              edge_select: str = "max_cut", seed: int = 0) -> Partition:
    """The best two-group partition of one unit: exhaustive up to EXHAUSTIVE_MAX candidates (scored by
    `edge_select` across the allowed sizes), a graph cut above."""
    if group_sizes not in GROUP_SIZES:
        raise ValueError(f"unknown group sizes {group_sizes!r}; accepted: {', '.join(GROUP_SIZES)}")
    if edge_select not in EDGE_SELECT:
        raise ValueError(f"unknown edge selection {edge_select!r}; accepted: {', '.join(EDGE_SELECT)}")
    if len(candidates) < 2:
        raise ValueError("a unit needs at least two candidates to be split")
    if len(candidates) > EXHAUSTIVE_MAX:
        return graph_cut(D, candidates, seed)
    if edge_select == "min_within" or group_sizes == "balanced":
        return exhaustive(D, candidates, group_sizes, min_group)
    # max_cut over several sizes: per size the least within (= the largest cut of that size), then the largest cut
    D = np.asarray(D, dtype=float)
    parts = [_least_within(D, candidates, [size]) for size in _sizes(len(candidates), "any", min_group)]
    return max(parts, key=lambda p: p.cut)


def select(partitions: dict[str, Partition], edge_select: str = "max_cut") -> str:
    """The unit to split: the largest cut or the least within-group sum (ties: the first unit in order)."""
    if not partitions:
        raise ValueError("no unit left to split")
    units = list(partitions)
    if edge_select == "max_cut":
        return max(units, key=lambda u: (partitions[u].cut, -units.index(u)))
    return min(units, key=lambda u: (partitions[u].within, units.index(u)))


def random_partition(candidates: Sequence[Hashable], rng: np.random.Generator, group_sizes: str = "balanced",
                     min_group: int = 1) -> tuple[tuple[Hashable, ...], ...]:
    """A uniformly random two-group partition with allowed sizes (the control arm: a split of GM's shape)."""
    n = len(candidates)
    size = int(rng.choice(_sizes(n, group_sizes, min_group)))
    chosen = set(rng.choice(n, size=size, replace=False).tolist())
    member = np.array([i in chosen for i in range(n)])
    first = bool(member[0])
    return (tuple(c for c, m in zip(candidates, member) if m == first),
            tuple(c for c, m in zip(candidates, member) if m != first))

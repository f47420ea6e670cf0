"""Post-training search: pick an arch with inherited-weight scores (random search, regularized evolution).

Both ask only for `evaluate(arch) -> score` (higher is better) and optionally `allowed(arch) -> bool` (a
params/FLOPs limit); they never touch torch or the data. Scores are cached by arch, so a budget counts
distinct evaluations, and duplicates cost nothing.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from searchspaces import Arch, Space

Evaluate = Callable[[Arch], float]
Allowed = Callable[[Arch], bool]


@dataclass
class SearchResult:
    best: Arch
    score: float
    history: list[tuple[Arch, float]] = field(default_factory=list)  # distinct evaluations, in order

    @property
    def evaluations(self) -> int:
        return len(self.history)


class _ScoreCache:
    def __init__(self, evaluate: Evaluate, budget: int, on_result: Callable[[int, Arch, float], None] | None):
        self.evaluate, self.budget, self.on_result = evaluate, budget, on_result
        self.scores: dict[Arch, float] = {}
        self.history: list[tuple[Arch, float]] = []

    @property
    def exhausted(self) -> bool:
        return len(self.history) >= self.budget

    def __call__(self, arch: Arch) -> float:
        if arch not in self.scores:
            score = float(self.evaluate(arch))
            self.scores[arch] = score
            self.history.append((arch, score))
            if self.on_result is not None:
                self.on_result(len(self.history), arch, score)
        return self.scores[arch]

    def result(self) -> SearchResult:
        if not self.history:
            raise ValueError("the search evaluated no arch: the constraint may exclude every sampled arch")
        best, score = max(self.history, key=lambda item: item[1])
        return SearchResult(best, score, list(self.history))


def _sample_allowed(space: Space, rng: np.random.Generator, allowed: Allowed | None, valid_only: bool,
                    max_tries: int = 10_000) -> Arch:
    for _ in range(max_tries):
        arch = space.sample(rng, valid_only=valid_only)
        if allowed is None or allowed(arch):
            return arch
    raise ValueError(f"no arch within the constraint found in {max_tries} samples of space {space.name!r}")


def random_search(space: Space, evaluate: Evaluate, budget: int, rng: np.random.Generator,
                  allowed: Allowed | None = None, valid_only: bool = False,
                  on_result: Callable[[int, Arch, float], None] | None = None) -> SearchResult:
    """Evaluate `budget` distinct uniformly sampled archs (fewer if the space is smaller); keep the best."""
    cache = _ScoreCache(evaluate, min(budget, space.size()), on_result)
    misses = 0
    while not cache.exhausted and misses < 100 * budget:
        arch = _sample_allowed(space, rng, allowed, valid_only)
        if arch in cache.scores:
            misses += 1
            continue
        cache(arch)
    return cache.result()


def regularized_evolution(space: Space, evaluate: Evaluate, budget: int, rng: np.random.Generator,
                          population: int = 20, sample_size: int = 5, allowed: Allowed | None = None,
                          valid_only: bool = False,
                          on_result: Callable[[int, Arch, float], None] | None = None) -> SearchResult:
    """Regularized (aging) evolution, Real et al. 2019: tournament of `sample_size`, mutate the winner,
    the oldest member dies. `budget` counts distinct evaluations including the initial population."""
    if not 1 <= sample_size <= population:
        raise ValueError(f"sample_size must be between 1 and population ({population}), got {sample_size}")
    cache = _ScoreCache(evaluate, min(budget, space.size()), on_result)
    queue: collections.deque[tuple[Arch, float]] = collections.deque()
    while len(queue) < population and not cache.exhausted:
        arch = _sample_allowed(space, rng, allowed, valid_only)
        queue.append((arch, cache(arch)))
    stalls = 0
    while not cache.exhausted and stalls < 100 * budget:
        picks = rng.choice(len(queue), size=min(sample_size, len(queue)), replace=False)
        parent = max((queue[int(i)] for i in picks), key=lambda item: item[1])[0]
        child = space.mutate(parent, rng)
        if (allowed is not None and not allowed(child)) or (valid_only and not space.is_valid(child)):
            stalls += 1
            continue
        known = child in cache.scores
        queue.append((child, cache(child)))
        queue.popleft()
        stalls = stalls + 1 if known else 0
    return cache.result()


SEARCHERS: dict[str, Callable[..., SearchResult]] = {
    "random": random_search,
    "evolution": regularized_evolution,
}

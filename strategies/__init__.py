"""Strategies: WHICH arch to train next, and how the final arch is picked.

    strategy = strategies.get("uniform", reject_disconnected=False)
    result = strategies.search.regularized_evolution(space, evaluate, budget=100, rng=rng)
"""

from __future__ import annotations

from typing import Any

from . import search
from .base import ArchStepContext, StepContext, Strategy
from .differentiable import DARTSStrategy, DrNASStrategy, GDASStrategy
from .pada import PADAStrategy
from .sandwich import SandwichStrategy
from .search import SEARCHERS, SearchResult, random_search, regularized_evolution
from .shiftnas import ShiftNASStrategy
from .uniform import UniformStrategy

_REGISTRY: dict[str, type[Strategy]] = {
    "uniform": UniformStrategy,
    "pada": PADAStrategy,
    "darts": DARTSStrategy,
    "gdas": GDASStrategy,
    "drnas": DrNASStrategy,
    "sandwich": SandwichStrategy,
    "shiftnas": ShiftNASStrategy,
}

DESCRIPTIONS: dict[str, str] = {
    "uniform": "SPOS: one uniformly sampled path per step",
    "pada": "PA&DA: paths and training samples drawn by gradient-norm importance (Lu et al. 2023)",
    "darts": "DARTS: softmax relaxation, architecture by gradient on a held-out split (order 1 or 2)",
    "gdas": "GDAS: straight-through Gumbel samples of one candidate per decision, annealed temperature",
    "drnas": "DrNAS: weights sampled from a Dirichlet per decision (pathwise gradients), L2 or KL regulariser",
    "sandwich": "sandwich rule (BigNAS/OFA): largest + smallest + n uniform paths per step, in-place distillation",
    "shiftnas": "ShiftNAS: FLOPs bins, a shifted bin distribution and an LSTM arch generator per bin (§4)",
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; accepted: {', '.join(_REGISTRY)}") from None


def get(name: str, **opts: Any) -> Strategy:
    """A new strategy instance by name with its options."""
    return strategy_class(name)(**opts)


__all__ = [
    "ArchStepContext", "DARTSStrategy", "DESCRIPTIONS", "DrNASStrategy", "GDASStrategy", "get", "names", "PADAStrategy",
    "random_search", "regularized_evolution", "SandwichStrategy", "search", "SEARCHERS", "SearchResult",
    "ShiftNASStrategy", "StepContext", "Strategy", "strategy_class", "UniformStrategy",
]

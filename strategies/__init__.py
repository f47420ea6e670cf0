"""Strategies: WHICH arch to train next, and how the final arch is picked.

    strategy = strategies.get("uniform", reject_disconnected=False)
    result = strategies.search.regularized_evolution(space, evaluate, budget=100, rng=rng)

A strategy registers itself with `@register_strategy(description)` on its class (`strategies.registry`);
importing its module below is its registration line.
"""

from __future__ import annotations

from typing import Any

from . import search
from .base import ArchStepContext, LossContext, StepContext, Strategy
from .registry import StrategyEntry, entries, entry, register_strategy
from .search import SEARCHERS, SearchResult, random_search, regularized_evolution

# isort: off
# The registration lines: importing a strategy module registers its strategies, in this order.
from .uniform import UniformStrategy
from .pada import PADAStrategy
from .differentiable import DARTSStrategy, DrNASStrategy, GDASStrategy, RelaxedStrategy
from .sandwich import SandwichStrategy
from .shiftnas import ShiftNASStrategy
from .enas import ENASStrategy
from .autodistil import AutoDistilStrategy
# isort: on


def names() -> tuple[str, ...]:
    """Registered strategy names."""
    return tuple(e.name for e in entries())


def descriptions() -> dict[str, str]:
    """`name -> one-line description` of every registered strategy (`nas list`)."""
    return {e.name: e.description for e in entries()}


DESCRIPTIONS: dict[str, str] = descriptions()  # the strategies registered above; later ones: descriptions()


def strategy_class(name: str) -> type[Strategy]:
    """The class of strategy `name` (ValueError, one sentence, for an unknown name)."""
    return entry(name).strategy_class


def get(name: str, **opts: Any) -> Strategy:
    """A new strategy instance by name with its options."""
    return entry(name).create(**opts)


__all__ = [
    "ArchStepContext", "AutoDistilStrategy",
    "DARTSStrategy", "DESCRIPTIONS", "DrNASStrategy", "descriptions", "ENASStrategy", "entries",
    "entry", "GDASStrategy", "get", "LossContext", "names", "PADAStrategy", "random_search", "register_strategy",
    "regularized_evolution", "RelaxedStrategy", "SandwichStrategy", "search", "SEARCHERS", "SearchResult",
    "ShiftNASStrategy", "StepContext", "Strategy", "StrategyEntry", "strategy_class", "UniformStrategy",
]

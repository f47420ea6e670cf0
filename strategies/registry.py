"""The registry of strategies: one `@register_strategy(description)` line on a strategy's class.

A registration holds the class (its `name`, its typed options in `OPTIONS`, the kind of path it gives the
supernet) and a one-line description; `nas list`, config validation, `nas config keys` and `strategies.get` read
it. The options are checked when the class registers: every one must be a typed `searchspaces.options.Option`
(whose default passes its own check, which the Option makes sure of) with a help text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from searchspaces.options import Option

from .base import Strategy


@dataclass(frozen=True)
class StrategyEntry:
    """Everything the framework knows about a registered strategy without building it."""

    name: str
    strategy_class: type[Strategy]
    description: str

    @property
    def options(self) -> Mapping[str, Option]:
        """`option -> typed Option`, the class's `OPTIONS`."""
        return self.strategy_class.OPTIONS

    def defaults(self) -> dict[str, Any]:
        """`option -> default` of every option."""
        return self.strategy_class.defaults()

    def create(self, **opts: Any) -> Strategy:
        """A new instance with `opts` (ValueError, one sentence, for an unknown option)."""
        return self.strategy_class(**opts)


_ENTRIES: dict[str, StrategyEntry] = {}

T = TypeVar("T", bound=type[Strategy])


def register_strategy(description: str) -> Callable[[T], T]:
    """Class decorator: register a `Strategy` subclass under its `name` with a one-line description."""

    def register(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)) or cls.name == Strategy.name:
            raise TypeError(f"register_strategy takes a Strategy subclass with its own name, got {cls!r}")
        if cls.name in _ENTRIES and _ENTRIES[cls.name].strategy_class is not cls:
            raise TypeError(f"strategy name {cls.name!r} is registered twice")
        bad = [k for k, v in cls.OPTIONS.items() if not isinstance(v, Option) or not v.help]
        if bad:
            raise TypeError(f"strategy {cls.name!r}: the options {bad} are not typed Options with a help text "
                            "(searchspaces.options)")
        _ENTRIES[cls.name] = StrategyEntry(cls.name, cls, description)
        return cls

    return register


def entry(name: str) -> StrategyEntry:
    """The registration of strategy `name`; ValueError (one sentence naming the accepted ones) when there is none."""
    try:
        return _ENTRIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r}; accepted: {', '.join(_ENTRIES)}") from None


def entries() -> tuple[StrategyEntry, ...]:
    """Every registration, in registration order."""
    return tuple(_ENTRIES.values())

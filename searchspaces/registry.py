"""The registry of search spaces: one `@register_space(...)` line on a space's class is all the rest of the code
needs to find it (`nas list`, config validation, benchmark keys, the registry tests).

A registration holds what is true of the space itself, without torch: its class, a one-line description, an
example arch, and the capabilities the class declares (`has_flops`, `flops_counters`, `cost_term_kinds`,
`has_equivalences`, `COST_OPTIONS`). The declarations are checked against the methods the class overrides when
it registers, so a declaration cannot promise a method that is missing or hide one that is there. What shared
weights do with a space (supernet, stand-alone network, final-training recipe) is registered by `supernets`,
which may import this package; this package never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .core import Space, SpaceError


@dataclass(frozen=True)
class SpaceEntry:
    """Everything the framework knows about a registered space without building anything."""

    name: str
    space_class: type[Space]
    description: str  # one line for `nas list` and the README's table of spaces
    example: str  # the canonical string of one arch (help texts, error messages, the registry tests)

    def create(self) -> Space:
        """A fresh, unrestricted instance of the space."""
        return self.space_class()

    @property
    def has_flops(self) -> bool:
        return self.space_class.flops_convention is not None

    @property
    def cost_term_kinds(self) -> tuple[str, ...]:
        return self.space_class.cost_term_kinds

    @property
    def has_equivalences(self) -> bool:
        return self.space_class.has_equivalences

    @property
    def flops_counters(self) -> tuple[str, ...]:
        return self.space_class.flops_counters

    @property
    def cost_options(self) -> tuple[str, ...]:
        return self.space_class.COST_OPTIONS


_ENTRIES: dict[str, SpaceEntry] = {}

S = TypeVar("S", bound=type[Space])


def _overrides(cls: type[Space], method: str) -> bool:
    return getattr(cls, method, None) is not getattr(Space, method, None)


def _check_declarations(cls: type[Space]) -> None:
    """Raise TypeError where a space's declared capabilities and its methods disagree (a programming error, found
    at import)."""
    name = cls.name
    if (cls.flops_convention is not None) != _overrides(cls, "flops"):
        raise TypeError(f"space {name!r}: flops_convention must be set exactly when the class counts flops")
    if bool(cls.cost_term_kinds) != hasattr(cls, "cost_terms"):
        raise TypeError(f"space {name!r}: cost_term_kinds must name the kinds of cost_terms exactly when the class "
                        "defines cost_terms")
    if cls.has_equivalences != _overrides(cls, "canonical"):
        raise TypeError(f"space {name!r}: has_equivalences must be declared exactly when the class overrides "
                        "canonical")
    if cls.flops_counters and cls.flops_convention is None:
        raise TypeError(f"space {name!r} names FLOPs counters but counts no flops")


def register_space(description: str, example: str) -> Callable[[S], S]:
    """Class decorator: register a `Space` subclass under its `name` with a description and an example arch.

        @register_space("NAS-Bench-201 cell: 6 edges x 5 ops", example="|nor_conv_3x3~0|+|...|")
        class NB201Space(Space): ...
    """

    def register(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Space)) or cls.name == Space.name:
            raise TypeError(f"register_space takes a Space subclass with its own name, got {cls!r}")
        if cls.name in _ENTRIES and _ENTRIES[cls.name].space_class is not cls:
            raise TypeError(f"space name {cls.name!r} is registered twice ({_ENTRIES[cls.name].space_class.__name__}"
                            f" and {cls.__name__})")
        _check_declarations(cls)
        _ENTRIES[cls.name] = SpaceEntry(cls.name, cls, description, example)
        return cls

    return register


def entry(name: str) -> SpaceEntry:
    """The registration of space `name`; SpaceError (one sentence naming the accepted ones) when there is none."""
    try:
        return _ENTRIES[name]
    except (KeyError, TypeError):
        raise SpaceError(f"unknown search space {name!r}; accepted: {', '.join(_ENTRIES)}") from None


def entries() -> tuple[SpaceEntry, ...]:
    """Every registration, in registration order."""
    return tuple(_ENTRIES.values())

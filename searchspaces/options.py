"""Typed options: one declaration per setting gives its default, its check, its `--help` text and its documentation.

Every setting a run accepts is declared once as an `Option`: the run sections in `nas.schema`, a strategy's own
options in its class's `OPTIONS`, a supernet's build options in its constructor's signature
(`Annotated[float, Between(0.0, 1.0, hi_open=True), Help("...")]`, read by `supernets.registry`). Defaults,
validation, the `nas search` flags' help and `nas config keys` all read these declarations, so a bad value anywhere
is refused with the same one sentence, `<key>=<value!r> is not valid; accepted: <what>`.

The module lives in `searchspaces`, the lowest room (pure Python, no torch), so that `supernets`, `strategies` and
`nas` can all import it without breaking the import directions of DESIGN.md.
"""

from __future__ import annotations

import math
import numbers
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("int", "float", "bool", "str", "path", "device", "ints")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_BASE_KINDS = {int: "int", float: "float", bool: "bool", str: "str"}


class OptionError(ValueError):
    """A value an option does not accept; the message is one sentence naming the key, the value and what is
    accepted (the CLI shows it as is)."""


@dataclass(frozen=True)
class Between:
    """A numeric range; None leaves an end unbounded, `lo_open`/`hi_open` exclude that end."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: Any) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def text(self) -> str:
        """The range in words, as error messages and `nas config keys` say it: `from 0 to 1`, `>= 1`, `> 0`."""
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None and not self.lo_open:
            return f"from {lo} to {hi}" + (" (exclusive)" if self.hi_open else "")
        parts = []
        if lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {hi}")
        return " and ".join(parts)


@dataclass(frozen=True, init=False)
class OneOf:
    """The values an option accepts, in the order its documentation lists them."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any):
        if not values:
            raise TypeError("OneOf needs at least one value")
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Help:
    """The one-line help text of an option (in a signature's `Annotated[...]`)."""

    text: str


Choices = tuple[Any, ...] | Callable[[], Sequence[Any]]


@dataclass(frozen=True)
class Option:
    """One typed setting: its default, kind, accepted range or choices, whether null is accepted, a one-line help.

    `choices` may be a function returning the names (a registry's, read when checked, so that later registrations
    count); with `noun` set (`"strategy"`) an unknown name reads `unknown strategy 'x' (strategy.name); accepted: ...`.
    A declaration whose default fails its own check is refused when it is made (TypeError).
    """

    default: Any
    kind: str
    help: str = ""
    range: Between | None = None
    choices: Choices | None = None
    nullable: bool = False
    noun: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"option kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.range is not None and (self.kind not in ("int", "float") or self.choices is not None):
            raise TypeError(f"a range applies to int and float options without choices, not to a {self.kind} option")
        if "\n" in self.help:
            raise TypeError(f"option help is one line, got {self.help!r}")
        if self.choices is not None and not callable(self.choices):
            object.__setattr__(self, "choices", tuple(self.choices))
            if not self.choices:
                raise TypeError("an option's choices cannot be empty")
        if not callable(self.choices):
            try:
                self.check("default", self.default)
            except OptionError as exc:
                raise TypeError(f"an option's default fails its own check: {exc}") from None

    def values(self) -> tuple[Any, ...] | None:
        """The accepted values (a registry's names read now), or None when the option takes a range or any value."""
        if self.choices is None:
            return None
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def accepted(self, null: bool = True) -> str:
        """What the option accepts, in words: the end of its error sentence and its line in `nas config keys`
        (`null=False`: without the "or null" of a nullable option, for a command-line flag, which cannot give one)."""
        values = self.values()
        if values is not None:
            words = ", ".join(map(str, values))
        elif self.kind == "bool":
            words = "true or false"
        elif self.kind in ("int", "float"):
            words = "an integer" if self.kind == "int" else "a number"
            if self.range is not None and self.range.text():
                words += " " + self.range.text()
        elif self.kind == "device":
            words = "auto, cpu, cuda, cuda:N or mps"
        elif self.kind == "path":
            words = "a path"
        elif self.kind == "ints":
            words = "a list of increasing positive integers (on the command line: 20,40)"
        else:
            words = "a non-empty string"
        return words + (" or null" if self.nullable and null else "")

    def check(self, key: str, value: Any) -> None:
        """Raise OptionError (one sentence naming `key`, `value` and what is accepted) unless `value` is valid."""
        if value is None and self.nullable:
            return
        if not self._accepts(value):
            if self.noun is not None and value is not None:
                raise OptionError(f"unknown {self.noun} {value!r} ({key}); accepted: {self.accepted()}")
            raise OptionError(f"{key}={value!r} is not valid; accepted: {self.accepted()}")

    def _accepts(self, value: Any) -> bool:
        if not _of_kind(self.kind, value):
            return False
        values = self.values()
        if values is not None:
            return value in values
        return self.range is None or value in self.range


def _of_kind(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "ints":
        return (isinstance(value, (list, tuple)) and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                         and v > 0 for v in value)
                and all(a < b for a, b in zip(value, value[1:])))
    if kind == "device":
        return isinstance(value, str) and _DEVICE.fullmatch(value) is not None
    return isinstance(value, str) and value != ""


# --- declarations ---------------------------------------------------------------------------------------------------
def integer(default: int | None, help: str, lo: int | None = None, hi: int | None = None, *,
            nullable: bool = False) -> Option:
    """An integer option, `lo <= value <= hi` where given."""
    return Option(default, "int", help, _range(lo, hi), nullable=nullable)


def number(default: float | None, help: str, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, hi_open: bool = False, nullable: bool = False) -> Option:
    """A real-number option (integers are accepted too) within `lo`..`hi`, ends excluded where `*_open`."""
    return Option(default, "float", help, _range(lo, hi, lo_open, hi_open), nullable=nullable)


def flag(default: bool, help: str) -> Option:
    """A true/false option."""
    return Option(default, "bool", help)


def choice(default: Any, help: str, values: Choices, *, nullable: bool = False) -> Option:
    """An option that takes one of `values` (strings, or integers when every value is one), or of the names a
    function `values` returns when a value is checked."""
    if callable(values):
        return Option(default, "str", help, choices=values, nullable=nullable)
    kind = "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else "str"
    return Option(default, kind, help, choices=tuple(values), nullable=nullable)


def name(default: str, help: str, noun: str, names: Callable[[], Sequence[str]]) -> Option:
    """The name of something registered (`noun`: "strategy"); `names` lists them when a value is checked."""
    return Option(default, "str", help, choices=names, noun=noun)


def text(default: str, help: str) -> Option:
    """A non-empty string (a benchmark metric's name)."""
    return Option(default, "str", help)


def path(default: str | None, help: str, *, nullable: bool = True) -> Option:
    """A path (or a registered name that stands for one), null by default."""
    return Option(default, "path", help, nullable=nullable)


def integers(default: Sequence[int], help: str) -> Option:
    """A list of increasing positive integers (epochs of a schedule)."""
    return Option(list(default), "ints", help)


def device(default: str, help: str) -> Option:
    """A torch device: auto, cpu, cuda, cuda:N or mps."""
    return Option(default, "device", help)


def _range(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> Between | None:
    return None if lo is None and hi is None else Between(lo, hi, lo_open, hi_open)


# --- signatures -----------------------------------------------------------------------------------------------------
def from_annotation(hint: Any, default: Any) -> Option:
    """The option of a keyword argument annotated `T`, `T | None` or `Annotated[T, Between(...)|OneOf(...)|Help(...)]`
    with T one of int, float, bool, str; TypeError for any other annotation (it cannot be a config value)."""
    metadata: tuple[Any, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *rest = typing.get_args(hint)
        metadata = tuple(rest)
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(hint))
        hint = members[0] if len(members) == 1 else hint
    if hint not in _BASE_KINDS:
        raise TypeError(f"annotation {hint!r} is not a config type; use int, float, bool or str, optionally "
                        "Annotated with Between, OneOf and Help")
    ranges = [m for m in metadata if isinstance(m, Between)]
    choices = [m for m in metadata if isinstance(m, OneOf)]
    helps = [m.text for m in metadata if isinstance(m, Help)]
    return Option(default, _BASE_KINDS[hint], helps[0] if helps else "", ranges[0] if ranges else None,
                  choices[0].values if choices else None, nullable)


def yaml_text(value: Any) -> str:
    """A value as it is written in YAML and on the command line (`null`, `true`, `0.05`, `cifar`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["Between", "choice", "device", "flag", "from_annotation", "Help", "integer", "integers", "KINDS", "name",
           "number", "OneOf", "Option", "OptionError", "path", "text", "yaml_text"]

"""Canonical arch keys per space: the one string under which a benchmark table stores an arch.

Tables are indexed by these strings. The key of a registered space is the space's own `key` (`Space.key`): an
`Arch`, a string with other spacing or (DARTS) NAS-Bench-301's compact form, also as a Python list, all give the
canonical string. Tables of spaces this package does not know (converted by a user) key by the string itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import searchspaces
from searchspaces.darts import GENOTYPE_OPS

from .errors import BenchmarkError

# NB301's op indices: the DARTS genotype ops without `none`.
DARTS_NB301_OPS: tuple[str, ...] = GENOTYPE_OPS

# Space names that benchmark tables carried before the space was registered under its present name: "macro" is
# NAS-Bench-Macro's; tables saved with it still load with validated keys.
FORMER_NAMES: dict[str, str] = {"macro": "nasbench-macro"}


def identity_key(arch: Any) -> str:
    """Spaces without a normaliser: the string itself (or `to_string()`), stripped."""
    text = arch.to_string() if hasattr(arch, "to_string") else arch
    if not isinstance(text, str):
        raise BenchmarkError(f"{arch!r} is not an arch string; expected a str or an object with .to_string()")
    return text.strip()


@functools.cache
def key_function(space: str) -> Callable[[Any], str]:
    """The canonical-key function of `space` (its `Space.key`, errors as BenchmarkError; the identity for spaces
    that are not registered)."""
    name = FORMER_NAMES.get(space, space)
    if name not in searchspaces.names():
        return identity_key
    instance = searchspaces.get(name)

    def key(arch: Any) -> str:
        try:
            return instance.key(arch)
        except searchspaces.SpaceError as exc:
            raise BenchmarkError(str(exc)) from None

    key.__doc__ = f"The benchmark key of an arch of space {name!r} (`{type(instance).__name__}.key`)."
    return key


def nb201_key(arch: Any) -> str:
    """The benchmark string of an NB201 arch (an `Arch` or any spelling the NB201 space parses)."""
    return key_function("nb201")(arch)


def macro_key(arch: Any) -> str:
    """The 8-character NAS-Bench-Macro code (`0` skip, `1` MBv2 e3k3, `2` MBv2 e6k5 per searchable layer)."""
    return key_function("nasbench-macro")(arch)


def darts_key(arch: Any) -> str:
    """The canonical string of a DARTS genotype (see `DartsSpace.key`)."""
    return key_function("darts")(arch)

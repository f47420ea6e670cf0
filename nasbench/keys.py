"""Canonical arch keys per space: the one string under which a benchmark table stores an arch.

Tables are indexed by these strings; a lookup that misses tries the space's normaliser, so a user may pass an
`Arch`, a string with other spacing, or (DARTS) NAS-Bench-301's compact form, also as a Python list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import searchspaces
from searchspaces.darts import DARTS_V2, GENOTYPE_OPS

from .errors import BenchmarkError

MACRO_CHOICES = "012"
MACRO_LAYERS = 8
# NB301's op indices: the DARTS genotype ops without `none`.
DARTS_NB301_OPS: tuple[str, ...] = GENOTYPE_OPS

_NB201 = searchspaces.get("nb201")
_DARTS = searchspaces.get("darts")


def nb201_key(arch: Any) -> str:
    """The benchmark string of an NB201 arch (an `Arch` or any spelling the NB201 space parses)."""
    if hasattr(arch, "to_string"):
        return arch.to_string()
    if not isinstance(arch, str):
        raise BenchmarkError(f"{arch!r} is not an NB201 arch; expected an Arch or a string like {_example('nb201')}")
    try:
        return _NB201.parse(arch).to_string()
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None


def macro_key(arch: Any) -> str:
    """The 8-character NAS-Bench-Macro code (`0` skip, `1` MBv2 e3k3, `2` MBv2 e6k5 per searchable layer)."""
    text = arch.to_string() if hasattr(arch, "to_string") else arch
    if not isinstance(text, str) or len(text.strip()) != MACRO_LAYERS or set(text.strip()) - set(MACRO_CHOICES):
        raise BenchmarkError(
            f"{arch!r} is not a NAS-Bench-Macro code; expected {MACRO_LAYERS} characters from {MACRO_CHOICES}, "
            f"e.g. {_example('nasbench-macro')}"
        )
    return text.strip()


def darts_key(arch: Any) -> str:
    """The canonical string of a DARTS genotype: `to_string()` of the `darts` space (`Genotype(normal=[...], ...)`,
    each node's two pairs sorted by input).

    Accepts a DARTS `Arch`, a genotype string as the DARTS code writes it, or NAS-Bench-301's compact form
    `[[(input, op) x 8 normal], [(input, op) x 8 reduce]]` as a string or nested lists (any spacing, pairs in
    either order), so the NB301 subset's own keys find their rows.
    """
    if isinstance(arch, searchspaces.Arch) and arch.space.name == _DARTS.name:
        return arch.to_string()
    value = arch.to_string() if hasattr(arch, "to_string") else arch
    try:
        if isinstance(value, str) and "Genotype" in value:
            return _DARTS.parse(value).to_string()
        if isinstance(value, (str, list, tuple)):
            return _DARTS.from_nb301(value).to_string()
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None
    raise BenchmarkError(
        f"{arch!r} is not a DARTS genotype; expected an Arch of space darts, a string like {_example('darts')} or "
        f"the NB301 form [[(input, op) x 8 normal], [(input, op) x 8 reduce]]"
    )


def identity_key(arch: Any) -> str:
    """Spaces without a normaliser: the string itself (or `to_string()`), stripped."""
    text = arch.to_string() if hasattr(arch, "to_string") else arch
    if not isinstance(text, str):
        raise BenchmarkError(f"{arch!r} is not an arch string; expected a str or an object with .to_string()")
    return text.strip()


def _example(space: str) -> str:
    return {
        "nb201": "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
        "nasbench-macro": "02012100",
        "darts": _DARTS.parse(DARTS_V2).to_string(),
    }[space]


# "macro" is the space name NAS-Bench-Macro tables carried before the space was registered as "nasbench-macro";
# tables saved with it still load with validated keys.
KEYS: dict[str, Callable[[Any], str]] = {"nb201": nb201_key, "nasbench-macro": macro_key, "macro": macro_key,
                                         "darts": darts_key}


def key_function(space: str) -> Callable[[Any], str]:
    """The canonical-key function of `space` (the identity for spaces we do not know)."""
    return KEYS.get(space, identity_key)

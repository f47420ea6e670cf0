"""Canonical arch keys per space: the one string under which a benchmark table stores an arch.

Tables are indexed by these strings; a lookup that misses tries the space's normaliser, so a user may pass an
`Arch`, a string with other spacing, or (DARTS) the genotype as a Python list.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import searchspaces

from .errors import BenchmarkError

MACRO_CHOICES = "012"
MACRO_LAYERS = 8
DARTS_NB301_OPS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
DARTS_EDGES_PER_CELL = 8  # 4 intermediate nodes x 2 inputs

_NB201 = searchspaces.get("nb201")


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
            f"e.g. {_example('macro')}"
        )
    return text.strip()


def darts_key(arch: Any) -> str:
    """The normal form of a NB301 DARTS genotype: `str()` of `[[(input, op) x 8 normal], [(input, op) x 8 reduce]]`.

    Ints throughout, tuples for the pairs, lists for the cells: the exact spelling of the NB301 subset's keys, so
    re-serialising is the identity on them and any other spelling (spacing, lists for pairs) maps to it.
    """
    value = arch.to_string() if hasattr(arch, "to_string") else arch
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
    cells = _darts_cells(value)
    if cells is None:
        raise BenchmarkError(
            f"{arch!r} is not a NB301 DARTS genotype; expected [[(input, op) x 8 normal], [(input, op) x 8 reduce]] "
            f"with op in 0..{len(DARTS_NB301_OPS) - 1} and input < node, e.g. {_example('darts')}"
        )
    return str(cells)


def _darts_cells(value: Any) -> list[list[tuple[int, int]]] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    cells = []
    for cell in value:
        if not isinstance(cell, (list, tuple)) or len(cell) != DARTS_EDGES_PER_CELL:
            return None
        pairs = []
        for k, pair in enumerate(cell):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return None
            source, op = pair
            if type(source) is not int or type(op) is not int:
                return None
            node = 2 + k // 2
            if not (0 <= source < node and 0 <= op < len(DARTS_NB301_OPS)):
                return None
            pairs.append((source, op))
        cells.append(pairs)
    return cells


def identity_key(arch: Any) -> str:
    """Spaces without a normaliser: the string itself (or `to_string()`), stripped."""
    text = arch.to_string() if hasattr(arch, "to_string") else arch
    if not isinstance(text, str):
        raise BenchmarkError(f"{arch!r} is not an arch string; expected a str or an object with .to_string()")
    return text.strip()


def _example(space: str) -> str:
    return {
        "nb201": "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
        "macro": "02012100",
        "darts": str([[(0, 3), (1, 3)] * 4, [(0, 1), (1, 1)] * 4]),
    }[space]


KEYS: dict[str, Callable[[Any], str]] = {"nb201": nb201_key, "macro": macro_key, "darts": darts_key}


def key_function(space: str) -> Callable[[Any], str]:
    """The canonical-key function of `space` (the identity for spaces we do not know)."""
    return KEYS.get(space, identity_key)

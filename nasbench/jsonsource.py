"""Reading JSON benchmark sources: the file, and one numeric field of an entry, with one-sentence errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import BenchmarkError


def read_json(file: Path) -> Any:
    """The parsed content of `file`; invalid JSON raises BenchmarkError naming the file."""
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{file} is not valid JSON ({exc})") from None


def number(value: Any, file: Path, key: str, field: str) -> float:
    """`value` as a float (None -> NaN, meaning missing); anything else raises BenchmarkError."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BenchmarkError(f"{file} entry {key!r} field {field!r} is {value!r}; expected a number")
    return float(value)

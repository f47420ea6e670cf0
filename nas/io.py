"""Atomic file writes: a reader never sees a half-written file, an interrupted write leaves the old one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "w") -> Path:
    """Write `path` through `write(fh)` on a temp file in the same directory, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically replace `path` with `text`."""
    return atomic_write(path, lambda fh: fh.write(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically replace `path` with `obj` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

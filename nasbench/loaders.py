"""The benchmark registry: names, `load`, and a per-process cache of loaded tables.

`load("nb201")` finds the source file (see `locate.py`), converts it once per process and caches the table;
`load(directory)` reads a table in the compact format. Tables are immutable, so sharing a cached one is safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import macro, nb201, nb301
from .errors import BenchmarkError
from .locate import locate
from .table import META_FILE, TABLE_FILE, Benchmark, is_table_dir, read_table

# name -> (source file relative to the shared data directory, converter of that file)
_SOURCES: dict[str, tuple[str, Callable[[Path], Benchmark]]] = {
    nb201.NAME: (nb201.SOURCE, nb201.from_file),
    macro.NAME: (macro.SOURCE, macro.from_file),
    nb301.NAME: (nb301.SOURCE, nb301.from_file),
}
DESCRIPTIONS: dict[str, str] = {
    nb201.NAME: nb201.DESCRIPTION,
    macro.NAME: macro.DESCRIPTION,
    nb301.NAME: nb301.DESCRIPTION,
}

_CACHE: dict[tuple, Benchmark] = {}


def names() -> tuple[str, ...]:
    """Registered benchmark names."""
    return tuple(_SOURCES)


def load(name_or_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Benchmark:
    """A benchmark by registered name (a str), or a directory in the compact format (a str or a Path).

    For a name, `path` (a source file, a directory holding it, or a compact table directory) overrides where
    the data is looked for; without it `$SUPERNAS_SHARED_DATA`, then `../shared/data` beside the project, are
    searched. Loaded tables are cached per (name, file, modification time) within the process.
    """
    name = os.fspath(name_or_dir) if isinstance(name_or_dir, (str, os.PathLike)) else None
    # A str is a registered name first (case-insensitive); a Path always means a directory.
    registered = {n.lower(): n for n in _SOURCES}.get(name.lower()) if isinstance(name_or_dir, str) else None
    if registered is not None:
        if path is not None and is_table_dir(path):
            return _cached(("dir", *_stamp(Path(path) / TABLE_FILE, Path(path) / META_FILE)),
                           lambda: read_table(path))
        relative, convert = _SOURCES[registered]
        file = locate(relative, path)
        return _cached((registered, *_stamp(file)), lambda: convert(file))
    if name is not None and Path(name).is_dir():
        directory = Path(name)
        return _cached(("dir", *_stamp(directory / TABLE_FILE, directory / META_FILE)), lambda: read_table(directory))
    raise BenchmarkError(
        f"unknown benchmark {name_or_dir!r}; accepted: {', '.join(_SOURCES)}, or a directory holding {TABLE_FILE} "
        f"and {META_FILE}"
    )


def clear_cache() -> None:
    """Forget every loaded table (the next `load` reads the files again)."""
    _CACHE.clear()


def _stamp(*files: Path) -> tuple:
    """Resolved paths with size and modification time, so a rewritten file is read again."""
    out: list = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:
            out.append((str(file), None))
            continue
        out.append((str(file.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def _cached(key: tuple, build: Callable[[], Benchmark]) -> Benchmark:
    bench = _CACHE.get(key)
    if bench is None:
        bench = build()
        _CACHE[key] = bench
    return bench

"""The benchmark registry: names, `load`, and a per-process cache of loaded tables.

`load("nb201")` finds the source file (see `locate.py`), converts it once per process and caches the table;
`load("nb201-digits")` reads a table shipped inside this package (`nasbench/tables/`), so it works offline on
every install; `load(directory)` reads a table in the compact format. Tables are immutable, so sharing a
cached one is safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import macro, nb201, nb301
from .errors import BenchmarkError
from .locate import locate
from .table import META_FILE, TABLE_FILE, Benchmark, is_table_dir, read_table, table_file

# name -> (source file relative to the shared data directory, converter of that file)
_SOURCES: dict[str, tuple[str, Callable[[Path], Benchmark]]] = {
    nb201.NAME: (nb201.SOURCE, nb201.from_file),
    macro.NAME: (macro.SOURCE, macro.from_file),
    nb301.NAME: (nb301.SOURCE, nb301.from_file),
}
# Tables in the compact format that ship with the package: name -> (directory, description).
PACKAGED_DIR = Path(__file__).resolve().parent / "tables"
_PACKAGED: dict[str, str] = {
    "nb201-digits": "NAS-Bench-201 cells trained stand-alone on the embedded digits (one network per isomorphism "
                    "class, two seeds for a subset: the CPU testbed's ground truth and noise ceiling)",
}
DESCRIPTIONS: dict[str, str] = {
    nb201.NAME: nb201.DESCRIPTION,
    macro.NAME: macro.DESCRIPTION,
    nb301.NAME: nb301.DESCRIPTION,
    **_PACKAGED,
}

_CACHE: dict[tuple, Benchmark] = {}


def names() -> tuple[str, ...]:
    """Registered benchmark names: converted shared-data sources, then tables shipped with the package."""
    return (*_SOURCES, *_PACKAGED)


def packaged_dir(name: str) -> Path:
    """The directory of a table shipped with the package (`nasbench/tables/<name>`)."""
    return PACKAGED_DIR / name


def load(name_or_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Benchmark:
    """A benchmark by registered name (a str), or a directory in the compact format (a str or a Path).

    For a name, `path` (a source file, a directory holding it, or a compact table directory) overrides where
    the data is looked for; without it `$SUPERNAS_SHARED_DATA`, then `../shared/data` beside the project, are
    searched. Loaded tables are cached per (name, file, modification time) within the process.
    """
    name = os.fspath(name_or_dir) if isinstance(name_or_dir, (str, os.PathLike)) else None
    # A str is a registered name first (case-insensitive); a Path always means a directory.
    registered = {n.lower(): n for n in names()}.get(name.lower()) if isinstance(name_or_dir, str) else None
    if registered in _PACKAGED and path is None:
        directory = packaged_dir(registered)
        if not is_table_dir(directory):
            raise BenchmarkError(f"the packaged benchmark {registered} is missing from {directory}; reinstall supernas")
        return _cached(("dir", *_stamp(table_file(directory), directory / META_FILE)), lambda: read_table(directory))
    if registered in _PACKAGED:  # an explicit path: a copy of the table elsewhere
        if not is_table_dir(path):
            raise BenchmarkError(f"{path} holds no benchmark table ({TABLE_FILE} and {META_FILE}) for {registered}")
        return _cached(("dir", *_stamp(table_file(path), Path(path) / META_FILE)), lambda: read_table(path))
    if registered is not None:
        if path is not None and is_table_dir(path):
            return _cached(("dir", *_stamp(table_file(path), Path(path) / META_FILE)),
                           lambda: read_table(path))
        relative, convert = _SOURCES[registered]
        file = locate(relative, path)
        return _cached((registered, *_stamp(file)), lambda: convert(file))
    if name is not None and Path(name).is_dir():
        directory = Path(name)
        return _cached(("dir", *_stamp(table_file(directory) or directory / TABLE_FILE, directory / META_FILE)),
                       lambda: read_table(directory))
    raise BenchmarkError(
        f"unknown benchmark {name_or_dir!r}; accepted: {', '.join(names())}, or a directory holding {TABLE_FILE} "
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

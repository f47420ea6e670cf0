"""Finding benchmark source files: an explicit path, else `$SUPERNAS_SHARED_DATA`, else `../shared/data`.

The shared data directory sits beside the project root in every checkout and in CI; users point at their own
copies (or official releases) with `path=` or the environment variable, so nothing is ever copied into the repo.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BenchmarkError

ENV_VAR = "SUPERNAS_SHARED_DATA"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_data_dirs() -> list[Path]:
    """The directories searched when no path is given, in order: `$SUPERNAS_SHARED_DATA`, `<root>/../shared/data`."""
    env = os.environ.get(ENV_VAR)
    dirs = [Path(env).expanduser()] if env else []
    dirs.append(PROJECT_ROOT.parent / "shared" / "data")
    return dirs


def locate(relative: str, path: str | os.PathLike | None = None) -> Path:
    """The source file `relative` (e.g. `nb201/nb201_acc.csv`) of a benchmark.

    `path` wins when given: a file is used as is; a directory is searched for `relative`, then for its file name
    alone (a user's own folder usually holds the file without our sub-folder). Without `path` the default data
    directories are searched. Raises BenchmarkError saying where it looked and how to point at the data.
    """
    if path is not None:
        given = Path(path).expanduser()
        if given.is_file():
            return given
        candidates = [given / relative, given / Path(relative).name] if given.is_dir() else []
    else:
        candidates = [d / relative for d in default_data_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates) or str(path)
    raise BenchmarkError(
        f"benchmark file {relative} not found (looked in: {looked}); pass path= (a file or a directory) or set "
        f"{ENV_VAR} to the shared data directory"
    )

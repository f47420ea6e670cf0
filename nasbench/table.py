"""The Benchmark table and its compact on-disk format.

A benchmark is a table of ground truth: one row per arch (its canonical string, see `keys.py`), one float column
per `(dataset, metric)`, NaN where the source has no value. Every loader converts its source into this one shape,
so `nas rank` and the notebooks never care where the numbers came from.

On disk a table is a directory with two files, written together and atomically (temp directory + rename):

- `table.csv` (or `table.csv.gz`, the same text gzip-compressed, for tables shipped inside the package): first
  column `arch`, then one column per `dataset:metric`; numbers as plain floats (Python's shortest round-trip
  repr), an empty cell where the value is missing.
- `meta.json`: `format` (1), `name`, `space`, `description`, `source`, `n_archs`, `datasets`, `metrics` (per
  dataset), `units` (per metric: params = parameter count, flops = multiply-adds per image, accuracies in %),
  plus whatever else the writer records (epochs, seeds, notes).
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from .errors import BenchmarkError
from .keys import key_function

FORMAT = 1
TABLE_FILE = "table.csv"
COMPRESSED_TABLE_FILE = "table.csv.gz"
META_FILE = "meta.json"
ARCH_COLUMN = "arch"

DEFAULT_UNITS: dict[str, str] = {
    "test_acc": "% top-1",
    "valid_acc": "% top-1",
    "test_acc_v1": "% top-1",
    "valid_acc_naslib_1seed": "% top-1",
    "test_acc_std": "% top-1, standard deviation over seeds",
    "test_loss": "mean cross-entropy (nats)",
    "valid_loss": "mean cross-entropy (nats)",
    "params": "parameter count",
    "flops": "multiply-adds per image",
}

# Dataset and metric names become CSV headers `dataset:metric`; keep them to characters that need no quoting.
_NAME = re.compile(r"^[A-Za-z0-9_.+\-]+$")
_DERIVED_META = ("format", "name", "space", "n_archs", "datasets", "metrics")


class Benchmark:
    """Ground truth for a list of archs: `query`, vectorised `query_many`, `best`, and `save` to the compact format.

    `columns` maps `(dataset, metric)` to an array with one value per arch (NaN = missing). Arch strings are put
    into the canonical form of `space` (NB201 benchmark string, macro code, DARTS genotype normal form); unknown
    spaces keep strings as given. Lookups take the canonical string or anything with `.to_string()`.
    Tables are immutable: columns are read-only and `meta` / `archs` return copies.
    """

    def __init__(self, name: str, space: str, archs: Sequence[Any], columns: Mapping[tuple[str, str], Any],
                 meta: Mapping[str, Any] | None = None, *, canonical: bool = False):
        """Build a table; `canonical=True` skips re-canonicalising arch strings a loader has already checked."""
        for what, value in (("name", name), ("space", space)):
            if not isinstance(value, str) or not value.strip():
                raise BenchmarkError(f"benchmark {what} {value!r} is invalid; expected a non-empty string")
        self.name = name
        self.space = space
        self._key = key_function(space)
        self._archs = list(archs) if canonical else [self._canonical_row(a, i) for i, a in enumerate(archs)]
        if not self._archs:
            raise BenchmarkError(f"benchmark {name} has no archs; expected at least one row")
        self._index = {a: i for i, a in enumerate(self._archs)}
        if len(self._index) != len(self._archs):
            seen: set[str] = set()
            dup = next(a for a in self._archs if a in seen or seen.add(a))
            raise BenchmarkError(f"arch {dup!r} appears more than once in benchmark {name}; each arch needs one row")
        self._columns, self._metrics = self._check_columns(columns)
        self._datasets = tuple(self._metrics)
        self._dataset_by_lower = {d.lower(): d for d in self._datasets}
        if len(self._dataset_by_lower) != len(self._datasets):
            raise BenchmarkError(f"dataset names {self._datasets} of benchmark {name} differ only in case; rename one")
        self._meta = self._build_meta(meta or {})

    # --- construction helpers ---------------------------------------------------------------------
    def _canonical_row(self, arch: Any, row: int) -> str:
        try:
            key = self._key(arch)
        except BenchmarkError as exc:
            raise BenchmarkError(f"row {row} of benchmark {self.name}: {exc}") from None
        if not key or "\n" in key or "\r" in key:
            raise BenchmarkError(f"row {row} of benchmark {self.name} has arch {arch!r}; expected a one-line string")
        return key

    def _check_columns(self, columns: Mapping[tuple[str, str], Any]):
        if not columns:
            raise BenchmarkError(f"benchmark {self.name} has no columns; expected at least one (dataset, metric) array")
        out: dict[tuple[str, str], np.ndarray] = {}
        metrics: dict[str, list[str]] = {}
        for key, values in columns.items():
            named = isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) and _NAME.match(k) for k in key)
            if not named:
                raise BenchmarkError(
                    f"column key {key!r} of benchmark {self.name} is invalid; expected a (dataset, metric) pair of "
                    f"names made of letters, digits and _ . + -"
                )
            try:
                array = np.array(values, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise BenchmarkError(f"column {key[0]}:{key[1]} of benchmark {self.name} is not numeric") from None
            if array.shape[0] != len(self._archs):
                raise BenchmarkError(
                    f"column {key[0]}:{key[1]} of benchmark {self.name} has {array.shape[0]} values; expected one "
                    f"per arch ({len(self._archs)})"
                )
            array.setflags(write=False)
            out[key] = array
            metrics.setdefault(key[0], []).append(key[1])
        return out, {d: tuple(m) for d, m in metrics.items()}

    def _build_meta(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(extra, Mapping):
            raise BenchmarkError(f"meta of benchmark {self.name} is a {type(extra).__name__}; expected a dict")
        units = {m: DEFAULT_UNITS[m] for ms in self._metrics.values() for m in ms if m in DEFAULT_UNITS}
        given_units = extra.get("units") or {}
        if not isinstance(given_units, Mapping):
            raise BenchmarkError(
                f"meta 'units' of benchmark {self.name} is {given_units!r}; expected a dict metric -> unit"
            )
        units.update(given_units)
        meta: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "space": self.space,
            "description": extra.get("description", ""),
            "source": extra.get("source", ""),
            "n_archs": len(self._archs),
            "datasets": list(self._datasets),
            "metrics": {d: list(m) for d, m in self._metrics.items()},
            "units": units,
        }
        for key, value in extra.items():
            if key not in meta:
                meta[key] = copy.deepcopy(value)
        return meta

    # --- the public table API ----------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        """Everything `meta.json` holds (a copy)."""
        return copy.deepcopy(self._meta)

    @property
    def datasets(self) -> tuple[str, ...]:
        """Dataset names, in table order."""
        return self._datasets

    def metrics(self, dataset: str) -> tuple[str, ...]:
        """Metric names available for `dataset`."""
        return self._metrics[self._dataset(dataset)]

    @property
    def archs(self) -> list[str]:
        """Canonical arch strings in table order (NB201: benchmark index order); a copy."""
        return list(self._archs)

    def __len__(self) -> int:
        return len(self._archs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._archs)

    def __contains__(self, arch: object) -> bool:
        try:
            self.index_of(arch)
        except BenchmarkError:
            return False
        return True

    def __repr__(self) -> str:
        return f"Benchmark({self.name!r}, space={self.space!r}, archs={len(self)}, datasets={list(self._datasets)})"

    def index_of(self, arch: Any) -> int:
        """Row of `arch` (canonical string, any spelling the space normalises, or an object with `.to_string()`)."""
        if isinstance(arch, str):
            row = self._index.get(arch)
            if row is not None:
                return row
        try:
            key = self._key(arch)
        except BenchmarkError as exc:
            raise BenchmarkError(f"arch {arch!r} is not in benchmark {self.name}: {exc}") from None
        row = self._index.get(key)
        if row is None:
            raise BenchmarkError(
                f"arch {key!r} is not in benchmark {self.name} ({len(self)} archs of space {self.space}); expected a "
                f"canonical arch string such as {self._archs[0]!r}"
            )
        return row

    def arch_at(self, index: int) -> str:
        """Canonical string of row `index`."""
        valid = isinstance(index, (int, np.integer)) and not isinstance(index, bool) and 0 <= index < len(self)
        if not valid:
            raise BenchmarkError(
                f"index {index!r} is out of range for benchmark {self.name}; accepted: 0..{len(self) - 1}"
            )
        return self._archs[int(index)]

    def values(self, dataset: str, metric: str) -> np.ndarray:
        """The whole `(dataset, metric)` column in table order (read-only, NaN = missing)."""
        return self._column(dataset, metric)

    def query(self, arch: Any, dataset: str, metric: str) -> float:
        """The value of `metric` on `dataset` for `arch` (NaN where the table has none)."""
        column = self._column(dataset, metric)
        return float(column[self.index_of(arch)])

    def query_many(self, archs: Iterable[Any], dataset: str, metric: str, missing: str = "raise",
                   as_frame: bool = False) -> np.ndarray | pd.Series:
        """`query` for many archs at once: one dict lookup per arch, then one fancy-index into the column.

        `missing="raise"` (default) raises on an arch that is not in the table; `missing="nan"` gives NaN for it.
        `as_frame=True` returns a pandas Series named `dataset:metric`, indexed by the canonical arch strings (NaN
        index entries stay as given where `missing="nan"` found no row), for joins in notebooks.
        """
        if missing not in ("raise", "nan"):
            raise BenchmarkError(f"missing={missing!r} is not accepted; accepted: 'raise', 'nan'")
        column = self._column(dataset, metric)
        archs = archs if isinstance(archs, (list, tuple)) else list(archs)
        if as_frame:
            import pandas as pd

            values = self.query_many(archs, dataset, metric, missing)
            names = [self._key_or_given(a) for a in archs]
            return pd.Series(values, index=pd.Index(names, name=ARCH_COLUMN), name=f"{self._dataset(dataset)}:{metric}")
        index = self._index
        try:
            rows = np.fromiter((index[a] for a in archs), dtype=np.intp, count=len(archs))
        except (KeyError, TypeError):  # non-canonical spellings or Arch objects: normalise one by one
            rows = np.fromiter((self._row_or_missing(a, missing) for a in archs), dtype=np.intp, count=len(archs))
        out = column[np.maximum(rows, 0)]
        out[rows < 0] = np.nan
        return out

    def to_pandas(self) -> pd.DataFrame:
        """The whole table as a pandas DataFrame: one row per arch (index `arch`, canonical strings, table order),
        columns a MultiIndex `(dataset, metric)`, NaN where missing; `bench.to_pandas()["cifar10"]` is one dataset.
        A copy: editing it does not change the benchmark."""
        import pandas as pd

        keys = list(self._columns)
        frame = pd.DataFrame({key: np.array(self._columns[key]) for key in keys},
                             index=pd.Index(self._archs, name=ARCH_COLUMN))
        frame.columns = pd.MultiIndex.from_tuples(keys, names=["dataset", "metric"])
        return frame

    def best(self, dataset: str, metric: str = "test_acc") -> tuple[str, float]:
        """The arch with the largest `metric` on `dataset` and that value (ties: first in table order)."""
        column = self._column(dataset, metric)
        if np.isnan(column).all():
            raise BenchmarkError(f"benchmark {self.name} has no values for {dataset}:{metric}")
        row = int(np.nanargmax(column))
        return self._archs[row], float(column[row])

    def save(self, directory: str | os.PathLike, compress: bool = False) -> Path:
        """Write the compact format (`table.csv`, `meta.json`) to `directory` atomically; returns the directory.

        `compress` writes `table.csv.gz` instead (byte-for-byte reproducible: no timestamp in the gzip header), the
        form of tables shipped inside the package; the other variant, if present, is removed."""
        text = self._csv_text().encode("utf-8")
        table = (COMPRESSED_TABLE_FILE, gzip.compress(text, compresslevel=9, mtime=0)) if compress else \
            (TABLE_FILE, text)
        stale = TABLE_FILE if compress else COMPRESSED_TABLE_FILE
        return _write_directory(Path(directory), [table, (META_FILE, _meta_text(self._meta, self.name).encode())],
                                stale=stale)

    # --- internals -------------------------------------------------------------------------------
    def _dataset(self, dataset: str) -> str:
        found = self._dataset_by_lower.get(dataset.lower()) if isinstance(dataset, str) else None
        if found is None:
            raise BenchmarkError(
                f"unknown dataset {dataset!r} for benchmark {self.name}; accepted: {', '.join(self._datasets)}"
            )
        return found

    def _column(self, dataset: str, metric: str) -> np.ndarray:
        dataset = self._dataset(dataset)
        column = self._columns.get((dataset, metric))
        if column is None:
            raise BenchmarkError(
                f"unknown metric {metric!r} for {self.name} on {dataset}; accepted: {', '.join(self._metrics[dataset])}"
            )
        return column

    def _key_or_given(self, arch: Any) -> str:
        """The canonical string of `arch`, or its own spelling where it has none (a missing arch)."""
        try:
            return self._archs[self.index_of(arch)]
        except BenchmarkError:
            return arch.to_string() if hasattr(arch, "to_string") else str(arch)

    def _row_or_missing(self, arch: Any, missing: str) -> int:
        try:
            return self.index_of(arch)
        except BenchmarkError:
            if missing == "nan":
                return -1
            raise

    def _csv_text(self) -> str:
        keys = list(self._columns)
        cells = [[repr(v) if not math.isnan(v) else "" for v in self._columns[k].tolist()] for k in keys]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([ARCH_COLUMN] + [f"{d}:{m}" for d, m in keys])
        writer.writerows(zip(self._archs, *cells))
        return buffer.getvalue()


def write_table(directory: str | os.PathLike, name: str, space: str, archs: Sequence[Any],
                columns: Mapping[tuple[str, str], Any], meta: Mapping[str, Any] | None = None) -> Path:
    """Write a benchmark table in the compact format (atomically) and return its directory.

    This is how new ground truth enters the framework, e.g. `nas bench build` writing a digits benchmark with
    `space="nb201"`, `columns={("digits", "test_acc"): [...], ...}` and `meta={"epochs": 50, "seeds": [0, 1]}`.
    """
    return Benchmark(name, space, archs, columns, meta).save(directory)


def read_table(directory: str | os.PathLike) -> Benchmark:
    """Load a table written by `write_table` / `Benchmark.save`; any malformation raises BenchmarkError."""
    directory = Path(directory)
    meta = _read_meta(directory / META_FILE)
    table_path = table_file(directory)
    if table_path is None:
        raise BenchmarkError(f"{directory / TABLE_FILE} is missing; a benchmark directory holds {TABLE_FILE} (or "
                             f"{COMPRESSED_TABLE_FILE}) and {META_FILE}")
    try:
        opener = gzip.open if table_path.name == COMPRESSED_TABLE_FILE else open
        with opener(table_path, "rt", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{table_path} cannot be read ({exc})") from None
    if not rows or not rows[0] or rows[0][0] != ARCH_COLUMN:
        raise BenchmarkError(f"{table_path} must start with a header whose first column is {ARCH_COLUMN!r}")
    header = rows[0]
    keys = []
    for cell in header[1:]:
        dataset, sep, metric = cell.partition(":")
        if not sep or not dataset or not metric:
            raise BenchmarkError(f"{table_path} has column {cell!r}; expected columns named dataset:metric")
        keys.append((dataset, metric))
    declared = {(d, m) for d, ms in meta["metrics"].items() for m in ms}
    if set(keys) != declared or len(keys) != len(declared):
        raise BenchmarkError(
            f"{table_path} columns {sorted(f'{d}:{m}' for d, m in keys)} do not match the metrics declared in "
            f"{META_FILE} {sorted(f'{d}:{m}' for d, m in declared)}"
        )
    body = rows[1:]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise BenchmarkError(f"{table_path} line {line} has {len(row)} cells; expected {len(header)}")
    if len(body) != meta.get("n_archs", len(body)):
        raise BenchmarkError(f"{table_path} has {len(body)} rows but {META_FILE} says n_archs={meta['n_archs']}")
    archs = [row[0] for row in body]
    columns = {}
    for j, key in enumerate(keys, start=1):
        try:
            columns[key] = np.array([float(row[j]) if row[j] else np.nan for row in body], dtype=np.float64)
        except ValueError:
            line, bad = next((n, r[j]) for n, r in enumerate(body, start=2) if r[j] and not _is_float(r[j]))
            raise BenchmarkError(f"{table_path} line {line} column {header[j]} holds {bad!r}; expected a number or an "
                                 f"empty cell") from None
    try:
        return Benchmark(meta["name"], meta["space"], archs, columns, meta)
    except BenchmarkError as exc:
        raise BenchmarkError(f"{table_path}: {exc}") from None


def is_table_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory in the compact format (holds `meta.json` and `table.csv` or `table.csv.gz`)."""
    path = Path(path)
    return (path / META_FILE).is_file() and table_file(path) is not None


def table_file(directory: str | os.PathLike) -> Path | None:
    """The table file of a benchmark directory: `table.csv`, else `table.csv.gz`, else None."""
    for name in (TABLE_FILE, COMPRESSED_TABLE_FILE):
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    return None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BenchmarkError(f"{path} is missing; a benchmark directory holds {TABLE_FILE} (or "
                             f"{COMPRESSED_TABLE_FILE}) and {META_FILE}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise BenchmarkError(f"{path} holds a {type(meta).__name__}; expected a JSON object")
    if meta.get("format") != FORMAT:
        raise BenchmarkError(f"{path} has format {meta.get('format')!r}; accepted: {FORMAT}")
    for key, kind in (("name", str), ("space", str), ("metrics", dict)):
        if not isinstance(meta.get(key), kind):
            raise BenchmarkError(f"{path} lacks {key!r} or it is not a {kind.__name__}; {META_FILE} needs it")
    if not all(isinstance(ms, list) and all(isinstance(m, str) for m in ms) for ms in meta["metrics"].values()):
        raise BenchmarkError(f"{path} has 'metrics' {meta['metrics']!r}; expected a list of metric names per dataset")
    return meta


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _meta_text(meta: Mapping[str, Any], name: str) -> str:
    try:
        return json.dumps(meta, indent=2, default=_json_default) + "\n"
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"meta of benchmark {name} cannot be written as JSON ({exc})") from None


def _write_directory(directory: Path, files: Sequence[tuple[str, bytes]], stale: str | None = None) -> Path:
    """Write the table and `meta.json` (`files`: name -> bytes) so that a failure changes nothing and leaves no
    temp files; `stale` names a file removed once the new ones are in place (the other table variant).

    A new directory is assembled under a temp name beside it and renamed into place (fully atomic). An existing
    directory keeps everything else it holds (e.g. the per-arch results of `nas bench build`): both files are
    staged as temp files inside it, then renamed over the old ones, table first, back to back.
    """
    if directory.exists() and not directory.is_dir():
        raise BenchmarkError(f"{directory} exists and is not a directory; save the benchmark table into a directory")
    if directory.is_dir():
        staged: list[tuple[Path, Path]] = []
        try:
            for file_name, data in files:
                fd, tmp = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".tmp", dir=directory)
                staged.append((Path(tmp), directory / file_name))
                _write_synced(os.fdopen(fd, "wb"), data)
            for tmp, final in staged:
                os.replace(tmp, final)
            if stale is not None:
                (directory / stale).unlink(missing_ok=True)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        for file_name, data in files:
            _write_synced(open(tmp_dir / file_name, "wb"), data)
        os.replace(tmp_dir, directory)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return directory


def _write_synced(handle: Any, data: bytes) -> None:
    with handle as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())

"""A 500-arch subset of NAS-Bench-301 (DARTS space, CIFAR-10) with zero-cost proxy scores.

Source: `nb301/nb301_500_subset.json`, `{"nasbench301": {"cifar10": {GENOTYPE: {...}}}}` with GENOTYPE in NB301's
compact form `[[(input, op) x 8 normal], [(input, op) x 8 reduce]]`. Rows are keyed by the `darts` space's
canonical string (`Genotype(normal=[...], ...)`, see `keys.darts_key`), so `bench.query(arch, ...)` takes a DARTS
`Arch`; the source keys stay available as `meta["nb301_keys"]` (canonical string -> source key; they list a
node's two pairs in either order, the canonical form sorts them by input), and the compact form is also still
accepted by lookups. `val_accuracy` becomes `valid_acc`; `params` and `flops` (millions in the source) become
counts; every other numeric field is a zero-cost proxy score kept under its own name.
"""

from __future__ import annotations

import math
from pathlib import Path

from .errors import BenchmarkError
from .jsonsource import number, read_json
from .keys import DARTS_NB301_OPS, darts_key
from .table import Benchmark

NAME = "nb301-subset"
SOURCE = "nb301/nb301_500_subset.json"
DESCRIPTION = "NAS-Bench-301 subset: 500 DARTS-space archs on CIFAR-10 with zero-cost proxy scores"
_RENAMED = {"val_accuracy": "valid_acc", "params": "params", "flops": "flops"}
_MILLIONS = ("params", "flops")


def from_file(file: Path) -> Benchmark:
    """Read the source JSON into a table (rows in source order)."""
    data = read_json(file)
    try:
        entries = data["nasbench301"]["cifar10"]
    except (KeyError, TypeError):
        raise BenchmarkError(f"{file} lacks nasbench301 -> cifar10; expected the NB301 subset format") from None
    if not isinstance(entries, dict) or not entries:
        raise BenchmarkError(f"{file} holds no NB301 entries under nasbench301 -> cifar10")
    proxies: list[str] = []
    for entry in entries.values():
        for field in entry if isinstance(entry, dict) else ():
            if field not in _RENAMED and field not in proxies:
                proxies.append(field)
    metrics = list(_RENAMED.values()) + proxies
    values: dict[str, list[float]] = {m: [] for m in metrics}
    archs = []
    source_keys: dict[str, str] = {}
    for genotype, entry in entries.items():
        try:
            archs.append(darts_key(genotype))
        except BenchmarkError as exc:
            raise BenchmarkError(f"{file}: {exc}") from None
        if archs[-1] in source_keys:
            raise BenchmarkError(f"{file} holds the genotype {archs[-1]} twice (keys {source_keys[archs[-1]]!r} and "
                                 f"{genotype!r}); expected one entry per arch")
        source_keys[archs[-1]] = genotype
        if not isinstance(entry, dict):
            raise BenchmarkError(f"{file} entry {genotype!r} is a {type(entry).__name__}; expected an object")
        for field in list(_RENAMED) + proxies:
            value = number(entry.get(field), file, genotype, field)
            metric = _RENAMED.get(field, field)
            values[metric].append(round(value * 1e6) if metric in _MILLIONS and not math.isnan(value) else value)
    columns = {("cifar10", metric): column for metric, column in values.items()}
    meta = {
        "description": DESCRIPTION,
        "source": f"{SOURCE} (automl/NASLib zc_nasbench301.json subset, Apache-2.0)",
        "genotype": "rows: the darts space's Genotype string (pairs of a node sorted by input); source keys: "
                    "[[(input, op) x 8 normal], [(input, op) x 8 reduce]]; inputs 0, 1 = cell inputs, 2.. = "
                    "intermediate nodes; op = index into ops",
        "ops": list(DARTS_NB301_OPS),
        "nb301_keys": source_keys,
        "zero_cost_proxies": proxies,
        "units": {"flops": "operations per image (tensorwatch: multiply-adds + ReLU/BN elements)",
                  **{p: "zero-cost proxy score" for p in proxies}},
        "metric_notes": {
            "valid_acc": "NAS-Bench-301 CIFAR-10 validation accuracy (source field val_accuracy)",
            "params": "parameter count of the NB301 training network (source millions x 1e6, rounded); equals "
                      "searchspaces darts params(arch, C=32, layers=8, search_ops=True)",
            "flops": "operations per image of the NB301 training network as tensorwatch counts them (source "
                     "millions x 1e6, rounded); equals darts flops(arch, C=32, layers=8, search_ops=True, "
                     "counter='tensorwatch')",
        },
    }
    return Benchmark(NAME, "darts", archs, columns, meta, canonical=True)

"""NAS-Bench-201 (NATS-Bench topology space) from the shared table `nb201/nb201_acc.csv`.

Row i of the source is benchmark index i, and stays row i here. Accuracies come from the file (see the shared
data README); parameter and FLOP counts are not in it and are computed with the analytic counts of the
`searchspaces` NB201 space for each dataset's network (classes, image size). Both equal the benchmark's:
`params` is its parameter count (its published figure times 1e6), `flops` its FLOPs figure times 1e6, in its
own convention (conv and linear layers only, see `NB201Space.flops`); our `macs`, which adds pooling, is not
stored.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

import searchspaces

from .errors import BenchmarkError
from .table import Benchmark

NAME = "nb201"
SOURCE = "nb201/nb201_acc.csv"
DESCRIPTION = "NAS-Bench-201 / NATS-Bench tss: 15,625 cell archs on CIFAR-10, CIFAR-100 and ImageNet16-120"

# Our dataset name -> (column prefix in the source, classes, image size of the benchmark's network).
DATASETS: dict[str, tuple[str, int, int]] = {
    "cifar10": ("cifar10", 10, 32),
    "cifar100": ("cifar100", 100, 32),
    "imagenet16-120": ("ImageNet16-120", 120, 16),
}
# Our metric -> source column suffix. `test_acc` is NATS-Bench hp=200 (mean over seeds); the `_g` columns are
# the NB201 v1.0 release (cifar10 valid = the cifar10-valid split, trained on 25k images).
ACCURACY_COLUMNS: dict[str, str] = {"test_acc": "_test", "valid_acc": "_valid_g", "test_acc_v1": "_test_g"}
EXTRA_COLUMNS: dict[tuple[str, str], str] = {("cifar10", "valid_acc_naslib_1seed"): "cifar10_valid_naslib_1seed"}

METRIC_NOTES: dict[str, str] = {
    "test_acc": "NATS-Bench tss hp=200 test accuracy, mean over seeds (cifar10: trained on train+valid, ori-test; "
                "others: x-test half of the test set)",
    "valid_acc": "NAS-Bench-201 v1.0 validation accuracy (cifar10: cifar10-valid split; others: x-valid)",
    "test_acc_v1": "NAS-Bench-201 v1.0 test accuracy",
    "valid_acc_naslib_1seed": "one-seed cifar10-valid accuracy as distributed with NAS-Bench-Suite-Zero",
    "params": "parameter count of the benchmark network (affine BN), analytic count of searchspaces NB201",
    "flops": "FLOPs per image in NAS-Bench-201's convention (conv and linear multiply-adds incl. biases; pooling, "
             "BN, ReLU not counted): the benchmark's published MFLOPs x 1e6, analytic count of searchspaces NB201",
}
# Units that differ from the table defaults: the stored `flops` is the benchmark's own figure, not our `macs`.
UNITS: dict[str, str] = {"flops": "FLOPs per image, NAS-Bench-201's convention (published MFLOPs x 1e6)"}


def columns_needed() -> list[str]:
    """Source columns the loader reads."""
    cols = ["index", "arch_str", "op_idx"]
    cols += [prefix + suffix for prefix, _, _ in DATASETS.values() for suffix in ACCURACY_COLUMNS.values()]
    return cols + list(EXTRA_COLUMNS.values())


def from_file(file: Path) -> Benchmark:
    """Read the source CSV, check every row against the NB201 space, and build the table."""
    with open(file, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns_needed() if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchmarkError(f"{file} lacks the column(s) {', '.join(missing)}; expected the NB201 table format")
        rows = list(reader)
    space = searchspaces.get("nb201")
    archs = []
    parsed = []
    for i, row in enumerate(rows):
        line = i + 2
        if row["index"].strip() != str(i):
            raise BenchmarkError(f"{file} line {line} has index {row['index']!r}; expected {i} (row i is index i)")
        try:
            arch = space.parse(row["arch_str"])
        except ValueError as exc:
            raise BenchmarkError(f"{file} line {line}: {exc}") from None
        if space.op_idx(arch) != row["op_idx"].strip():
            raise BenchmarkError(
                f"{file} line {line} has op_idx {row['op_idx']!r} but its arch string encodes {space.op_idx(arch)}"
            )
        parsed.append(arch)
        archs.append(arch.to_string())

    columns: dict[tuple[str, str], np.ndarray] = {}
    for dataset, (prefix, classes, size) in DATASETS.items():
        for metric, suffix in ACCURACY_COLUMNS.items():
            columns[(dataset, metric)] = _floats(rows, prefix + suffix, file)
        for (extra_dataset, metric), column in EXTRA_COLUMNS.items():
            if extra_dataset == dataset:
                columns[(dataset, metric)] = _floats(rows, column, file)
        columns[(dataset, "params")] = np.array([space.params(a, num_classes=classes) for a in parsed], dtype=float)
        columns[(dataset, "flops")] = np.array(
            [space.flops(a, num_classes=classes, image_size=size) for a in parsed], dtype=float
        )
    meta = {
        "description": DESCRIPTION,
        "source": f"{SOURCE} (NATS-Bench / NAS-Bench-201, MIT; see the shared data README)",
        "index": "row i is NAS-Bench-201 / NATS-tss architecture index i",
        "metric_notes": METRIC_NOTES,
        "units": UNITS,
        "image_size": {d: size for d, (_, _, size) in DATASETS.items()},
        "num_classes": {d: classes for d, (_, classes, _) in DATASETS.items()},
    }
    return Benchmark(NAME, "nb201", archs, columns, meta, canonical=True)


def _floats(rows: list[dict[str, str]], column: str, file: Path) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        cell = (row[column] or "").strip()
        try:
            out[i] = float(cell) if cell else math.nan
        except ValueError:
            raise BenchmarkError(f"{file} line {i + 2} column {column} holds {cell!r}; expected a number") from None
    return out

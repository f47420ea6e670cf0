"""Converting an official NATS-Bench topology (tss) release into the compact format, through the `nats_bench` API.

The shared NB201 table already holds the NATS-Bench hp=200 numbers; this converter is for users with the official
release (e.g. `NATS-tss-v1_0-3ffb9-simple/`) who want another `hp` or to rebuild the table from the source.
Datasets and metrics match the `nb201` loader where the release has them: `test_acc` (cifar10: `cifar10` trained
on train+valid, ori-test; others: x-test), `valid_acc` (cifar10: the `cifar10-valid` split's x-valid; others:
x-valid), and `params` / `flops` from the `searchspaces` analytic counts, so both tables compare directly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import searchspaces

from .errors import BenchmarkError
from .nb201 import DATASETS
from .nb201 import UNITS as NB201_UNITS
from .table import write_table

HPS = ("12", "200")


def convert_nats(nats_path: str | os.PathLike, out_dir: str | os.PathLike, hp: str = "200",
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Read every arch of a NATS-Bench tss release and write it to `out_dir`; returns the table directory.

    `hp` is the training schedule of the release (`"12"` or `"200"` epochs); results are averaged over the
    seeds (`is_random=False`). `progress(done, total)` is called every 500 archs when given.
    """
    hp = str(hp)
    if hp not in HPS:
        raise BenchmarkError(f"hp={hp!r} is not a NATS-Bench tss schedule; accepted: {', '.join(HPS)}")
    try:
        from nats_bench import create
    except ImportError:
        raise BenchmarkError(
            "converting NATS-Bench needs the nats_bench package, which is not installed; run pip install nats_bench"
        ) from None
    source = Path(nats_path).expanduser()
    if not source.exists():
        raise BenchmarkError(
            f"NATS-Bench path {source} does not exist; expected the NATS-tss-v1_0-3ffb9-simple directory"
        )
    try:
        api = create(str(source), "tss", fast_mode=True, verbose=False)
    except Exception as exc:  # the API raises bare ValueError/AssertionError/OSError for a wrong path
        raise BenchmarkError(
            f"nats_bench could not open {source} ({exc}); expected the NATS-tss-v1_0-3ffb9-simple directory"
        ) from None

    space = searchspaces.get("nb201")
    total = len(api)
    archs: list[str] = []
    columns: dict[tuple[str, str], np.ndarray] = {
        (d, m): np.full(total, math.nan) for d in DATASETS for m in ("test_acc", "valid_acc", "params", "flops")
    }
    for i in range(total):
        try:
            arch = space.parse(api.meta_archs[i])
        except ValueError as exc:
            raise BenchmarkError(f"NATS-Bench arch {i}: {exc}") from None
        archs.append(arch.to_string())
        for dataset, (nats_name, classes, size) in DATASETS.items():
            test_source, valid_source = (("cifar10", "cifar10-valid") if dataset == "cifar10"
                                         else (nats_name, nats_name))
            test_info = _info(api, i, test_source, hp)
            valid_info = test_info if valid_source == test_source else _info(api, i, valid_source, hp)
            columns[(dataset, "test_acc")][i] = _accuracy(test_info, "test-accuracy")
            columns[(dataset, "valid_acc")][i] = _accuracy(valid_info, "valid-accuracy")
            columns[(dataset, "params")][i] = space.params(arch, num_classes=classes)
            columns[(dataset, "flops")][i] = space.flops(arch, num_classes=classes, image_size=size)
        if progress is not None and ((i + 1) % 500 == 0 or i + 1 == total):
            progress(i + 1, total)
    meta = {
        "description": f"NATS-Bench tss converted from {source.name}, hp={hp}, mean over seeds",
        "source": f"NATS-Bench topology release {source.name} via the nats_bench API",
        "hp": hp,
        "index": "row i is NATS-tss architecture index i",
        "metric_notes": {
            "test_acc": "cifar10: ori-test of the model trained on train+valid; others: x-test",
            "valid_acc": "cifar10: x-valid of the cifar10-valid split (trained on train only); others: x-valid",
            "params": "analytic count of searchspaces NB201 (equals the benchmark's)",
            "flops": "FLOPs per image in NAS-Bench-201's convention (its MFLOPs x 1e6), searchspaces NB201 count",
        },
        "units": NB201_UNITS,
    }
    return write_table(out_dir, f"nats-tss-hp{hp}", "nb201", archs, columns, meta)


def _info(api: Any, index: int, dataset: str, hp: str) -> dict[str, Any]:
    try:
        return api.get_more_info(index, dataset, hp=hp, is_random=False)
    except Exception as exc:  # missing results for one arch/dataset: keep going, the cell stays empty
        if isinstance(exc, (KeyboardInterrupt, MemoryError)):
            raise
        return {}


def _accuracy(info: dict[str, Any], key: str) -> float:
    value = info.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan

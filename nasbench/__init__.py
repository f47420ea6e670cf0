"""Benchmarks: WHAT IS TRUE about archs (ground-truth tables and ranking metrics). No torch.

    import nasbench
    bench = nasbench.load("nb201")                      # or "nasbench-macro", "nb301-subset", or a table directory
    bench.query("|nor_conv_3x3~0|+|...|", "cifar10", "test_acc")
    bench.query_many(archs, "cifar10", "test_acc")      # numpy array, NaN where the table has no value
    nasbench.ranking_report(pred, true, names=archs)    # Kendall tau-b, Spearman, P@k, regret with intervals

Every source is converted into one compact format (`table.csv` + `meta.json`, see `table.py`); `write_table`
writes new ground truth (e.g. `nas bench build`) and `load(directory)` reads it back. Source files are found
through `path=`, `$SUPERNAS_SHARED_DATA` or `../shared/data` beside the project (`locate.py`).
"""

from __future__ import annotations

from .errors import BenchmarkError
from .loaders import DESCRIPTIONS, clear_cache, load, names
from .locate import ENV_VAR, locate
from .metrics import (
    bootstrap,
    drop_nan,
    kendall_tau,
    pearson,
    precision_at_k,
    ranking_report,
    spearman,
    top1_regret,
)
from .nats import convert_nats
from .table import Benchmark, read_table, write_table

__all__ = [
    "Benchmark", "BenchmarkError", "DESCRIPTIONS", "ENV_VAR", "bootstrap", "clear_cache", "convert_nats", "drop_nan",
    "kendall_tau", "load", "locate", "names", "pearson", "precision_at_k", "ranking_report", "read_table",
    "spearman", "top1_regret", "write_table",
]

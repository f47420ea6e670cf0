"""NAS-Bench-Macro (a MobileNet-like macro space on CIFAR-10) from `nasbench_macro/nas-bench-macro_cifar10.json`.

Keys are the 8-character codes of the source (one of `0` identity, `1` MBv2 e3k3, `2` MBv2 e6k5 per layer);
rows keep the source's order. The counts `params` and `flops` are the source's own.
"""

from __future__ import annotations

from pathlib import Path

from .errors import BenchmarkError
from .jsonsource import number, read_json
from .keys import macro_key
from .table import Benchmark

NAME = "nasbench-macro"
# The search space the table's keys belong to (`searchspaces.get(SPACE)`), so `nas rank` accepts runs of it.
SPACE = "nasbench-macro"
SOURCE = "nasbench_macro/nas-bench-macro_cifar10.json"
DESCRIPTION = "NAS-Bench-Macro: 6,561 MobileNet-like macro archs (8 layers x 3 choices) trained on CIFAR-10"
FIELDS: dict[str, str] = {"test_acc": "mean_acc", "test_acc_std": "std", "params": "params", "flops": "flops"}


def from_file(file: Path) -> Benchmark:
    """Read the source JSON (`code -> {mean_acc, std, params, flops, test_acc: [3 seeds]}`) into a table."""
    data = read_json(file)
    if not isinstance(data, dict) or not data:
        raise BenchmarkError(f"{file} holds no NAS-Bench-Macro entries; expected an object code -> results")
    archs = []
    values: dict[str, list[float]] = {metric: [] for metric in FIELDS}
    for code, entry in data.items():
        try:
            archs.append(macro_key(code))
        except BenchmarkError as exc:
            raise BenchmarkError(f"{file}: {exc}") from None
        if not isinstance(entry, dict):
            raise BenchmarkError(f"{file} entry {code!r} is a {type(entry).__name__}; expected an object")
        for metric, field in FIELDS.items():
            values[metric].append(number(entry.get(field), file, code, field))
    columns = {("cifar10", metric): column for metric, column in values.items()}
    meta = {
        "description": DESCRIPTION,
        "source": f"{SOURCE} (xiusu/NAS-Bench-Macro, Apache-2.0)",
        "choices": {"0": "identity (skip)", "1": "MobileNetV2 block, expand 3, kernel 3",
                    "2": "MobileNetV2 block, expand 6, kernel 5"},
        "seeds": 3,
        "metric_notes": {
            "test_acc": "CIFAR-10 test accuracy, mean over 3 seeds (source field mean_acc)",
            "test_acc_std": "standard deviation over the 3 seeds as given by the source (field std, ddof=0)",
            "params": "parameter count (source)",
            "flops": "multiply-adds per image (source)",
        },
    }
    return Benchmark(NAME, SPACE, archs, columns, meta, canonical=True)


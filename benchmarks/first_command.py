"""What the README's first command shows: run `make search`'s search N times and record its figures.

    python benchmarks/first_command.py [--repeats 3] [--out results/first_command.json]

Each repeat runs the exact `nas search` command of the Makefile's `search` target in a fresh process (so the
timing includes start-up and data loading) into a temporary run directory, then reads its `summary.json`:
wall time, training and search seconds, the inherited valid accuracy of 100 uniformly sampled archs (median)
and the chosen arch's inherited test accuracy. Repeats use the same seed, so the accuracies are identical on
CPU and the times show the machine's noise; the JSON keeps every repeat and the medians, and
`python -m nas.report` turns it into the README's table. Run it on a quiet machine: other jobs on the two
cores slow small steps many times over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nas.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent


def search_command() -> list[str]:
    """The `nas search ...` line of the Makefile's `search` target, as arguments."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^search:.*\n\t\$\(BIN\)/nas (search[^\n]*)", makefile, re.M)
    if match is None:
        raise SystemExit("first_command.py: no `$(BIN)/nas search ...` line under the Makefile's search target")
    return shlex.split(match.group(1))


def run_once(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nas", *args, "--out", str(out), "--quiet"], check=True, cwd=ROOT)
        wall = time.perf_counter() - started
        summary = json.loads((out / "summary.json").read_text())
    sample = summary["sampled_archs_valid_acc"] or {}
    return {"wall_s": round(wall, 1), "train_s": summary["train_seconds_this_invocation"],
            "search_s": summary["search_seconds"], "final_train_acc": summary["final_train_acc"],
            "sampled_valid_median": sample.get("median"), "sampled_valid_p10": sample.get("p10"),
            "best_test_acc_inherited": summary["best_test_acc_inherited"], "best_arch": summary["best_arch"]}


def torch_version() -> str:
    import torch

    return torch.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results" / "first_command.json"))
    args = parser.parse_args(argv)
    command = search_command()
    runs = [run_once(command) for _ in range(args.repeats)]
    median = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "train_s", "search_s")}
    first = runs[0]
    rows = [{"quantity": "wall time of the search (median of repeats, s)", "value": median["wall_s"]},
            {"quantity": "... of which supernet training (s)", "value": median["train_s"]},
            {"quantity": "... of which post-training search (s)", "value": median["search_s"]},
            {"quantity": "train accuracy of the sampled paths, last epoch (%)", "value": first["final_train_acc"]},
            {"quantity": "inherited valid accuracy of 100 uniformly sampled archs, median (%)",
             "value": first["sampled_valid_median"]},
            {"quantity": "... 10th percentile (%)", "value": first["sampled_valid_p10"]},
            {"quantity": "chosen arch's inherited test accuracy (%)", "value": first["best_test_acc_inherited"]}]
    result = {
        "command": "nas " + shlex.join(command),
        "columns": [["quantity", "quantity"], ["value", "measured"]],
        "digits": {"value": 1},
        "rows": rows,
        "note": f"{args.repeats} repeats in fresh processes on {os.cpu_count()} CPU cores ({platform.machine()}, "
                f"torch {torch_version()}), times as medians; chosen arch `{first['best_arch']}`.",
        "repeats": runs,
        "python": platform.python_version(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(args.out, result)
    print(json.dumps({"wall_s": median["wall_s"], "sampled_valid_median": first["sampled_valid_median"],
                      "best_test_acc_inherited": first["best_test_acc_inherited"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

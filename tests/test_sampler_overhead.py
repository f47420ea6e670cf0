"""benchmarks/sampler_overhead.py reports sound figures on a tiny configuration."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "sampler_overhead.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)


def test_tiny_run_reports_the_ratio():
    result = _run("--C", "4", "--N", "1", "--batch-size", "16", "--image-size", "8", "--steps", "4", "--repeats",
                  "2", "--device", "cpu", "--threads", "1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["strategy"] == "pada" and report["baseline"].startswith("uniform")
    for key in ("baseline_step_s", "strategy_step_s"):
        assert report[key] > 0 and math.isfinite(report[key])
    assert math.isclose(report["ratio"], report["strategy_step_s"] / report["baseline_step_s"], rel_tol=1e-9)
    assert len(report["per_repeat"]["pada"]) == len(report["per_repeat"]["replay"]) == 2
    assert math.isclose(report["ratio_free"], report["strategy_step_s"] / report["uniform_own_paths_step_s"])


def test_unknown_strategy_fails_in_one_line():
    result = _run("--strategy", "magic")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown strategy 'magic'" in result.stderr

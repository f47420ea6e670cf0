"""benchmarks/search_step_cost.py measures every mode in its own process and reports sound figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "search_step_cost.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)


def test_tiny_darts_run_reports_time_and_memory_per_mode_and_records_them(tmp_path):
    from nas import report as reports

    out = tmp_path / "step_cost.json"
    result = _run("--C", "2", "--layers", "3", "--batch-size", "4", "--image-size", "8", "--steps", "1",
                  "--repeats", "1", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for mode in ("single", "mix", "entangle", "darts", "darts-entangle", "gdas", "gdas-entangle"):
        assert report[f"{mode}_step_s"] > 0 and math.isfinite(report[f"{mode}_step_s"])
        assert report[f"{mode}_peak_mb"] >= 0
    assert report["mix_over_single_time"] == report["mix_step_s"] / report["single_step_s"]
    assert report["darts_step_s"] > report["single_step_s"]  # every candidate plus an architecture step
    modes = report["modes"]
    assert modes["darts-entangle"]["build_mode"] == "entangle" and modes["darts"]["build_mode"] == "mix"
    assert report["entangle_over_mix_memory"] == report["entangle_peak_mb"] / report["mix_peak_mb"]
    # --out: the same figures with their command, as rows python -m nas.report renders
    data = json.loads(out.read_text())
    assert data["command"].startswith("python benchmarks/search_step_cost.py") and "--out" in data["command"]
    rows = {r["mode"]: r for r in data["rows"]}
    assert rows["entangle"]["memory_vs_mix"] == data["modes"]["entangle"]["peak_mb"] / data["modes"]["mix"]["peak_mb"]
    assert rows["darts-entangle"]["time_vs_mix"] == data["darts-entangle_over_darts_time"]
    assert rows["mix"]["memory_vs_mix"] is None
    text = reports.json_section(out.name, tmp_path)
    assert "| entangle | entangle |" in text and "memory / mix" in text


def test_bad_mode_fails_in_one_line():
    result = _run("--modes", "single,magic")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "magic" in result.stderr

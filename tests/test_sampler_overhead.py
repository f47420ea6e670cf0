"""benchmarks/sampler_overhead.py reports sound figures on a tiny configuration."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    # the direct measure: time inside the strategy's hooks, a part of the step it is measured against
    by_hook = report["hook_s_per_step_by_hook"]
    assert {"sample_step", "after_backward", "loss", "epoch_order", "on_epoch_end"} <= set(by_hook)
    assert by_hook["after_backward"] > 0 and by_hook["sample_step"] > 0 and by_hook["on_epoch_end"] > 0
    assert math.isclose(report["hook_s_per_step"], statistics.median(report["per_repeat"]["hook_s"]))
    assert 0 < report["hook_s_per_step"] < report["step_s"] and 0 < report["hook_ratio"] < 1
    assert math.isclose(report["step_s"], report["strategy_step_s"])
    assert "CPU" in report["hook_timing"]


def test_hooks_only_on_mobilenet_times_the_hooks_without_baselines():
    result = _run("--space", "mobilenet", "--supernet", "width_mult=0.35", "--batch-size", "8", "--image-size", "8",
                  "--steps", "2", "--repeats", "1", "--device", "cpu", "--threads", "1", "--hooks-only",
                  "--strategy-option", "grad_read=after_backward")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["space"] == "mobilenet" and "ratio" not in report and "baseline_step_s" not in report
    assert report["strategy_options"] == {"grad_read": "after_backward"}
    assert report["supernet_options"] == {"width_mult": 0.35}
    assert 0 < report["hook_s_per_step"] < report["step_s"]
    assert math.isclose(report["hook_ratio"], report["hook_s_per_step"] / report["step_s"], rel_tol=1e-9)


def test_hook_timer_counts_a_nested_hook_once_and_spans_the_epoch():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from sampler_overhead import HookTimer
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import strategies

    strategy = strategies.get("uniform")
    strategy.sample = lambda: time.sleep(0.02) or "arch"  # the default sample_step calls it
    timer = HookTimer(strategy, sync=lambda: None)
    strategy.epoch_order(0, 10)
    assert strategy.sample_step() == ["arch"]
    time.sleep(0.03)  # the step's forward/backward: not a hook
    strategy.on_epoch_end(0)
    hooks, step, per_hook = timer.per_step(0, steps=1)
    assert per_hook["sample"] == 0 and per_hook["sample_step"] >= 0.02  # counted once, in the outer hook
    assert hooks == pytest.approx(sum(per_hook.values())) and hooks < 0.1  # 0.1: only a badly loaded machine
    assert step - hooks >= 0.03  # the epoch span includes the non-hook work


def test_unknown_strategy_fails_in_one_line():
    result = _run("--strategy", "magic")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown strategy 'magic'" in result.stderr
    for args, words in ((("--space", "mobilenet", "--supernet", "C=16"), "accepted keys: width_mult"),
                        (("--strategy-option", "grad_read"), "not KEY=VALUE"),
                        (("--steps", "1", "--batch-size", "4"), "synthetic_size")):
        result = _run(*args)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and words in result.stderr


def test_record_keeps_one_row_per_setting_for_the_report(tmp_path):
    from nas.report import json_section

    table = tmp_path / "pada_overhead.json"
    tiny = ["--C", "4", "--N", "1", "--image-size", "8", "--steps", "2", "--repeats", "1", "--device", "cpu",
            "--threads", "1", "--hooks-only", "--record", str(table)]
    for batch in ("8", "8", "16"):
        result = _run(*tiny, "--batch-size", batch)
        assert result.returncode == 0, result.stderr
    data = json.loads(table.read_text())
    assert [r["setting"].split("batch ")[1].split(",")[0] for r in data["rows"]] == ["8", "16"]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert math.isclose(data["rows"][-1]["hook_ratio"], last["hook_ratio"])
    assert "--record" not in data["rows"][-1]["command"] and "--batch-size 16" in data["rows"][-1]["command"]
    text = json_section(table.name, tmp_path)
    assert text.count("\n| pada on nb201 (C=4, N=1), batch") == 2 and data["rows"][0]["command"] in text

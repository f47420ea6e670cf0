"""benchmarks/step_time.py: a tiny run prints a sound JSON result; bad options fail in one line with status 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import searchspaces

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "step_time.py"
TINY = ["--C", "4", "--N", "1", "--batch-size", "8", "--image-size", "8", "--archs", "2", "--steps", "2",
        "--warmup", "1", "--repeats", "2", "--device", "cpu", "--threads", "1", "--seed", "3"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tiny_result() -> tuple[dict, str]:
    proc = _run(*TINY)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_tiny_run_reports_sound_figures(tiny_result):
    result, stderr = tiny_result
    for key in ("supernet_step_s", "child_step_s", "ratio", "ratio_median_of_repeats", "per_repeat", "batch_size",
                "image_size", "device", "threads", "torch", "archs", "steps", "repeats", "C", "N"):
        assert key in result, key
    for key in ("supernet_step_s", "child_step_s", "ratio", "ratio_median_of_repeats"):
        assert math.isfinite(result[key]) and result[key] > 0, (key, result[key])
    assert result["ratio"] == pytest.approx(result["supernet_step_s"] / result["child_step_s"], rel=1e-9)
    assert (result["batch_size"], result["image_size"], result["C"], result["N"]) == (8, 8, 4, 1)
    assert (result["steps"], result["repeats"], result["device"], result["threads"]) == (2, 2, "cpu", 1)
    assert len(result["per_repeat"]) == 2
    for row in result["per_repeat"]:
        assert row["supernet_step_s"] > 0 and row["child_step_s"] > 0
        assert row["ratio"] == pytest.approx(row["supernet_step_s"] / row["child_step_s"], rel=1e-9)
        assert len(row["per_arch_ratio"]) == 2
    # the medians are medians of the per-repeat figures
    assert result["supernet_step_s"] == pytest.approx(np.median([r["supernet_step_s"] for r in result["per_repeat"]]))
    assert result["ratio_median_of_repeats"] == pytest.approx(np.median([r["ratio"] for r in result["per_repeat"]]))
    assert stderr.count("repeat ") == 2


def test_children_are_the_listed_archs(tiny_result):
    result, _ = tiny_result
    space = searchspaces.get("nb201")
    expected_rng = np.random.default_rng(3)
    assert len(result["archs"]) == 2 == len(result["child_params"])
    for text, n_params in zip(result["archs"], result["child_params"]):
        arch = space.parse(text)
        assert arch.to_string() == text  # canonical
        assert arch == space.sample(expected_rng)  # the archs drawn from the seed, in order
        # each timed child is the standalone network of that arch (its exact parameter count)
        assert n_params == space.params(arch, num_classes=10, C=4, N=1, in_channels=3, affine=False)
    assert result["supernet_params"] > max(result["child_params"])


@pytest.mark.parametrize("args, mention", [
    (["--batch-size", "0"], "--batch-size"),
    (["--steps", "x"], "--steps"),
    (["--device", "tpu"], "--device"),
])
def test_bad_option_fails_in_one_line(args, mention):
    proc = _run(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "error" in lines[0] and mention in lines[0]

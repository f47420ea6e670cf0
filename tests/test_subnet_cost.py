"""benchmarks/subnet_cost.py: the smallest subnet's step is measurably cheaper than the largest's, the figures
are consistent, bad options fail in one line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import searchspaces
import supernets

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "subnet_cost.py"
COMMON = ["--steps", "1", "--warmup", "1", "--repeats", "3", "--device", "cpu", "--threads", "1"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def _result(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "result.json"
    proc = _run(*args, *COMMON, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def _check(result: dict, stdout: str, space_name: str, task: dict) -> None:
    space = searchspaces.get(space_name)
    small, large = result["subnets"]["smallest"], result["subnets"]["largest"]
    assert space.parse(small["arch"]) == space.smallest(**task) and space.parse(large["arch"]) == space.largest(**task)
    for row, arch in ((small, space.smallest(**task)), (large, space.largest(**task))):
        assert row["flops"] == space.flops(arch, **task) and row["params"] == space.params(arch, **task)
        assert len(row["per_repeat_s"]) == 3 and all(t > 0 and math.isfinite(t) for t in row["per_repeat_s"])
        assert row["step_s"] == sorted(row["per_repeat_s"])[1]  # the median of 3 repeats
    assert result["time_ratio"] == pytest.approx(small["step_s"] / large["step_s"])
    assert result["flops_ratio"] == pytest.approx(small["flops"] / large["flops"]) and result["flops_ratio"] < 0.5
    assert small["step_s"] < 0.8 * large["step_s"], result  # a small path runs at its real size
    assert (result["threads"], result["device"], result["repeats"]) == (1, "cpu", 3)
    assert "smallest/largest: time" in stdout and "smallest " in stdout and "largest " in stdout


@pytest.mark.skipif("mobilenet" not in supernets.names(), reason="the MobileNet supernet is not built yet")
def test_mobilenet_smallest_subnet_is_cheaper_than_the_largest(tmp_path):
    result, stdout = _result(tmp_path, "--space", "mobilenet", "--supernet", "schedule=cifar", "--batch-size", "4",
                             "--image-size", "16", "--child")
    assert result["supernet_options"]["schedule"] == "cifar"
    task = dict(num_classes=10, in_channels=3, image_size=16, **result["supernet_options"])
    _check(result, stdout, "mobilenet", task)
    for row in result["subnets"].values():  # the exported child is the network the analytic count describes
        assert row["child_params_counted"] == row["params"] and row["child_step_s"] > 0
    assert result["child_time_ratio"] < 0.8


def test_nb201_smallest_subnet_is_cheaper_than_the_largest(tmp_path):
    result, stdout = _result(tmp_path, "--space", "nb201", "--supernet", "C=4", "--supernet", "N=1",
                             "--batch-size", "16", "--image-size", "8")
    _check(result, stdout, "nb201", dict(num_classes=10, in_channels=3, image_size=8, C=4, N=1, affine=False))


@pytest.mark.parametrize("args, mention", [
    (["--batch-size", "0"], "--batch-size"),
    (["--space", "nope"], "--space"),
    (["--supernet", "colour=red"], "--supernet"),
])
def test_bad_option_fails_in_one_line(args, mention):
    proc = _run(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and mention in lines[0]

"""Latency constraints: a measured per-block lookup table, a table of measured archs, a predictor hook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import searchspaces
import supernets
from nas.errors import UserError
from nas.latency import build_lookup_table, load_latency

ROOT = Path(__file__).resolve().parent.parent
TASK = dict(num_classes=10, in_channels=1, image_size=8, width_mult=0.35, schedule="cifar")


def predict_ms(arch) -> float:
    """A toy predictor for the hook test: one millisecond per active block."""
    return float(sum(arch.space.depths(arch)))


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("mobilenet")


@pytest.fixture(scope="module")
def lut(space):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, in_channels=1, width_mult=0.35)
    return build_lookup_table(net, space, TASK, torch.device("cpu"), repeats=7, warmup=1)


def test_lookup_table_sums_one_entry_per_active_block(space, lut, tmp_path):
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(lut))
    latency = load_latency(str(path), space)
    arch = space.parse("k3e3-k5e4|k7e6-k3e3-k3e3|k3e3-k3e3|k3e3-k3e3-k3e3-k5e6|k3e3-k3e3")
    expected = lut["constant_ms"]
    for s, blocks in enumerate(space.blocks(arch)):
        depth_index = len(blocks) - 2
        for b, (k, e) in enumerate(blocks):
            table = np.array(lut["terms"][4 * s + b]["table"])
            expected += table[depth_index, (3, 5, 7).index(k), (3, 4, 6).index(e)]
    assert latency(arch) == pytest.approx(expected)
    assert all(np.array(t["table"])[0, :, :].sum() == 0 for t in lut["terms"][2::4])  # block 3 absent at d=2
    assert latency(space.largest()) > latency(space.smallest()) > lut["constant_ms"] > 0


def test_table_of_measured_archs_and_missing_archs(space, tmp_path):
    a, b = space.smallest(), space.largest()
    (tmp_path / "t.json").write_text(json.dumps({a.to_string(): 1.5, b.to_string(): 9.0}))
    latency = load_latency(str(tmp_path / "t.json"), space)
    assert latency(a) == 1.5 and latency(b) == 9.0
    assert latency(space.sample(np.random.default_rng(0))) == float("inf")  # unmeasured: over any limit
    (tmp_path / "t.csv").write_text(f"arch,latency_ms\n{a.to_string()},2.0\n")
    assert load_latency(str(tmp_path / "t.csv"), space)(a) == 2.0


def test_predictor_hook(space):
    latency = load_latency("tests.test_latency:predict_ms", space)
    assert latency(space.smallest()) == 10.0 and latency(space.largest()) == 20.0


@pytest.mark.parametrize("spec, fragment", [
    ("nowhere.json", "neither an existing table file"),
    ("no_such_module:fn", "neither a file nor an importable"),
])
def test_bad_latency_sources_are_one_sentence(space, spec, fragment):
    with pytest.raises(UserError, match=fragment) as err:
        load_latency(spec, space)
    assert "\n" not in str(err.value)


def test_lookup_table_for_another_space_is_refused(space, lut, tmp_path):
    path = tmp_path / "lut.json"
    path.write_text(json.dumps({**lut, "space": "nb201"}))
    with pytest.raises(UserError, match="for space 'nb201'"):
        load_latency(str(path), space)


def test_benchmark_script_writes_a_table(tmp_path):
    out = tmp_path / "lut.json"
    result = subprocess.run([sys.executable, "benchmarks/latency_table.py", "--out", str(out), "--image-size", "8",
                             "--channels", "1", "--repeats", "1", "--warmup", "0", "--threads", "1",
                             "--supernet", "width_mult=0.35"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["blocks"] == 20 and summary["largest_ms"] > 0 and summary["smallest_ms"] > 0
    assert json.loads(out.read_text())["format"] == "supernas-latency-lut/1"


def test_search_under_a_latency_limit(space, lut, tmp_path, capsys):
    from nas.cli import main

    path = tmp_path / "lut.json"
    path.write_text(json.dumps(lut))
    latency = load_latency(str(path), space)
    rng = np.random.default_rng(0)
    limit = float(np.median([latency(space.sample(rng)) for _ in range(200)]))
    out = tmp_path / "run"
    args = ["search", "--space", "mobilenet", "--strategy", "uniform", "--dataset", "digits", "--epochs", "1",
            "--max-latency", str(limit), "--latency", str(path), "--out", str(out),
            "--set", "supernet.width_mult=0.35", "--set", "train.batch_size=256", "--set", "search.budget=6",
            "--set", "eval.monitor_archs=0", "--set", "eval.calib_batches=1", "--set", "eval.sample_check=0"]
    assert main(args) == 0
    arch = json.loads((out / "arch.json").read_text())
    assert arch["latency_ms"] == pytest.approx(latency(space.parse(arch["arch"]))) and arch["latency_ms"] <= limit
    assert arch["limits"]["max_latency"] == limit and arch["latency_model"] == str(path)
    capsys.readouterr()


@pytest.mark.parametrize("extra, fragment", [
    (["--max-latency", "5"], "needs a latency model"),
    (["--max-latency", "5", "--latency", "missing.json"], "neither an existing table file"),
    (["--max-latency", "-1", "--latency", "x.json"], "is not a latency"),
])
def test_latency_flags_fail_in_one_line_before_the_run(tmp_path, capsys, extra, fragment):
    from nas.cli import main

    try:
        status = main(["search", "--space", "mobilenet", "--out", str(tmp_path / "run"), *extra])
    except SystemExit as exited:  # argparse refuses a bad flag value itself
        status = exited.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()

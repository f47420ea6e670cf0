"""NAS-Bench-Macro end to end on CPU: `nas search --space nasbench-macro`, then `nas rank` against the benchmark."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import shared_data_dir

import nasbench
import searchspaces
from nas.cli import main

TINY = ["--set", "train.batch_size=128", "--set", "search.budget=4", "--set", "eval.monitor_archs=0",
        "--set", "eval.calib_batches=1", "--set", "eval.calib_batch_size=100", "--set", "eval.sample_check=0",
        "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("macro") / "uniform-run"
    args = ["search", "--space", "nasbench-macro", "--strategy", "uniform", "--dataset", "digits", "--epochs", "1",
            "--out", str(out), *TINY]
    assert main(args) == 0
    return out


def test_search_writes_a_run_of_the_macro_space(run_dir):
    info = json.loads((run_dir / "arch.json").read_text())
    space = searchspaces.get("nasbench-macro")
    arch = space.parse(info["arch"])  # an 8-character benchmark code
    assert info["space"] == "nasbench-macro" and len(info["arch"]) == 8
    config = (run_dir / "config.yaml").read_text()
    assert "bn_mode: recalibrate" in config and "share_weights: true" in config
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert space.params(arch, num_classes=10, in_channels=1, image_size=8) > 0


def test_rank_against_the_benchmark_truth(run_dir, tmp_path):
    if shared_data_dir() is None:
        pytest.skip("shared data not found")
    out = tmp_path / "rank"
    assert main(["rank", str(run_dir), "--benchmark", "nasbench-macro", "--dataset", "cifar10", "--archs", "20",
                 "--bootstrap", "100", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "ranking.json").read_text())
    assert report["benchmark"] == "nasbench-macro" and report["benchmark_dataset"] == "cifar10"
    assert report["num_archs"] == 20 and report["bn_mode"] == "recalibrate" and report["calib_images"] == 100
    assert -1 <= report["metrics"]["kendall_tau"]["value"] <= 1
    bench = nasbench.load("nasbench-macro")
    assert bench.space == "nasbench-macro"
    with open(out / "ranking.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20
    for row in rows:
        assert float(row["true_acc"]) == pytest.approx(bench.query(row["arch"], "cifar10", "test_acc"), rel=1e-5)
        assert 0 <= float(row["supernet_score"]) <= 100
    assert (out / "plots" / "ranking_scatter.png").is_file()


def test_arch_info_reports_the_benchmark_counts(capsys):
    assert main(["arch", "info", "--space", "nasbench-macro", "--arch", "02012100", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == "02012100" and info["params"] == 890_666 and info["flops"] == 47_327_744
    assert main(["arch", "info", "--space", "nasbench-macro", "--arch", "0201"]) == 2
    assert "not a NAS-Bench-Macro code" in capsys.readouterr().err

"""Ranking consistency end to end: `nas bench build` -> `nas search --rank-every` -> `nas rank` -> notebook."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
import scipy.stats
from conftest import shared_data_dir
from nbclient import NotebookClient

import nasbench
from nas import standalone
from nas.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY_BUILD = ["--set", "C=4", "--set", "N=1", "--set", "batch_size=128", "--quiet"]
TINY_RUN = ["--set", "supernet.C=4", "--set", "supernet.N=1", "--set", "train.batch_size=128",
            "--set", "search.budget=4", "--set", "eval.monitor_archs=0", "--set", "eval.sample_check=0",
            "--quiet"]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "digits-bench"
    assert main(["bench", "build", "--archs", "12", "--epochs", "2", "--out", str(out), *TINY_BUILD]) == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, bench_dir) -> Path:
    out = tmp_path_factory.mktemp("runs") / "uniform-run"
    args = ["search", "--dataset", "digits", "--epochs", "2", "--rank-every", "1", "--rank-benchmark", str(bench_dir),
            "--set", "rank.archs=8", "--out", str(out), *TINY_RUN]
    assert main(args) == 0
    return out


def test_bench_build_writes_a_loadable_benchmark(bench_dir):
    bench = nasbench.load(str(bench_dir))
    assert len(bench) == 12 and bench.space == "nb201" and bench.datasets == ("digits",)
    assert {"test_acc", "valid_acc", "params", "flops"} <= set(bench.metrics("digits"))
    acc = bench.query_many(bench.archs, "digits", "test_acc")
    assert np.all((acc >= 0) & (acc <= 100)) and np.ptp(acc) > 0
    meta = json.loads((bench_dir / "meta.json").read_text())
    assert meta["training"]["epochs"] == 2 and meta["training"]["C"] == 4
    results = sorted((bench_dir / "results").glob("*.json"))
    assert len(results) == 12


def test_bench_build_resumes_without_retraining(tmp_path, monkeypatch):
    out = tmp_path / "b"
    real = standalone.train_arch
    calls = []

    def failing_after_two(arch, settings):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(arch)
        return real(arch, settings)

    from nas import benchbuild

    monkeypatch.setattr(benchbuild, "train_arch", failing_after_two)
    args = ["bench", "build", "--archs", "4", "--epochs", "1", "--out", str(out), *TINY_BUILD]
    assert main(args) == 130
    assert len(list((out / "results").glob("*.json"))) == 2 and not (out / "table.csv").exists()
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(benchbuild, "train_arch", lambda a, s: (calls.append(a), real(a, s))[1])
    assert main(args) == 0
    assert len(calls) == 2 and not set(calls) & set(first)  # only the unfinished archs were trained
    assert len(nasbench.load(str(out))) == 4
    # the same directory with other settings is refused instead of mixing two protocols
    assert main(["bench", "build", "--archs", "4", "--epochs", "3", "--out", str(out), *TINY_BUILD]) == 2


def test_search_records_kendall_tau_every_epoch(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    taus = [float(r["kendall_tau"]) for r in rows]
    assert len(taus) == 2 and all(-1 <= t <= 1 for t in taus)


def test_rank_writes_files_and_its_tau_equals_scipys(run_dir, bench_dir, capsys):
    assert main(["rank", str(run_dir), "--benchmark", str(bench_dir), "--archs", "all", "--bootstrap", "200"]) == 0
    err = capsys.readouterr().err
    assert "kendall_tau" in err
    with open(run_dir / "ranking.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    score = np.array([float(r["supernet_score"]) for r in rows])
    true = np.array([float(r["true_acc"]) for r in rows])
    report = json.loads((run_dir / "ranking.json").read_text())
    expected = scipy.stats.kendalltau(score, true).statistic
    assert report["metrics"]["kendall_tau"]["value"] == pytest.approx(expected, abs=1e-12)
    bench = nasbench.load(str(bench_dir))
    assert all(bench.query(r["arch"], "digits", "test_acc") == pytest.approx(float(r["true_acc"]), rel=1e-5)
               for r in rows)
    assert report["bn_mode"] == "batch" and report["eval_batch_size"] == 512 and report["num_archs"] == 12
    assert report["seed"] == 0 and report["protocol"] == "ranking-test" and report["checkpoint_epoch"] == 2
    low, high = report["metrics"]["kendall_tau"]["ci_low"], report["metrics"]["kendall_tau"]["ci_high"]
    assert low <= report["metrics"]["kendall_tau"]["value"] <= high
    assert (run_dir / "plots" / "ranking_scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rank_builds_no_strategy(run_dir, bench_dir, tmp_path, monkeypatch):
    """Scoring archs with a trained supernet needs the model and data only: `nas rank` sets up no strategy (for
    ShiftNAS that would draw a 20,000-arch pool just to score archs)."""
    import strategies

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"nas rank set up strategy {self.name}")

    for entry in strategies.entries():
        monkeypatch.setattr(entry.strategy_class, "setup", refuse)
    monkeypatch.setattr(strategies.Strategy, "setup", refuse)
    assert main(["rank", str(run_dir), "--benchmark", str(bench_dir), "--archs", "6", "--bootstrap", "50",
                 "--out", str(tmp_path / "rank"), "--quiet"]) == 0
    assert json.loads((tmp_path / "rank" / "ranking.json").read_text())["num_archs"] == 6


def test_rank_user_errors(run_dir, bench_dir, tmp_path, capsys):
    assert main(["rank", str(run_dir), "--benchmark", "nope"]) == 2
    assert main(["rank", str(tmp_path), "--benchmark", str(bench_dir)]) == 2
    assert main(["rank", str(run_dir), "--benchmark", str(bench_dir), "--bn-mode", "running"]) == 2
    assert main(["rank", str(run_dir), "--benchmark", str(bench_dir), "--archs", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("nas: error: ") for line in lines)
    assert "nope" in lines[0] and "not a run directory" in lines[1] and "bn_mode batch" in lines[2]


def test_rank_against_nb201_truth(run_dir, tmp_path):
    if shared_data_dir() is None:
        pytest.skip("shared data not found")
    out = tmp_path / "nb201-rank"
    assert main(["rank", str(run_dir), "--benchmark", "nb201", "--dataset", "cifar10", "--archs", "30",
                 "--bootstrap", "100", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "ranking.json").read_text())
    assert report["benchmark"] == "nb201" and report["benchmark_dataset"] == "cifar10" and report["num_archs"] == 30
    bench = nasbench.load("nb201")
    with open(out / "ranking.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            assert float(row["true_acc"]) == pytest.approx(bench.query(row["arch"], "cifar10", "test_acc"), rel=1e-5)


def test_notebook_runs_top_to_bottom(run_dir, bench_dir, tmp_path, monkeypatch):
    if not (run_dir / "ranking.json").is_file():
        assert main(["rank", str(run_dir), "--benchmark", str(bench_dir), "--archs", "all", "--quiet"]) == 0
    monkeypatch.setenv("SUPERNAS_RUN_DIRS", str(run_dir))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel uses the inline backend
    notebook = nbformat.read(ROOT / "notebooks" / "ranking_consistency.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # tau over epochs, scatter, precision@k
    table = outputs[-1]["data"]["text/plain"]
    assert "kendall_tau" in table and os.path.basename(run_dir) in table


def test_rank_every_samples_distinct_networks_with_rank_dedup(tmp_path, bench_dir, monkeypatch):
    """rank.dedup reaches the --rank-every sample: the monitor asks for one arch per class of identical networks."""
    from nas import pipeline, rank

    asked = []
    real = rank.choose_archs

    def spy(bench, count, seed, dedup=False):
        asked.append(dedup)
        return real(bench, count, seed, dedup)

    monkeypatch.setattr(pipeline, "choose_archs", spy)  # the monitor's own reference to nas.rank.choose_archs
    args = ["search", "--dataset", "digits", "--epochs", "1", "--rank-every", "1", "--rank-benchmark", str(bench_dir),
            "--set", "rank.archs=6", "--set", "rank.dedup=true", "--set", "search.method=none", "--out",
            str(tmp_path / "r"), *TINY_RUN]
    assert main(args) == 0
    assert asked == [True]

"""`nas study`: arms x seeds on a benchmark, aggregated with t-intervals and paired differences; a rerun trains
nothing again; `nas.report` renders the study from its file and `--check` notices a README that drifted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
import yaml

from nas import pipeline, study
from nas import report as reports
from nas.cli import main

TINY_BUILD = ["--epochs", "1", "--set", "C=4", "--set", "N=1", "--set", "batch_size=128", "--quiet"]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    bench = root / "bench"
    assert main(["bench", "build", "--archs", "10", "--unique", "--out", str(bench), *TINY_BUILD]) == 0
    spec = {
        "name": "tiny",
        "base": {"set": {"space.name": "nb201", "data.name": "digits", "train.epochs": 1, "supernet.C": 4,
                         "supernet.N": 1, "train.batch_size": 128, "search.method": "none",
                         "eval.monitor_archs": 0, "eval.sample_check": 8}},
        "arms": {"uniform": {"strategy.name": "uniform"}, "pada": {"strategy.name": "pada"}},
        "seeds": [0, 1],
        "rank": {"benchmark": str(bench), "archs": "all", "dedup": True, "bootstrap": 50},
        "runs_dir": str(root / "runs"),
        "results_dir": str(root / "results"),
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["study", str(path), "--quiet"]) == 0
    return root, path


def test_study_json_aggregates_every_run(finished_study):
    root, _ = finished_study
    data = json.loads((root / "results" / "tiny" / "study.json").read_text())
    assert [(r["arm"], r["seed"]) for r in data["runs"]] == [("uniform", 0), ("uniform", 1), ("pada", 0), ("pada", 1)]
    taus = {(r["arm"], r["seed"]): r["metrics"]["kendall_tau"] for r in data["runs"]}
    summary = data["arms"]["pada"]["summary"]["kendall_tau"]
    values = [taus[("pada", 0)], taus[("pada", 1)]]
    assert summary["mean"] == pytest.approx(np.mean(values))
    half = scipy.stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / np.sqrt(2)
    assert summary["ci_high"] - summary["mean"] == pytest.approx(half)
    paired = data["arms"]["pada"]["paired_vs_baseline"]["kendall_tau"]
    assert paired["mean"] == pytest.approx(np.mean([taus[("pada", s)] - taus[("uniform", s)] for s in (0, 1)]))
    assert data["arms"]["uniform"]["paired_vs_baseline"] is None
    resolved = data["arms"]["pada"]["config"]  # each arm's resolved config: what the presets made of it
    assert resolved["strategy"]["name"] == "pada" and resolved["supernet"]["C"] == 4
    assert all(r["num_archs"] == 10 for r in data["runs"])  # dedup: the 10 trained networks
    assert (root / "results" / "tiny" / "runs" / "pada-s1.csv").is_file()
    assert data["environment"]["torch"] and data["command"].startswith("nas study")


def test_a_rerun_trains_nothing(finished_study, monkeypatch):
    _, path = finished_study
    monkeypatch.setattr(pipeline, "run_search", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert main(["study", str(path), "--quiet"]) == 0


def test_report_renders_the_study_and_check_catches_drift(finished_study, tmp_path):
    root, _ = finished_study
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- report:study:tiny -->\nstale\n<!-- /report -->\nend\n")
    results = root / "results"
    assert reports.main(["--readme", str(readme), "--results", str(results), "--check"]) == 1
    assert reports.main(["--readme", str(readme), "--results", str(results)]) == 0
    text = readme.read_text()
    assert "| pada |" in text and "(baseline)" in text and text.endswith("<!-- /report -->\nend\n")
    assert reports.main(["--readme", str(readme), "--results", str(results), "--check"]) == 0
    assert (results / "tiny" / "kendall_tau.png").is_file()


def test_bad_specs_are_refused_in_one_line(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"arms": {"a": {"strategy.name": "nope"}}, "seeds": [0, 1],
                                    "rank": {"benchmark": "nb201"}}))
    assert main(["study", str(spec)]) == 2
    assert "unknown strategy" in capsys.readouterr().err
    spec.write_text(yaml.safe_dump({"arms": {"a": {}}, "seeds": [0], "rank": {"benchmark": "nb201"}}))
    assert main(["study", str(spec)]) == 2
    assert "at least two distinct" in capsys.readouterr().err
    assert main(["study", "no-such-study"]) == 2


def test_mean_interval_and_paired_difference_edge_cases():
    assert study.mean_interval([])["mean"] is None
    assert study.mean_interval([0.5])["ci_low"] is None
    same = study.paired_difference({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})
    assert same["mean"] == pytest.approx(0.1) and same["p_value"] is None  # constant differences: no test


def test_report_curves_and_pada_sections_come_from_the_runs(finished_study, tmp_path):
    import csv

    root, _ = finished_study
    results = root / "results"
    curves = reports.curves_section("tiny", results)
    last = {}
    for arm in ("uniform", "pada"):
        accs = []
        for seed in (0, 1):
            with open(results / "tiny" / "runs" / f"{arm}-s{seed}.csv", newline="") as fh:
                accs.append(float(list(csv.DictReader(fh))[-1]["train_acc"]))
        last[arm] = np.mean(accs)
        row = next(line for line in curves.splitlines() if line.startswith(f"| {arm} |"))
        assert row.split(" | ")[3].startswith(f"{last[arm]:.1f}")  # mean over seeds of the last epoch's train acc
    assert (results / "tiny" / "curves.png").is_file()
    pada = reports.pada_section("tiny", results)
    rows = [line for line in pada.splitlines() if line.startswith("| ") and not line.startswith("| arm")]
    assert [r.split(" | ")[0] for r in rows] == ["| pada"]  # only the PA&DA arms
    probs = [float(v) for v in rows[0].split(" | ")[1].split(" / ")]
    assert sum(probs) == pytest.approx(1.0, abs=0.01) and (results / "tiny" / "pada.png").is_file()


def test_study_json_names_a_shipped_spec_the_same_on_every_checkout(tmp_path):
    from nas import config as cfg

    shipped = cfg.presets_dir() / "studies" / "samplers_nb201_digits.yaml"
    assert study._portable(str(shipped)) == "configs/studies/samplers_nb201_digits.yaml"
    assert study._portable(str(shipped.resolve())) == "configs/studies/samplers_nb201_digits.yaml"
    own = tmp_path / "mine.yaml"
    assert study._portable(str(own)) == str(own)


@pytest.mark.slow
def test_pick_study_judges_each_runs_arch_by_the_benchmark(tmp_path):
    """A pick study (no ranking): every run's derived arch gets the benchmark's accuracy, from the table when the
    table has it, else by training it stand-alone with the benchmark's own protocol and seeds; the paired
    comparison is on that accuracy, and the report says how many picks were trained."""
    import nasbench
    from nas.standalone import StandaloneSettings, train_arch

    bench = tmp_path / "bench"
    assert main(["bench", "build", "--archs", "6", "--unique", "--seeds", "0,1", "--multi-seed-archs", "2",
                 "--out", str(bench), *TINY_BUILD]) == 0
    spec = {
        "name": "picks",
        "base": {"set": {"space.name": "nb201", "data.name": "digits", "train.epochs": 1, "supernet.C": 4,
                         "supernet.N": 1, "train.batch_size": 128, "search.method": "none",
                         "eval.monitor_archs": 0, "eval.sample_check": 0}},
        "arms": {"darts": {"strategy.name": "darts"},
                 "darts-entangle": {"strategy.name": "darts", "supernet.mode": "entangle"}},
        "seeds": [0, 1],
        "pick": {"benchmark": str(bench)},
        "runs_dir": str(tmp_path / "runs"),
        "results_dir": str(tmp_path / "results"),
    }
    path = tmp_path / "picks.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["study", str(path), "--quiet"]) == 0
    data = json.loads((tmp_path / "results" / "picks" / "study.json").read_text())
    assert data["metrics"] == ["picked_acc"] and data["headline"] == "picked_acc" and not data["rank"]
    table = nasbench.load(str(bench))
    meta = json.loads((bench / "meta.json").read_text())
    for run in data["runs"]:
        arch = json.loads((tmp_path / "runs" / "picks" / f"{run['arm']}-s{run['seed']}" / "arch.json").read_text())
        assert run["pick"]["arch"] == arch["arch"]
        if arch["arch"] in table:
            assert run["pick"]["source"] == "table"
            assert run["metrics"]["picked_acc"] == table.query(arch["arch"], "digits", "test_acc")
        else:  # trained with the benchmark's protocol: the same figure a rebuild of it would give
            assert run["pick"]["source"] == "trained" and run["pick"]["seeds"] == [0, 1]
            again = [train_arch(arch["arch"], StandaloneSettings(**{**meta["training"], "seed": s}))["test_acc"]
                     for s in (0, 1)]
            assert run["metrics"]["picked_acc"] == pytest.approx(np.mean(again))
    values = {(r["arm"], r["seed"]): r["metrics"]["picked_acc"] for r in data["runs"]}
    paired = data["arms"]["darts-entangle"]["paired_vs_baseline"]["picked_acc"]
    assert paired["mean"] == pytest.approx(np.mean([values[("darts-entangle", s)] - values[("darts", s)]
                                                    for s in (0, 1)]))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- report:study:picks -->\n<!-- /report -->\n")
    assert reports.main(["--readme", str(readme), "--results", str(tmp_path / "results")]) == 0
    text = readme.read_text()
    assert "picked arch: benchmark accuracy" in text and "| darts-entangle |" in text
    trained = sum(r["pick"]["source"] == "trained" for r in data["runs"])
    assert f"{trained} of 4 picks are not in the table" in text

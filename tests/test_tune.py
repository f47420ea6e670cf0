"""`nas tune` and `nas bench build --tune` on a local Ray: results table, best trial, a trial that fails once and
resumes from its checkpoint, a sweep interrupted with Ctrl-C and resumed, sweep-file validation.

Ray needs the same RAY_AUTH_MODE in every process of a cluster; these tests set it (and the one-thread pins of
conftest) themselves, for this process and for the subprocesses and Ray workers they start, so the user's
environment does not matter. Every Ray a test starts is shut down by that test or its fixture.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import nasbench
from nas.cli import main

# One local Ray cluster at a time: under pytest-xdist these tests share one worker.
pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parent.parent
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
TINY = {"supernet.C": 4, "supernet.N": 1, "train.batch_size": 128, "eval.monitor_archs": 0, "eval.sample_check": 0,
        "search.budget": 4, "train.threads": 1}
TINY_BUILD = ["--set", "C=4", "--set", "N=1", "--set", "batch_size=128", "--quiet"]


def write_sweep(path: Path, storage: Path, **fields) -> Path:
    """A sweep file on the tiny digits base, `fields` added or replacing the defaults."""
    epochs = fields.pop("epochs", 2)
    sweep = {"base": {"config": ["digits_quick"], "set": {**TINY, "train.epochs": epochs}},
             "params": {"seed": [0]}, "storage_path": str(storage), **fields}
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for this module's in-process runs (`nas tune` uses an initialised Ray)."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.mark.slow
def test_autodistil_superlms_run_as_parallel_trials_one_sub_space_each(local_ray, tmp_path):
    """AutoDistil's K SuperLMs are independent jobs: a sweep over strategy.subspaces runs each as a trial that
    trains its SuperLM and picks its own student; the best is the lowest held-out distillation loss."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(["the cat sat on the mat and the dog ran to it"] * 400) + "\n")
    small = {"strategy.teacher_layers": 4, "strategy.teacher_hidden": 48, "strategy.teacher_heads": 4,
             "strategy.teacher_head_size": 12, "strategy.teacher_ffn": 192, "strategy.teacher_steps": 10,
             "strategy.vocab_size": 100, "strategy.seq_len": 16, "strategy.epoch_steps": 3,
             "strategy.eval_sequences": 16, "search.budget": 3, "train.batch_size": 8, "train.epochs": 2,
             "train.threads": 1, "data.path": str(corpus)}
    sweep = tmp_path / "ad.yaml"
    sweep.write_text(yaml.safe_dump({"base": {"set": {"space.name": "transformer", "strategy.name": "autodistil",
                                                      **small}},
                                     "params": {"strategy.subspaces": ["small", "tiny"]},
                                     "storage_path": str(tmp_path / "store"), "name": "ad"}, sort_keys=False))
    assert main(["tune", str(sweep), "--quiet"]) == 0
    rows = read_csv(tmp_path / "store" / "ad" / "results.csv")
    assert sorted(r["config/strategy.subspaces"] for r in rows) == ["small", "tiny"]
    for row in rows:
        arch = json.loads((Path(row["run_dir"]) / "arch.json").read_text())
        assert row["status"] == "complete" and arch["subspace"] == row["config/strategy.subspaces"]
        assert float(row["best_score"]) == pytest.approx(arch["score"], rel=1e-5)  # results.csv rounds
    best = json.loads((tmp_path / "store" / "ad" / "best.json").read_text())
    assert best["mode"] == "min" and best["trial_id"] == min(rows, key=lambda r: float(r["best_score"]))["trial_id"]


@pytest.mark.slow
def test_sweep_of_four_trials_writes_results_and_names_the_best(local_ray, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "four.yaml", tmp_path / "store", name="four",
                        params={"strategy.name": ["uniform", "pada"], "seed": [0, 1]},
                        metric="best_score", mode="max")
    assert main(["tune", str(sweep)]) == 0
    out = tmp_path / "store" / "four"
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and all(r["status"] == "complete" for r in rows)
    combos = sorted((r["config/strategy.name"], r["config/seed"]) for r in rows)
    assert combos == [("pada", "0"), ("pada", "1"), ("uniform", "0"), ("uniform", "1")]
    for row in rows:
        assert row["epoch"] == "2" and math.isfinite(float(row["train_loss"])) and row["best_arch"].startswith("|")
        assert 0 <= float(row["best_score"]) <= 100 and row["error"] == ""
        run = Path(row["run_dir"])  # the trial's own run directory, as nas search writes it
        assert len(read_csv(run / "metrics.csv")) == 2 and (run / "arch.json").is_file()
        assert json.loads((run / "summary.json").read_text())["status"] == "complete"
    best = max(rows, key=lambda r: float(r["best_score"]))
    named = json.loads((out / "best.json").read_text())
    assert named["trial_id"] == best["trial_id"] and named["metric"] == "best_score"
    assert f"best trial {best['trial_id']}" in capsys.readouterr().err
    assert (out / "results.png").stat().st_size > 10_000
    kinds = [(e["event"], e["trial_id"]) for e in events(out / "events.jsonl")]
    assert sorted(k for k, _ in kinds) == ["complete"] * 4 + ["start"] * 4
    # the experiment exists: starting it again is refused, --resume is the way on
    assert main(["tune", str(sweep)]) == 2
    assert "continue it with --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failed_trial_resumes_from_its_checkpoint_with_the_weights_of_an_uninterrupted_run(
        local_ray, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "crash.yaml", tmp_path / "store", name="crash", epochs=4,
                        inject_failure={"after_epoch": 2}, failure={"max_failures": 1})
    assert main(["tune", str(sweep)]) == 0
    out = tmp_path / "store" / "crash"
    (row,) = read_csv(out / "results.csv")
    assert row["status"] == "complete" and row["attempts"] == "2"
    trial_dir = Path(row["run_dir"]).parent
    progress = [r for r in read_csv(trial_dir / "progress.csv") if r["phase"] == "train"]
    assert [r["epoch"] for r in progress] == ["1", "2", "3", "4"]  # each epoch once, in order
    assert [r["start_epoch"] for r in progress] == ["0", "0", "2", "2"]  # the retry started at epoch 3
    assert [r["attempt"] for r in progress] == ["1", "1", "2", "2"]
    retries = [e for e in events(out / "events.jsonl") if e["event"] == "retry"]
    assert len(retries) == 1 and "inject_failure.after_epoch=2" in retries[0]["error"]
    assert "failed (nas.tune.InjectedFailure" in capsys.readouterr().err

    run = Path(row["run_dir"])
    plain = tmp_path / "plain"
    assert main(["search", "--config", str(run / "config.yaml"), "--out", str(plain), "--quiet"]) == 0
    resumed = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    uninterrupted = torch.load(plain / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["epoch"] == uninterrupted["epoch"] == 4
    assert resumed["model"].keys() == uninterrupted["model"].keys()
    assert all(torch.equal(resumed["model"][k], uninterrupted["model"][k]) for k in resumed["model"])
    assert json.loads((run / "arch.json").read_text())["arch"] == json.loads((plain / "arch.json").read_text())["arch"]


@pytest.mark.slow
def test_bench_build_with_tune_matches_the_plain_build_and_skips_finished_archs(local_ray, tmp_path):
    tuned, plain = tmp_path / "tuned", tmp_path / "plain"
    common = ["--archs", "3", "--epochs", "1", *TINY_BUILD]
    assert main(["bench", "build", "--tune", "--out", str(tuned), *common]) == 0
    assert main(["bench", "build", "--out", str(plain), *common]) == 0
    assert (tuned / "table.csv").read_text() == (plain / "table.csv").read_text()
    meta_t, meta_p = (json.loads((d / "meta.json").read_text()) for d in (tuned, plain))
    assert meta_t.keys() == meta_p.keys() and meta_t["training"] == meta_p["training"]
    for result in (plain / "results").glob("*.json"):
        mine, theirs = json.loads((tuned / "results" / result.name).read_text()), json.loads(result.read_text())
        assert mine.keys() == theirs.keys()
        assert {k: v for k, v in mine.items() if k != "seconds"} == {k: v for k, v in theirs.items() if k != "seconds"}
    assert len(nasbench.load(str(tuned))) == 3

    experiments = lambda: sorted(p.name for p in (tuned / "tune").iterdir() if p.is_dir())  # noqa: E731
    assert len(experiments()) == 1
    first = sorted((tuned / "results").glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in first}
    first[0].unlink()  # as if the build had been interrupted before this arch
    assert main(["bench", "build", "--tune", "--out", str(tuned), *common]) == 0
    latest = tuned / "tune" / experiments()[-1]
    assert len(experiments()) == 2 and len([p for p in latest.iterdir() if p.is_dir()]) == 1  # one trial
    for path in first[1:]:
        assert path.stat().st_mtime_ns == stamps[path.name]  # finished archs were not retrained
    assert main(["bench", "build", "--tune", "--out", str(tuned), *common]) == 0
    assert len(experiments()) == 2  # nothing left to train: no trials at all


def test_a_trial_that_fits_no_node_is_refused_on_a_local_ray(local_ray, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "gpu.yaml", tmp_path / "store", resources={"cpus": 1, "gpus": 1})
    assert main(["tune", str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a trial asks for 1 CPU, 1 GPU, but no Ray node has that much" in err[0]


def _nas(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, **RAY_ENV, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nas", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_only_its_unfinished_trials(tmp_path):
    pytest.importorskip("ray")
    sweep = write_sweep(tmp_path / "resume.yaml", tmp_path / "store", name="resume", epochs=5,
                        params={"seed": [0, 1, 2, 3]}, max_concurrent_trials=1)
    out = tmp_path / "store" / "resume"
    first = _nas("tune", str(sweep))  # an embedded local Ray, stopped with Ctrl-C once a trial is done
    finished, seen = None, []
    try:
        deadline = time.monotonic() + 240
        for line in first.stderr:
            seen.append(line)
            if finished is None and " done: " in line:
                finished = line.split()[1]
            elif finished is not None and " epoch 2/5" in line:
                # The next trial is running and Tune holds its epoch-1 checkpoint (a trial reports epoch 2 only
                # after Tune processed the checkpoint of epoch 1): interrupt it as Ctrl-C would.
                first.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, "".join(seen)
        rest = first.communicate(timeout=120)[1]
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130, "".join(seen) + rest
    assert "continue with: nas tune" in rest and "--resume" in rest
    before = {r["trial_id"]: r for r in read_csv(out / "results.csv")}
    done_before = {t for t, r in before.items() if r["status"] == "complete"}
    (interrupted,) = (t for t, r in before.items() if r["status"] == "unfinished")
    assert done_before == {finished} and int(before[interrupted]["epoch"]) >= 2
    started_before = len(events(out / "events.jsonl"))

    second = _nas("tune", str(sweep), "--resume")
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    after = read_csv(out / "results.csv")
    assert len(after) == 4 and all(r["status"] == "complete" for r in after)
    rerun = {e["trial_id"] for e in events(out / "events.jsonl")[started_before:] if e["event"] == "start"}
    assert rerun == {r["trial_id"] for r in after} - done_before  # finished trials did not run again, the rest did
    for row in after:
        progress = [r for r in read_csv(Path(row["run_dir"]).parent / "progress.csv") if r["phase"] == "train"]
        epochs = [int(r["epoch"]) for r in progress]
        assert row["attempts"] == ("2" if row["trial_id"] == interrupted else "1")
        if row["trial_id"] != interrupted:
            assert epochs == list(range(1, 6)), (row["trial_id"], epochs)  # each epoch once, in order
            continue
        # The interrupted trial continued from its last checkpoint, not from scratch. Tune logs a result before
        # it registers the checkpoint that came with it, so an epoch reported in that window is trained again.
        first_try = [int(r["epoch"]) for r in progress if r["attempt"] == "1"]
        resumed = [(int(r["epoch"]), int(r["start_epoch"])) for r in progress if r["attempt"] == "2"]
        start = resumed[0][1]
        assert 1 <= start <= first_try[-1] and first_try == list(range(1, first_try[-1] + 1))
        assert resumed == [(e, start) for e in range(start + 1, 6)], resumed
    # a changed sweep file is not resumed into the old experiment
    changed = yaml.safe_load(sweep.read_text())
    changed["params"]["seed"].append(4)
    sweep.write_text(yaml.safe_dump(changed))
    third = _nas("tune", str(sweep), "--resume")
    assert third.communicate(timeout=120)[1].strip().endswith("start a new sweep under another name")
    assert third.returncode == 2


@pytest.mark.parametrize("content, fragment", [
    ({"params": {"seed": [0]}}, "the sweep file has no base"),
    ({"base": {}, "params": {"seed": [0]}, "paramz": 1}, "unknown sweep key 'paramz' (did you mean params?)"),
    ({"base": {}}, "the sweep file has no params"),
    ({"base": {}, "params": {"train.lrr": [0.1]}}, "unknown config key 'train.lrr' (did you mean train.lr?)"),
    ({"base": {}, "params": {"train.lr": ["fast"]}}, "train.lr='fast' is not valid"),
    ({"base": {}, "params": {"train.lr": {"uniform": [0.1]}}}, "uniform takes [low, high] with low < high"),
    ({"base": {}, "params": {"train.lr": 0.1}}, "fixed values belong in base.set"),
    ({"base": {"config": ["nope"]}, "params": {"seed": [0]}}, "config 'nope' is neither a file nor a preset"),
    ({"base": {}, "params": {"seed": [0]}, "resources": {"gpus": -1}}, "resources.gpus=-1 is not valid"),
    ({"base": {}, "params": {"seed": [0]}, "resources": {"cpu": 1}}, "unknown sweep key 'cpu' (did you mean cpus?)"),
    ({"base": {}, "params": {"seed": [0]}, "resources": {"cpus": 0}}, "resources.cpus=0 is not valid"),
    ({"base": {}, "params": {"seed": [0]}, "mode": "best"}, "mode='best' is not valid; accepted: min, max"),
    ({"base": {}, "params": {"seed": [0]}, "failure": {"on_resume": "retry"}}, "failure.on_resume='retry'"),
    ({"base": {}, "params": {"seed": [0]}, "failure": {"max_failures": -2}}, "failure.max_failures=-2"),
    ({"base": {"set": {"strategy.name": "pada", "strategy.param_free": "zero"}},
      "params": {"strategy.name": ["pada", "uniform"]}}, "(sweep trial strategy.name='uniform')"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys, content, fragment):
    pytest.importorskip("ray")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("nas: error:"), err


def test_missing_sweeps_and_resumes_are_one_line_errors(tmp_path, capsys):
    pytest.importorskip("ray")
    assert main(["tune", "no-such-sweep"]) == 2
    err = capsys.readouterr().err
    assert "shipped sweeps: " in err and "digits_smoke" in err.partition("shipped sweeps: ")[2]
    sweep = write_sweep(tmp_path / "s.yaml", tmp_path / "store")
    assert main(["tune", str(sweep), "--resume"]) == 2
    assert "there is no sweep to resume at" in capsys.readouterr().err


def test_shipped_sweeps_are_valid_and_listed(capsys):
    from nas import sweep

    names = sweep.shipped_sweeps()
    assert {"digits_smoke", "strategies_nb201", "strategies_nb201_cifar10"} <= set(names)
    loaded = {name: sweep.load_sweep(name) for name in names}  # every grid combination resolves
    gpu = loaded["strategies_nb201_cifar10"]
    assert gpu.resources.gpus == 1 and gpu.metric == "kendall_tau" and gpu.remote_storage and gpu.total_trials == 6
    pada = gpu.resolve({"strategy": {"name": "pada", "param_free": "zero"}, "seed": 2})["strategy"]
    assert pada["name"] == "pada" and pada["param_free"] == "zero" and pada["granularity"] == "op_type"
    smoke = sweep.load_sweep("digits_smoke")
    assert [(p.key, p.values) for p in smoke.params] == [("strategy.name", ("uniform", "pada")), ("seed", (0, 1))]
    grid = sweep.load_sweep("strategies_nb201")
    assert math.prod(len(p.values) for p in grid.params) == 6 and grid.metric == "kendall_tau"
    assert main(["list"]) == 0
    listed = capsys.readouterr().out.partition("sweeps (nas tune NAME):\n")[2]
    assert "\n  digits_smoke" in "\n" + listed


def test_nas_search_never_imports_ray_and_nas_tune_without_ray_says_how_to_install():
    code = "import sys, nas.cli, nas.pipeline, nas.benchbuild, nas.sweep; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
    code = ("import sys; sys.modules['ray'] = None\n"
            "from nas.cli import main; sys.exit(main(['tune', 'digits_smoke']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["nas: error: Ray Tune is not installed; pip install "
                                                  "'supernas[tune]' to use nas tune and nas bench build --tune"]


def test_the_cluster_file_is_valid_for_ray_up():
    pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "configs" / "ray" / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # Ray's own schema of `ray up` files
    assert any("-e \"$HOME/supernas[tune]\"" in c and "torch==" in c for c in config["setup_commands"])
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "--head" in c)
    gpu = config["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]
    assert gpu.startswith(("g", "p"))  # an AWS GPU instance family

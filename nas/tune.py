"""`nas tune` and `nas bench build --tune`: trials spread over the CPUs and GPUs of a Ray cluster by Ray Tune.

A sweep (`nas.sweep`) becomes one Tune trial per parameter combination. Each trial runs the engine of
`nas search` (`pipeline.run_search`) in a run directory inside its Tune working directory and, after every
epoch, reports the epoch's metrics with a Tune checkpoint that holds the whole run directory (resolved
config, metrics, `checkpoints/last.pt`). A trial that fails is restarted by Tune (`FailureConfig`) from its
last checkpoint: the run directory is restored from it and the engine's own resume machinery continues at
the next epoch, so the retried trial ends with the weights of an uninterrupted one. After training the trial
reports once more (`phase: search`) with the arch it picked. An interrupted sweep continues with
`Tuner.restore`, which runs only the unfinished (and, by the sweep's policy, failed) trials.

The driver writes, into the sweep's results folder: `results.csv` (one row per trial: status, parameter
values, last metrics, where its run directory is), `results.png` (loss curves and the sweep metric per
trial), `best.json` and `events.jsonl` (trial starts, retries, errors and completions, in order).

Ray is imported by this module only; nothing else in `nas` imports it, so `nas search` works without Ray.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rundir
from .errors import UserError
from .io import atomic_write_json, atomic_write_rows
from .progress import Reporter
from .sweep import Sweep, describe, environment_passthrough, value_text

try:  # the optional extra: pip install 'supernas[tune]'
    import ray
    from ray import tune
except ImportError:  # pragma: no cover - exercised in a subprocess without ray
    ray = tune = None

INSTALL_HINT = "Ray Tune is not installed; pip install 'supernas[tune]' to use nas tune and nas bench build --tune"
RUN_DIR = "run"  # the trial's run directory, inside its Tune working directory
TRIAL_STATE = "tune_trial.json"
RESULTS_CSV, RESULTS_PNG, BEST_JSON, EVENTS, SWEEP_JSON = (
    "results.csv", "results.png", "best.json", "events.jsonl", "sweep.json")
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "monitor_acc", "kendall_tau", "best_score", "best_test_acc",
                  "best_arch")
_CallbackBase: type = tune.Callback if tune is not None else object
_console: Reporter | None = None  # where the driver-side callbacks print (set per invocation; not pickled)


def require_ray() -> None:
    """Raise a one-sentence `UserError` when the `tune` extra is not installed."""
    if ray is None:
        raise UserError(INSTALL_HINT)


def _say(message: str) -> None:
    if _console is not None:
        _console.info(message)


# --- the Ray session ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address: str | None, trial_cpus: float = 1.0) -> Iterator[bool]:
    """Join the cluster at `address` (`auto` or HOST:PORT), or start an embedded local Ray sized to this machine
    (no dashboard); an already initialised Ray (a notebook, a test) is used as it is. Yields whether this call
    started a Ray that it stops at the end.

    Trial processes get OMP_NUM_THREADS (the driver's, else the trial's CPU count: OpenMP threads beyond the
    CPUs a trial holds only contend) and the driver's SUPERNAS_* variables through the job's runtime_env."""
    require_ray()
    # Progress comes from SweepEvents; Tune's own tables (its new console output ignores verbose=0) and its
    # advice to checkpoint less often (fast epochs checkpoint often) are noise here.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        yield False
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # an implicitly started Ray reports nothing home
    env = environment_passthrough()
    env.setdefault("OMP_NUM_THREADS", str(max(1, int(trial_cpus))))
    options: dict[str, Any] = dict(runtime_env={"env_vars": env}, log_to_driver=False,
                                   logging_level=logging.WARNING)
    if address:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"cannot join the Ray cluster at --address {address} ({reason}); start one with "
                            "`ray start --head` or `ray up`, or drop --address for a local Ray") from None
    else:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        ray.init(num_cpus=cpus, include_dashboard=False, **options)
    try:
        yield True
    finally:
        ray.shutdown()


def check_resources(request: Mapping[str, float], local: bool, reporter: Reporter) -> None:
    """A trial must fit on one node; on a local Ray that is an error, on a cluster a warning (an autoscaler may
    still add such a node)."""
    need = {("CPU" if k == "cpu" else "GPU" if k == "gpu" else k): v for k, v in request.items() if v > 0}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
        return
    asked = ", ".join(f"{v:g} {k}" for k, v in need.items())
    have = "; ".join(", ".join(f"{node.get(k, 0):g} {k}" for k in need) for node in nodes) or "no nodes"
    message = f"a trial asks for {asked}, but no Ray node has that much (nodes: {have})"
    if local:
        raise UserError(f"{message}; lower the per-trial resources or join a larger cluster with --address")
    reporter.info(f"warning: {message}; trials wait until the cluster has such a node")


# --- one trial of a sweep ----------------------------------------------------------------------------------
class InjectedFailure(RuntimeError):
    """The failure `inject_failure.after_epoch` asks for, to check that a cluster resumes failed trials."""


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the snapshot only lives until tune.report has copied it to the storage
    except OSError:
        shutil.copy2(src, dst)


def _snapshot(run_path: Path, target: Path) -> None:
    shutil.copytree(run_path, target, dirs_exist_ok=True, copy_function=_link_or_copy)


def _reportable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def search_trial(params: dict[str, Any], sweep: Sweep) -> None:
    """One Ray Tune trial: `nas search` on the sweep's base config with `params`.

    Reports every epoch with a checkpoint of the whole run directory; when Tune restarts the trial after a
    failure, `tune.get_checkpoint()` restores that directory and the engine resumes after its last epoch."""
    from . import pipeline

    config = sweep.resolve(params)
    train = config["train"]
    if train["device"] == "auto":  # the GPUs Ray gave this trial, not every GPU of the node
        train["device"] = "cuda" if ray.get_gpu_ids() else "cpu"
    if not train["threads"]:
        train["threads"] = max(1, int(sweep.resources.cpus))
    run_path = Path.cwd() / RUN_DIR
    shutil.rmtree(run_path, ignore_errors=True)  # a retry on the same node finds the failed attempt's files
    checkpoint = tune.get_checkpoint()
    start_epoch = 0
    if checkpoint is not None:
        checkpoint.to_directory(str(run_path))
        start_epoch = json.loads((run_path / TRIAL_STATE).read_text())["epoch"]
    else:
        rundir.create(run_path, config)
    node_id = ray.get_runtime_context().get_node_id()
    epochs = train["epochs"]

    def report(rows: list[dict[str, Any]], epoch: int, extra: Mapping[str, Any]) -> None:
        history = json.loads((run_path / "environment.json").read_text())
        metrics = {**(rows[-1] if rows else {}), "epoch": epoch, "epochs": epochs, "start_epoch": start_epoch,
                   "attempt": len(history), "node_id": node_id, **extra}
        atomic_write_json(run_path / TRIAL_STATE, {"epoch": epoch, "phase": metrics["phase"]})
        with tempfile.TemporaryDirectory(prefix="nas-tune-") as tmp:
            _snapshot(run_path, Path(tmp))
            tune.report(_reportable(metrics), checkpoint=tune.Checkpoint.from_directory(tmp))

    last_rows: list[dict[str, Any]] = []

    def on_epoch(state) -> None:
        last_rows[:] = state.rows
        report(state.rows, state.epoch, {"phase": "train"})
        if sweep.fail_after_epoch == state.epoch and checkpoint is None:
            raise InjectedFailure(f"inject_failure.after_epoch={state.epoch}: this trial fails once, as asked")

    argv = ["tune", sweep.source or sweep.name, "--trial", tune.get_context().get_trial_id()]
    summary = pipeline.run_search(config, run_path, argv, quiet=True, resume=checkpoint is not None,
                                  on_epoch=on_epoch)
    rows = last_rows or _read_metrics(run_path)  # no epoch left to train: the rows of the restored run
    report(rows, summary["epochs"], {"phase": "search", "best_arch": summary["best_arch"],
                                     "best_score": summary["best_score"],
                                     "best_test_acc": summary["best_test_acc_inherited"]})


def _read_metrics(run_path: Path) -> list[dict[str, Any]]:
    path = run_path / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: _number_or_text(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _number_or_text(value: str) -> Any:
    try:
        number = float(value)
    except ValueError:
        return value if value != "" else None
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


# --- driver-side callbacks ---------------------------------------------------------------------------------
class SweepEvents(_CallbackBase):
    """Appends trial starts, retries, errors and completions to `events.jsonl` and prints progress lines.

    Tune pickles its callbacks into the experiment state and hands the unpickled copy back on restore, so this
    holds only a path; the console it prints to is the current invocation's."""

    def __init__(self, events_path: str):
        self.events_path = events_path

    def _event(self, event: str, trial, **extra: Any) -> None:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, "trial_id": trial.trial_id,
                "params": dict(trial.config), **extra}
        Path(self.events_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.events_path, "a") as fh:  # one short line per append: an append-only log
            fh.write(json.dumps(line, default=str) + "\n")

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._event("start", trial)
        _say(f"trial {trial.trial_id} started: {describe(trial.config)}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        error = _error_line(trial)
        self._event("retry", trial, error=error)
        _say(f"trial {trial.trial_id} failed ({error}); Tune restarts it from its last checkpoint")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        if result.get("phase") == "search":
            score = result.get("best_score")
            _say(f"trial {trial.trial_id} done: {result.get('epoch')} epochs, loss {result.get('train_loss', 0):.4f}"
                 + (f", best arch {score:.2f}%" if isinstance(score, (int, float)) else ""))
        else:
            tau = result.get("kendall_tau")
            _say(f"trial {trial.trial_id} epoch {result.get('epoch')}/{result.get('epochs')}  "
                 f"loss {result.get('train_loss', float('nan')):.4f}"
                 + (f"  kendall tau {tau:.3f}" if isinstance(tau, (int, float)) else ""))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._event("complete", trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        error = _error_line(trial)
        self._event("error", trial, error=error)
        _say(f"trial {trial.trial_id} failed for good: {error}")


def _error_line(trial) -> str:
    """The last line of a trial's latest error (Tune keeps it pickled, as text, or in the driver's staging)."""
    sources = (trial.get_pickled_error, trial.get_error, lambda: Path(trial.error_file).read_text())
    for source in sources:
        try:
            error = source()
        except Exception:  # noqa: BLE001 - the message is informative only; try the next source
            continue
        if error:
            return _last_line(error)
    return "unknown error"


def _last_line(error: Any) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(error).__name__


def _trial_dirname(trial) -> str:
    return f"{trial.trainable_name}_{trial.trial_id}"


# --- the sweep driver --------------------------------------------------------------------------------------
@dataclass
class SweepOutcome:
    """What `run_sweep` leaves behind."""

    results_dir: Path
    table: list[dict[str, Any]]
    best: dict[str, Any] | None
    complete: int
    errored: int
    unfinished: int

    @property
    def interrupted(self) -> bool:
        return self.unfinished > 0


def param_space(sweep: Sweep) -> dict[str, Any]:
    """The sweep's params as a Tune search space (a list or `grid` is a grid search)."""
    make = {"grid": lambda v: tune.grid_search(list(v)), "choice": lambda v: tune.choice(list(v)),
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(*v)}
    return {p.key: make[p.kind](p.values) for p in sweep.params}


def _check_experiment(sweep: Sweep, resume: bool) -> None:
    try:
        exists = tune.Tuner.can_restore(sweep.experiment_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read storage_path {sweep.storage_path} ({_last_line(exc)}); check the path or the "
                        "storage credentials") from None
    if resume and not exists:
        raise UserError(f"there is no sweep to resume at {sweep.experiment_path}; start it without --resume")
    if not resume and exists:
        raise UserError(f"{sweep.experiment_path} already holds sweep {sweep.name!r}; continue it with --resume, or "
                        "give the sweep another name or storage_path")
    saved = _read_saved_fingerprint(sweep) if resume else None
    if saved is not None and saved != json.loads(json.dumps(sweep.fingerprint())):
        raise UserError(f"the sweep file changed (base, params or num_samples) since sweep {sweep.name!r} started; "
                        "resume it with the file it started with, or start a new sweep under another name")


def _read_saved_fingerprint(sweep: Sweep) -> Any:
    local = sweep.results_dir / SWEEP_JSON
    if local.is_file():
        return json.loads(local.read_text())
    if sweep.remote_storage:  # resumed from another machine than the one that started the sweep
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(f"{sweep.experiment_path}/{SWEEP_JSON}")
        with contextlib.suppress(OSError), fs.open_input_stream(path) as fh:
            return json.loads(fh.readall())
    return None


def _upload(sweep: Sweep, names: tuple[str, ...]) -> None:
    """With a URI storage the results also go to the experiment folder there, beside Tune's own files."""
    import pyarrow.fs

    for name in names:
        local = sweep.results_dir / name
        if local.is_file():
            pyarrow.fs.copy_files(str(local), f"{sweep.experiment_path}/{name}")


def run_sweep(sweep: Sweep, address: str | None = None, resume: bool = False, quiet: bool = False) -> SweepOutcome:
    """Run (or with `resume`, continue) a sweep as Ray Tune trials and write its results; see the module doc."""
    global _console
    require_ray()
    reporter = Reporter(None, quiet=quiet)
    _check_experiment(sweep, resume)
    results_dir = sweep.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    with ray_session(address, sweep.resources.cpus):
        check_resources(sweep.resources.as_ray(), local=not address, reporter=reporter)
        trainable = tune.with_resources(tune.with_parameters(search_trial, sweep=sweep), sweep.resources.as_ray())
        if resume:
            tuner = tune.Tuner.restore(sweep.experiment_path, trainable, resume_unfinished=True,
                                       resume_errored=sweep.on_resume == "resume",
                                       restart_errored=sweep.on_resume == "restart")
        else:
            atomic_write_json(results_dir / SWEEP_JSON, sweep.fingerprint())
            tuner = tune.Tuner(
                trainable, param_space=param_space(sweep),
                tune_config=tune.TuneConfig(num_samples=sweep.num_samples,
                                            max_concurrent_trials=sweep.max_concurrent_trials,
                                            trial_dirname_creator=_trial_dirname, reuse_actors=True),
                run_config=tune.RunConfig(
                    name=sweep.name, storage_path=sweep.storage_path, verbose=0,
                    failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    sync_config=tune.SyncConfig(sync_artifacts=True),
                    callbacks=[SweepEvents(str(results_dir / EVENTS))]),
            )
        reporter.info(f"sweep {sweep.name}: {'resuming ' if resume else ''}trials of {describe_params(sweep)} on "
                      f"{'the Ray cluster at ' + address if address else 'a local Ray'}; storage "
                      f"{sweep.experiment_path}")
        _console = reporter
        try:
            grid = tuner.fit()
        finally:
            _console = None
    return write_results(sweep, grid, reporter)


def describe_params(sweep: Sweep) -> str:
    parts = [f"{p.key} ({p.kind} {list(p.values)})" for p in sweep.params]
    return ", ".join(parts) + (f" x {sweep.num_samples} samples" if sweep.num_samples > 1 else "")


def results_table(sweep: Sweep, grid) -> list[dict[str, Any]]:
    """One row per trial (by trial id): status, parameter values, last reported metrics, where its files are."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        params = result.config or {}
        if result.error is not None:
            status = "error"
        elif metrics.get("phase") == "search":
            status = "complete"
        else:
            status = "unfinished"
        dirname_id = "_".join(Path(result.path).name.split("_")[-2:])  # see _trial_dirname
        row: dict[str, Any] = {"trial_id": metrics.get("trial_id") or dirname_id,
                               "status": status}
        row.update({f"config/{p.key}": params.get(p.key) for p in sweep.params})
        row.update({key: metrics.get(key) for key in (*METRIC_COLUMNS, sweep.metric)})
        row["attempts"] = metrics.get("attempt")
        row["node_id"] = metrics.get("node_id")
        row["node_ip"] = metrics.get("node_ip")
        row["time_total_s"] = metrics.get("time_total_s")
        row["error"] = _last_line(result.error) if result.error is not None else None
        row["run_dir"] = f"{sweep.experiment_path}/{Path(result.path).name}/{RUN_DIR}"  # a URI for URI storage
        rows.append(row)
    return sorted(rows, key=lambda r: r["trial_id"])


def best_trial(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The complete trial with the best last value of `metric` (NaN and missing values never win)."""
    def usable(row: dict[str, Any]) -> bool:
        value = row.get(metric)
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    candidates = [r for r in rows if r["status"] == "complete" and usable(r)]
    if not candidates:
        return None
    pick = max if mode == "max" else min
    return pick(candidates, key=lambda r: r[metric])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_rows(path, rows, lambda v: "" if v is None else f"{v:.6g}" if isinstance(v, float) else
                      value_text(v) if isinstance(v, (dict, list)) else v)


def write_results(sweep: Sweep, grid, reporter: Reporter) -> SweepOutcome:
    """results.csv, results.png and best.json of a finished (or interrupted) sweep, and the closing lines."""
    rows = results_table(sweep, grid)
    results_dir = sweep.results_dir
    _write_csv(results_dir / RESULTS_CSV, rows)
    best = best_trial(rows, sweep.metric, sweep.mode)
    labels = {row["trial_id"]: describe({p.key: row[f"config/{p.key}"] for p in sweep.params}) for row in rows}
    if best is not None:
        atomic_write_json(results_dir / BEST_JSON, {"metric": sweep.metric, "mode": sweep.mode,
                                                    "value": best[sweep.metric], "trial_id": best["trial_id"],
                                                    "params": {p.key: best[f"config/{p.key}"] for p in sweep.params},
                                                    "run_dir": best["run_dir"], "best_arch": best.get("best_arch")})
    try:
        _plot(results_dir / RESULTS_PNG, sweep, grid, rows, labels, best)
    except Exception as exc:  # noqa: BLE001 - a figure must not cost the results table
        reporter.info(f"warning: no results.png ({type(exc).__name__}: {exc})")
    if sweep.remote_storage:
        try:
            _upload(sweep, (RESULTS_CSV, RESULTS_PNG, BEST_JSON, EVENTS, SWEEP_JSON))
        except OSError as exc:
            reporter.info(f"warning: results not copied to {sweep.experiment_path} ({_last_line(exc)}); they are in "
                          f"{results_dir}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("complete", "error")}
    # trials Tune had not created yet when the sweep was interrupted are not in `grid`
    counts["unfinished"] = max(0, sweep.total_trials - counts["complete"] - counts["error"])
    reporter.info(f"sweep {sweep.name}: {sweep.total_trials} trials, {counts['complete']} complete, "
                  f"{counts['error']} failed, {counts['unfinished']} unfinished; results {results_dir / RESULTS_CSV}")
    if best is not None:
        reporter.info(f"best trial {best['trial_id']} ({labels[best['trial_id']]}): {sweep.metric} "
                      f"{best[sweep.metric]:.4g} ({sweep.mode}); run directory {best['run_dir']}")
    elif counts["complete"]:
        reporter.info(f"no complete trial reported {sweep.metric!r}; set metric (and mode) in the sweep file")
    return SweepOutcome(results_dir, rows, best, counts["complete"], counts["error"], counts["unfinished"])


def _plot(path: Path, sweep: Sweep, grid, rows: list[dict[str, Any]], labels: dict[str, str],
          best: dict[str, Any] | None) -> None:
    from .plots import pyplot, save_figure

    plt = pyplot()
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None or "train_loss" not in frame or "epoch" not in frame:
            continue
        if "phase" in frame:
            frame = frame[frame["phase"] == "train"]
        # an epoch reported just before an interruption, whose checkpoint Tune had not saved, is trained again
        frame = frame.drop_duplicates("epoch", keep="last")
        trial_id = (result.metrics or {}).get("trial_id", "")
        curves.plot(frame["epoch"], frame["train_loss"], marker=".", label=labels.get(trial_id, trial_id))
    curves.set_xlabel("epoch")
    curves.xaxis.get_major_locator().set_params(integer=True)
    curves.set_ylabel("train loss")
    curves.grid(alpha=0.3)
    if len(rows) <= 12:
        curves.legend(fontsize=7)
    scored = [r for r in rows if isinstance(r.get(sweep.metric), (int, float))]
    names = [labels[r["trial_id"]] for r in scored]
    colors = ["tab:orange" if best is not None and r["trial_id"] == best["trial_id"] else "tab:blue" for r in scored]
    bars.barh(range(len(scored)), [r[sweep.metric] for r in scored], color=colors)
    bars.set_yticks(range(len(scored)), names, fontsize=7)
    bars.set_xlabel(f"{sweep.metric} (last value; {sweep.mode} is best)")
    bars.grid(alpha=0.3, axis="x")
    fig.suptitle(f"sweep {sweep.name}" + (f": best {labels[best['trial_id']]}" if best else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


# --- nas bench build --tune ------------------------------------------------------------------------------
def bench_trial(params: dict[str, Any], settings: dict[str, Any], threads: int) -> None:
    """One (arch, training seed) job of `nas bench build --tune`: train it stand-alone and report the result (one
    report)."""
    import torch

    from .standalone import train_arch

    job = params["job"]
    settings = {**settings, "seed": job["seed"]}
    if settings["device"] == "auto":  # the GPUs Ray gave this trial, not every GPU of the node
        settings = {**settings, "device": "cuda" if ray.get_gpu_ids() else "cpu"}
    torch.set_num_threads(threads)
    result = train_arch(job["arch"], settings)
    tune.report({"record": json.dumps(result), "test_acc": result["test_acc"], "seconds": result["seconds"]})


class BenchRecorder(_CallbackBase):
    """Hands every finished arch to `record` on the driver as soon as Tune receives it, so an interrupted build
    keeps it. `record` lives only in this invocation (Tune's pickled copy of this callback drops it)."""

    def __init__(self, record: Callable[[dict[str, Any]], None]):
        self.record: Callable[[dict[str, Any]], None] | None = record

    def __getstate__(self) -> dict[str, Any]:
        return {"record": None}

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        if self.record is not None and "record" in result:
            self.record(json.loads(result["record"]))

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        job = trial.config.get("job") or {}
        _say(f"arch {job.get('arch')} (seed {job.get('seed')}) failed ({_error_line(trial)}); Tune retries it")


def _fresh_name(storage: Path, base: str) -> str:
    name, suffix = base, 1
    while (storage / name).exists():
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def train_archs(jobs: list[tuple[str, int]], settings: dict[str, Any], record: Callable[[dict[str, Any]], None],
                storage: Path, address: str | None = None, cpus: float = 1.0, gpus: float = 0.0,
                max_concurrent: int | None = None, max_failures: int = 2, reporter: Reporter | None = None) -> None:
    """Train `jobs` (arch, training seed) as Tune trials (one job each) and `record` each result on the driver as it
    arrives.

    Raises KeyboardInterrupt when the run was interrupted and a `UserError` naming the first failure when an
    arch failed after `max_failures` retries; archs recorded so far are kept either way."""
    global _console
    require_ray()
    reporter = reporter or Reporter(quiet=True)
    request = {"cpu": cpus, "gpu": gpus}
    with ray_session(address, cpus):
        check_resources(request, local=not address, reporter=reporter)
        trainable = tune.with_resources(
            tune.with_parameters(bench_trial, settings=settings, threads=max(1, int(cpus))), request)
        tuner = tune.Tuner(
            trainable, param_space={"job": tune.grid_search([{"arch": a, "seed": seed} for a, seed in jobs])},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=_fresh_name(storage, time.strftime("build-%Y%m%d-%H%M%S")),
                                      storage_path=str(storage.resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=max_failures),
                                      callbacks=[BenchRecorder(record)]),
        )
        _console = reporter
        try:
            grid = tuner.fit()
        finally:
            _console = None
    errors = [r for r in grid if r.error is not None]
    if errors:
        raise UserError(f"{len(errors)} of {len(jobs)} archs failed after {max_failures} retries (first: "
                        f"{_last_line(errors[0].error)}); rerun the same command to retry them")
    if sum("record" in (r.metrics or {}) for r in grid) < len(jobs):
        raise KeyboardInterrupt  # Tune stopped on Ctrl-C; the archs recorded so far are kept

"""`nas study SPEC`: a ranking-consistency study — several arms (strategies or settings) x several seeds on one
benchmark, the same budget for every arm, and the statistics a claim needs.

A study spec (YAML, `configs/studies/`) names a base experiment (config presets and `--set` overrides, as a
sweep's `base`), the arms (each a set of overrides), the seeds, the benchmark ranking (`nas rank` options) and
the baseline arm. Every (arm, seed) is one `nas search` run under `runs/study/<name>/`, then one `nas rank`;
a rerun skips runs already ranked and resumes interrupted ones (`--resume` of the search). Jobs run one after
another, or in `--workers` processes of one thread each.

The result is `results/<name>/study.json`: the spec, the command, git SHA and versions, every run's metrics,
per arm the mean with a 95 % t-interval over seeds, the paired differences against the baseline (same seed:
same data order, same initial weights) with their intervals and a paired t-test, and the benchmark's noise
ceiling (the Kendall tau between two stand-alone training seeds). Each run's `metrics.csv` is kept beside it
(`results/<name>/runs/`), so per-epoch evidence (e.g. PA&DA's path distribution) survives the run directories.
The README's tables are generated from these files by `python -m nas.report`.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import config as cfg
from .errors import UserError
from .io import atomic_write_json

METRICS: tuple[str, ...] = ("kendall_tau", "spearman", "precision_at_5pct", "precision_at_10pct", "top1_regret")
STUDY_FILE = "study.json"
SPEC_KEYS = ("name", "description", "base", "arms", "seeds", "rank", "baseline", "runs_dir", "results_dir")
RANK_KEYS = ("benchmark", "dataset", "metric", "archs", "split", "dedup", "bn_mode", "eval_batch_size", "bootstrap")


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    """A parsed, validated study spec."""

    name: str
    description: str
    base_config: tuple[str, ...]
    base_overrides: tuple[str, ...]
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    rank: dict[str, Any]
    baseline: str
    runs_dir: Path
    results_dir: Path
    source: str

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.runs_dir / self.name / f"{arm}-s{seed}"

    def resolve(self, arm: Arm, seed: int) -> dict:
        """The validated config of one run: base, then the arm's overrides, then the seed."""
        return cfg.resolve(self.base_config, {"seed": seed}, [*self.base_overrides, *arm.overrides])


def _overrides(values: Any, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, Mapping):
        raise UserError(f"{where} must be a mapping of dotted config keys to values, got {values!r}")
    return tuple(f"{key}={_yaml_value(value)}" for key, value in values.items())


def _yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def find_study_file(name: str) -> Path:
    """A path, or the name of a shipped spec under configs/studies/."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = cfg.presets_dir() / "studies"
    for candidate in (shipped / name, shipped / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in shipped.glob("*.yaml"))
    raise UserError(f"study {name!r} is neither a file nor a shipped study; shipped: {', '.join(known) or 'none'}")


def load_study(name: str) -> Study:
    """Read and validate a study spec; every run's config is resolved once here, so a bad key stops the command
    before anything runs."""
    path = find_study_file(name)
    raw = cfg.load_yaml(path)
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise UserError(f"unknown study key(s) {', '.join(unknown)} in {path}; accepted: {', '.join(SPEC_KEYS)}")
    base = raw.get("base") or {}
    if not isinstance(base, Mapping) or set(base) - {"config", "set"}:
        raise UserError(f"study base in {path} takes config (a list of presets or files) and set (a mapping)")
    configs = base.get("config") or []
    configs = [configs] if isinstance(configs, str) else list(configs)
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, Mapping) or not arms_raw:
        raise UserError(f"study arms in {path} must map arm names to their overrides, e.g. uniform: "
                        "{strategy.name: uniform}")
    arms = tuple(Arm(str(n), _overrides(v, f"arm {n}")) for n, v in arms_raw.items())
    seeds = raw.get("seeds")
    if not isinstance(seeds, list) or len(seeds) < 2 or not all(isinstance(s, int) and s >= 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise UserError(f"study seeds in {path} must be a list of at least two distinct whole numbers >= 0")
    rank = dict(raw.get("rank") or {})
    bad = sorted(set(rank) - set(RANK_KEYS))
    if bad or "benchmark" not in rank:
        raise UserError(f"study rank in {path} needs benchmark and takes {', '.join(RANK_KEYS)}"
                        + (f"; unknown: {', '.join(bad)}" if bad else ""))
    baseline = raw.get("baseline", arms[0].name)
    if baseline not in {a.name for a in arms}:
        raise UserError(f"study baseline {baseline!r} in {path} is not an arm; arms: {', '.join(a.name for a in arms)}")
    study = Study(
        name=str(raw.get("name") or path.stem), description=str(raw.get("description") or ""),
        base_config=tuple(configs), base_overrides=_overrides(base.get("set"), "base.set"), arms=arms,
        seeds=tuple(seeds), rank=rank, baseline=baseline, runs_dir=Path(raw.get("runs_dir") or "runs/study"),
        results_dir=Path(raw.get("results_dir") or "results"), source=str(path),
    )
    for arm in study.arms:  # every run's config, validated before anything runs
        study.resolve(arm, study.seeds[0])
    from .rank import load_benchmark

    load_benchmark(rank["benchmark"])
    return study


# --- running ---------------------------------------------------------------------------------------------
def _portable(source: str) -> str:
    """A shipped spec as `configs/studies/<file>` (the same on every checkout), any other spec as given."""
    path = Path(source).resolve()
    shipped = (cfg.presets_dir() / "studies").resolve()
    return f"configs/studies/{path.relative_to(shipped).as_posix()}" if path.is_relative_to(shipped) else source


def _rank_args(rank: Mapping[str, Any]) -> dict[str, Any]:
    archs = rank.get("archs", "all")
    return {"benchmark": rank["benchmark"], "dataset": rank.get("dataset"), "metric": rank.get("metric", "test_acc"),
            "archs": None if archs == "all" else int(archs), "split": rank.get("split", "test"),
            "dedup": bool(rank.get("dedup", False)), "bn_mode": rank.get("bn_mode"),
            "eval_batch_size": rank.get("eval_batch_size"), "n_boot": int(rank.get("bootstrap", 1000))}


def run_one(study: Study, arm: Arm, seed: int, argv: Sequence[str]) -> dict[str, Any]:
    """Search and rank one (arm, seed), resuming what an earlier invocation left; returns its record."""
    import json

    from . import pipeline, rank, rundir

    run_path = study.run_dir(arm.name, seed)
    ranking = run_path / "ranking.json"
    if not ranking.is_file():
        summary = run_path / "summary.json"
        complete = summary.is_file() and json.loads(summary.read_text()).get("status") == "complete"
        if not complete:
            if (run_path / "config.yaml").is_file():
                config = rundir.load_config(run_path)
            else:
                config = study.resolve(arm, seed)
                rundir.create(run_path, config)
            pipeline.run_search(config, run_path, argv, quiet=True, resume=True)
        rank.rank_run(run_path, quiet=True, seed=0, **_rank_args(study.rank))
    result = json.loads(ranking.read_text())
    summary = json.loads((run_path / "summary.json").read_text())
    return {
        "arm": arm.name, "seed": seed, "run_dir": str(run_path),
        "metrics": {m: result["metrics"][m]["value"] for m in METRICS},
        "intervals": {m: [result["metrics"][m]["ci_low"], result["metrics"][m]["ci_high"]] for m in METRICS},
        "num_archs": result["num_archs"], "steps": summary["steps"],
        "train_seconds": summary["train_seconds_this_invocation"], "final_train_acc": summary["final_train_acc"],
    }


def _job(args: tuple[str, str, int, tuple[str, ...]]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    source, arm_name, seed, argv = args
    study = load_study(source)
    arm = next(a for a in study.arms if a.name == arm_name)
    return run_one(study, arm, seed, argv)


def run_study(study: Study, argv: Sequence[str], workers: int = 1, reporter=None) -> Path:
    """Run every (arm, seed) not yet ranked, then write `results/<name>/study.json`. Returns its path."""
    from .progress import Reporter

    reporter = reporter or Reporter(quiet=True)
    jobs = [(arm, seed) for seed in study.seeds for arm in study.arms]
    reporter.info(f"study {study.name}: {len(study.arms)} arms x {len(study.seeds)} seeds = {len(jobs)} runs under "
                  f"{study.runs_dir / study.name} ({workers} worker(s))")
    records: list[dict[str, Any]] = []
    started = time.perf_counter()

    def done(record: dict[str, Any]) -> None:
        records.append(record)
        m = record["metrics"]
        reporter.info(f"[{len(records)}/{len(jobs)}] {record['arm']} seed {record['seed']}: kendall tau "
                      f"{m['kendall_tau']:.3f}  P@5% {m['precision_at_5pct']:.3f}  regret {m['top1_regret']:.2f}"
                      f"  ({time.perf_counter() - started:.0f}s)")

    if workers <= 1:
        for arm, seed in jobs:
            done(run_one(study, arm, seed, argv))
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(_job, (study.source, arm.name, seed, tuple(argv))) for arm, seed in jobs]
            try:
                for future in concurrent.futures.as_completed(futures):
                    done(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return write_results(study, records, argv)


# --- statistics ------------------------------------------------------------------------------------------
def mean_interval(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean with a Student-t interval over seeds (n - 1 degrees of freedom), plus sd and n."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], float)
    n = len(x)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "sd": None, "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "sd": None, "n": 1}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n": n}


def paired_difference(values: Mapping[int, float], baseline: Mapping[int, float], level: float = 0.95) -> dict:
    """arm - baseline over the seeds both have: mean, t-interval and the paired t-test's two-sided p-value."""
    from scipy import stats

    seeds = sorted(set(values) & set(baseline))
    diffs = [values[s] - baseline[s] for s in seeds if values[s] is not None and baseline[s] is not None]
    out = mean_interval(diffs, level)
    if len(diffs) >= 2 and np.std(diffs) > 0:
        out["p_value"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    else:
        out["p_value"] = None
    out["seeds"] = seeds
    return out


def write_results(study: Study, records: list[dict[str, Any]], argv: Sequence[str]) -> Path:
    """Aggregate the run records into `results/<name>/study.json` and copy each run's metrics.csv beside it."""
    from . import rank, rundir

    out = study.results_dir / study.name
    (out / "runs").mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: ([a.name for a in study.arms].index(r["arm"]), r["seed"]))
    for record in records:
        source = Path(record["run_dir"]) / "metrics.csv"
        if source.is_file():
            shutil.copyfile(source, out / "runs" / f"{record['arm']}-s{record['seed']}.csv")
    by_arm = {a.name: {r["seed"]: r["metrics"] for r in records if r["arm"] == a.name} for a in study.arms}
    arms = {}
    for arm in study.arms:
        runs = by_arm[arm.name]
        arms[arm.name] = {
            "overrides": list(arm.overrides),
            "config": study.resolve(arm, study.seeds[0]),  # resolved at the first seed: the presets' values
            "summary": {m: mean_interval([runs[s][m] for s in sorted(runs)]) for m in METRICS},
            "paired_vs_baseline": None if arm.name == study.baseline else {
                m: paired_difference({s: runs[s][m] for s in runs},
                                     {s: by_arm[study.baseline][s][m] for s in by_arm[study.baseline]})
                for m in METRICS},
            "train_seconds_median": float(np.median([r["train_seconds"] for r in records if r["arm"] == arm.name])),
            "steps": sorted({r["steps"] for r in records if r["arm"] == arm.name}),
        }
    bench = rank.load_benchmark(study.rank["benchmark"])
    env = rundir.environment(list(argv), "cpu")
    result = {
        "name": study.name,
        "description": study.description,
        "command": " ".join(["nas", *argv]),
        "spec": _portable(study.source),
        "base": {"config": list(study.base_config), "set": list(study.base_overrides)},
        "seeds": list(study.seeds),
        "baseline": study.baseline,
        "rank": {k: v for k, v in study.rank.items()},
        "benchmark": {"name": bench.name, "n_archs": len(bench), "noise_ceiling": bench.meta.get("noise_ceiling"),
                      "description": bench.meta.get("description", "")},
        "environment": {k: env[k] for k in ("supernas", "git_sha", "python", "torch", "numpy", "platform")},
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": records,
        "arms": arms,
    }
    path = out / STUDY_FILE
    atomic_write_json(path, result)
    return path

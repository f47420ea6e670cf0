"""`nas study SPEC`: a ranking-consistency study — several arms (strategies or settings) x several seeds on one
benchmark, the same budget for every arm, and the statistics a claim needs.

A study spec (YAML, `configs/studies/`) names a base experiment (config presets and `--set` overrides, as a
sweep's `base`), the arms (each a set of overrides), the seeds, the benchmark ranking (`nas rank` options) and
the baseline arm. Every (arm, seed) is one `nas search` run under `runs/study/<name>/`, then one `nas rank`;
a rerun skips runs already ranked and resumes interrupted ones (`--resume` of the search). Jobs run one after
another, or in `--workers` processes of one thread each.

A study of search methods (DARTS, DrNAS, ...) judges the arch each run picks rather than (or besides) the ranking:
with a `pick` section, every run's picked arch (`arch.json`) is looked up in the benchmark (`picked_acc`, the
benchmark's metric of it); an arch the table lacks is trained stand-alone with the benchmark's own recorded
protocol and seeds (`train_missing`, default true), so every pick gets a ground-truth figure, marked by its
source. `rank` may then be left out.

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
PICK_METRIC = "picked_acc"  # the benchmark's metric of a run's picked arch
SPEC_KEYS = ("name", "description", "base", "arms", "seeds", "rank", "pick", "baseline", "runs_dir", "results_dir")
PICK_KEYS = ("benchmark", "dataset", "metric", "train_missing")
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
    rank: dict[str, Any]  # empty: no ranking
    pick: dict[str, Any]  # empty: the picked arch is not judged
    baseline: str
    runs_dir: Path
    results_dir: Path
    source: str

    @property
    def metrics(self) -> tuple[str, ...]:
        """The per-run figures this study aggregates: the ranking metrics and/or the picked arch's accuracy."""
        return (METRICS if self.rank else ()) + ((PICK_METRIC,) if self.pick else ())

    @property
    def headline(self) -> str:
        """The metric of the paired comparison against the baseline: Kendall tau, or the pick's accuracy."""
        return "kendall_tau" if self.rank else PICK_METRIC

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
    pick = dict(raw.get("pick") or {})
    if not rank and not pick:
        raise UserError(f"study {path} needs rank (rank the supernet against a benchmark) or pick (judge the "
                        "arch each run picks), or both")
    bad = sorted(set(rank) - set(RANK_KEYS))
    if rank and (bad or "benchmark" not in rank):
        raise UserError(f"study rank in {path} needs benchmark and takes {', '.join(RANK_KEYS)}"
                        + (f"; unknown: {', '.join(bad)}" if bad else ""))
    bad = sorted(set(pick) - set(PICK_KEYS))
    if pick:
        pick.setdefault("benchmark", rank.get("benchmark"))
        pick.setdefault("dataset", rank.get("dataset"))
        pick.setdefault("metric", "test_acc")
        pick.setdefault("train_missing", True)
    if pick and (bad or not pick["benchmark"] or not isinstance(pick["train_missing"], bool)):
        raise UserError(f"study pick in {path} needs a benchmark (its own or rank's) and takes "
                        f"{', '.join(PICK_KEYS)} (train_missing: true or false)"
                        + (f"; unknown: {', '.join(bad)}" if bad else ""))
    baseline = raw.get("baseline", arms[0].name)
    if baseline not in {a.name for a in arms}:
        raise UserError(f"study baseline {baseline!r} in {path} is not an arm; arms: {', '.join(a.name for a in arms)}")
    study = Study(
        name=str(raw.get("name") or path.stem), description=str(raw.get("description") or ""),
        base_config=tuple(configs), base_overrides=_overrides(base.get("set"), "base.set"), arms=arms,
        seeds=tuple(seeds), rank=rank, pick=pick, baseline=baseline, runs_dir=Path(raw.get("runs_dir") or "runs/study"),
        results_dir=Path(raw.get("results_dir") or "results"), source=str(path),
    )
    for arm in study.arms:  # every run's config, validated before anything runs
        config = study.resolve(arm, study.seeds[0])
        if pick and config["search"]["method"] == "none" and not _derives(config):
            raise UserError(f"arm {arm.name} of study {path} picks no arch (search.method=none and strategy "
                            f"{config['strategy']['name']} derives none); set search.method or drop pick")
    from .rank import load_benchmark, truth_dataset

    for section in (rank, pick):
        if section:
            bench = load_benchmark(section["benchmark"])
            truth_dataset(bench, section.get("dataset"), study.resolve(study.arms[0], study.seeds[0])["data"]["name"])
    return study


def _derives(config: dict) -> bool:
    """Whether the config's strategy picks its own arch (`derive`): the gradient methods do."""
    import strategies

    return (strategies.strategy_class(config["strategy"]["name"]).derives_arch
            and config["strategy"].get("derive") != "search")  # ENAS may leave its pick to the search


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
    """Search, rank and judge the pick of one (arm, seed), resuming what an earlier invocation left; returns its
    record."""
    import json

    from . import pipeline, rank, rundir

    run_path = study.run_dir(arm.name, seed)
    ranking, picked = run_path / "ranking.json", run_path / PICK_FILE
    summary = run_path / "summary.json"
    complete = summary.is_file() and json.loads(summary.read_text()).get("status") == "complete"
    if not complete:
        if (run_path / "config.yaml").is_file():
            config = rundir.load_config(run_path)
        else:
            config = study.resolve(arm, seed)
            rundir.create(run_path, config)
        pipeline.run_search(config, run_path, argv, quiet=True, resume=True)
    if study.rank and not ranking.is_file():
        rank.rank_run(run_path, quiet=True, seed=0, **_rank_args(study.rank))
    if study.pick and not picked.is_file():
        atomic_write_json(picked, judge_pick(run_path, study.pick))
    summary_data = json.loads(summary.read_text())
    record: dict[str, Any] = {
        "arm": arm.name, "seed": seed, "run_dir": str(run_path), "metrics": {}, "intervals": {},
        "steps": summary_data["steps"], "train_seconds": summary_data["train_seconds_this_invocation"],
        "final_train_acc": summary_data["final_train_acc"],
        **({"split_score_seconds": summary_data["split"]["score_seconds_this_invocation"],
            "split_units": summary_data["split"]["units"]} if "split" in summary_data else {}),
    }
    if study.rank:
        result = json.loads(ranking.read_text())
        record["metrics"].update({m: result["metrics"][m]["value"] for m in METRICS})
        record["intervals"].update({m: [result["metrics"][m]["ci_low"], result["metrics"][m]["ci_high"]]
                                    for m in METRICS})
        record["num_archs"] = result["num_archs"]
    if study.pick:
        judged = json.loads(picked.read_text())
        record["metrics"][PICK_METRIC] = judged["value"]
        record["pick"] = {k: judged[k] for k in ("arch", "source", "seeds", "inherited_test_acc")}
    return record


PICK_FILE = "picked.json"


def judge_pick(run_path: Path, pick: Mapping[str, Any]) -> dict[str, Any]:
    """The benchmark's `pick.metric` of the arch a finished run picked (`arch.json`): looked up in the table, or,
    for an arch the table lacks and `train_missing`, the mean over the benchmark's seeds of training it stand-alone
    with the benchmark's recorded protocol (`meta.json` `training`)."""
    import json

    from . import rundir
    from .rank import load_benchmark, truth_dataset

    arch_file = run_path / "arch.json"
    if not arch_file.is_file():
        raise UserError(f"{run_path} picked no arch (no arch.json); a pick study needs a search or a strategy "
                        "that derives one")
    info = json.loads(arch_file.read_text())
    bench = load_benchmark(pick["benchmark"])
    dataset = truth_dataset(bench, pick.get("dataset"), rundir.load_config(run_path)["data"]["name"])
    metric = pick["metric"]
    out = {"arch": info["arch"], "benchmark": bench.name, "dataset": dataset, "metric": metric,
           "inherited_test_acc": info.get("test_acc_inherited")}
    if info["arch"] in bench:
        return {**out, "value": bench.query(info["arch"], dataset, metric), "source": "table", "seeds": None}
    training, seeds = bench.meta.get("training"), bench.meta.get("plan", {}).get("seeds")
    if not pick.get("train_missing", True) or not training or not seeds:
        raise UserError(f"the arch {info['arch']} that {run_path} picked is not in benchmark {bench.name}"
                        + ("" if training and seeds else ", whose meta.json records no training protocol to train "
                           "it with") + "; set pick.train_missing: true or use a benchmark that holds it")
    if metric not in ("test_acc", "valid_acc", "test_loss", "valid_loss"):
        raise UserError(f"pick.metric={metric} cannot be measured by training the arch; accepted for archs outside "
                        "the table: test_acc, valid_acc, test_loss, valid_loss")
    from .standalone import StandaloneSettings, train_arch

    runs = [train_arch(info["arch"], StandaloneSettings(**{**training, "seed": seed})) for seed in seeds]
    return {**out, "value": float(np.mean([r[metric] for r in runs])), "source": "trained", "seeds": list(seeds),
            "per_seed": [r[metric] for r in runs], "train_seconds": sum(r["seconds"] for r in runs)}


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
        parts = ([f"kendall tau {m['kendall_tau']:.3f}  P@5% {m['precision_at_5pct']:.3f}  regret "
                  f"{m['top1_regret']:.2f}"] if study.rank else [])
        if study.pick:
            parts.append(f"picked {record['pick']['arch']}: {m[PICK_METRIC]:.2f} ({record['pick']['source']})")
        reporter.info(f"[{len(records)}/{len(jobs)}] {record['arm']} seed {record['seed']}: " + "  ".join(parts)
                      + f"  ({time.perf_counter() - started:.0f}s)")

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
    """Aggregate the run records into `results/<name>/study.json` and copy each run's metrics.csv beside it (and,
    where a study has few-shot arms, every run's ranking.csv and the few-shot runs' split.json: the within-leaf
    analysis of the report reads them)."""
    from . import rank, rundir

    out = study.results_dir / study.name
    (out / "runs").mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: ([a.name for a in study.arms].index(r["arm"]), r["seed"]))
    for record in records:
        source = Path(record["run_dir"]) / "metrics.csv"
        if source.is_file():
            shutil.copyfile(source, out / "runs" / f"{record['arm']}-s{record['seed']}.csv")
    if any("split_units" in r for r in records):
        for record in records:
            for name, suffix in (("ranking.csv", "ranking.csv"), ("split.json", "split.json")):
                source = Path(record["run_dir"]) / name
                if source.is_file():
                    shutil.copyfile(source, out / "runs" / f"{record['arm']}-s{record['seed']}.{suffix}")
    by_arm = {a.name: {r["seed"]: r["metrics"] for r in records if r["arm"] == a.name} for a in study.arms}
    arms = {}
    for arm in study.arms:
        runs = by_arm[arm.name]
        arms[arm.name] = {
            "overrides": list(arm.overrides),
            "config": study.resolve(arm, study.seeds[0]),  # resolved at the first seed: the presets' values
            "summary": {m: mean_interval([runs[s][m] for s in sorted(runs)]) for m in study.metrics},
            "paired_vs_baseline": None if arm.name == study.baseline else {
                m: paired_difference({s: runs[s][m] for s in runs},
                                     {s: by_arm[study.baseline][s][m] for s in by_arm[study.baseline]})
                for m in study.metrics},
            "train_seconds_median": float(np.median([r["train_seconds"] for r in records if r["arm"] == arm.name])),
            "steps": sorted({r["steps"] for r in records if r["arm"] == arm.name}),
        }
    bench = rank.load_benchmark((study.rank or study.pick)["benchmark"])
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
        "pick": {k: v for k, v in study.pick.items()},
        "metrics": list(study.metrics),
        "headline": study.headline,
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

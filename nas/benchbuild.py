"""`nas bench build`: a ground-truth benchmark that fits a CPU, by training sampled archs stand-alone.

A build is a plan of archs in a seeded order and a list of training seeds. Each (arch, seed) job is one call of
`standalone.train_arch` (a plain function; with `--tune` each job is one Ray Tune trial, so the jobs spread over
the GPUs of a cluster, see `nas.tune.train_archs`). Every finished job is written at once to
`results/<key>.json` (atomically), so an interrupted build resumes without retraining finished archs. When all
are done the table is written in the compact benchmark format (`table.csv` + `meta.json`) that
`nasbench.load(DIR)` and `nas rank --benchmark DIR` read.

- `unique` (`--unique`): many encodings of a space are the same network (NB201: isomorphic cells, dead edges;
  `space.canonical`). The plan then holds one representative per class and the table one row per member of
  every planned class, each with its representative's accuracies and its own params/FLOPs.
- The plan order is a seeded permutation of the space (or of its classes) and `--archs N` takes its first N,
  so rerunning with a larger N (or a larger `--multi-seed-archs`) grows the same build instead of starting over.
- `seeds` (`--seeds 0,1`): the first `multi_seed_archs` archs of the plan are trained with every seed, the
  others with the first; `test_acc`/`valid_acc` are means over the seeds an arch has, `test_acc_s<seed>` each
  seed's own value, and `meta.json` records the seed-to-seed Kendall tau (the benchmark's noise ceiling).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import nasbench
import searchspaces

from .errors import UserError
from .io import atomic_write_json
from .progress import ETA, Reporter, format_seconds
from .standalone import StandaloneSettings, train_arch

BUILD_FILE = "build.json"
TUNE_DIR = "tune"  # Ray Tune's storage of `--tune` builds, inside the benchmark directory
STREAM_PLAN = 0x9A11  # the seeded order of a build's plan


@dataclass(frozen=True)
class TuneOptions:
    """`nas bench build --tune`: where Ray runs and what one arch's trial asks for."""

    address: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    max_concurrent: int | None = None


@dataclass(frozen=True)
class BuildRequest:
    """What to train: `archs` planned archs (None: all), one per class with `unique`, the training `seeds` (None:
    the settings' seed), of which all apply to the first `multi_seed_archs` (None: every planned arch)."""

    archs: int | None = None
    unique: bool = False
    seeds: tuple[int, ...] | None = None
    multi_seed_archs: int | None = None
    command: str | None = None  # the command line that asked for the build, recorded in meta.json

    def training_seeds(self, settings: StandaloneSettings) -> list[int]:
        return list(self.seeds) if self.seeds else [settings.seed]


def _key(arch: str, seed: int, first_seed: int) -> str:
    """The result file name of a job; the first seed keeps the arch's plain key (builds of one seed)."""
    text = arch if seed == first_seed else f"{arch}#seed={seed}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def plan_order(space_name: str, seed: int, unique: bool = False, count: int | None = None) -> list[str]:
    """The archs of a build in plan order: a seeded permutation of the space (of its class representatives with
    `unique`), or, for spaces too large to list, distinct archs in draw order. The first `count` (all: None).

    Any prefix of the order is a uniform sample without replacement, so a build grows by asking for more."""
    space = searchspaces.get(space_name)
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_PLAN]))
    if space.size() > 1_000_000:
        if count is None:
            raise ValueError(f"space {space_name!r} has {space.size():.3g} archs; give --archs N, not all")
        drawn: dict[Any, str] = {}
        while len(drawn) < count:
            arch = space.sample(rng)
            arch = space.canonical(arch) if unique else arch
            drawn.setdefault(arch, arch.to_string())
        return list(drawn.values())
    everything = list(space.enumerate())
    if unique:
        everything = list(dict.fromkeys(space.canonical(a) for a in everything))
    strings = [a.to_string() for a in everything]
    order = rng.permutation(len(strings))
    return [strings[i] for i in order[:count]]


def members(space_name: str, representatives: Sequence[str]) -> list[str]:
    """Every arch of the space whose class representative is in `representatives`, in the space's order."""
    space = searchspaces.get(space_name)
    wanted = set(representatives)
    return [a.to_string() for a in space.enumerate() if space.canonical(a).to_string() in wanted]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _jobs(arch_list: list[str], seeds: list[int], multi_seed_archs: int) -> list[tuple[str, int]]:
    """(arch, seed) in plan order: every seed for the first `multi_seed_archs` archs, the first seed after."""
    return [(arch, seed) for i, arch in enumerate(arch_list) for seed in (seeds if i < multi_seed_archs else seeds[:1])]


def _check_growth(out: Path, existing: dict[str, Any], planned: dict[str, Any], arch_list: list[str]) -> None:
    fixed = ("settings", "unique", "seeds")
    old = {"unique": False, "seeds": [existing["settings"]["seed"]], **existing}
    if {k: old[k] for k in fixed} != {k: planned[k] for k in fixed}:
        raise UserError(
            f"{out} holds a build with other settings ({BUILD_FILE}); rerun with the same flags to resume it (more "
            "--archs or --multi-seed-archs grow it), or choose another --out"
        )
    if arch_list[:len(old["archs"])] != old["archs"]:
        raise UserError(
            f"{out} holds a build of {len(old['archs'])} archs in another order (an older plan); rerun with "
            f"--archs {len(old['archs'])} to resume it, or choose another --out"
        )


def build(out: Path, settings: StandaloneSettings, archs: int | None | BuildRequest, workers: int = 1,
          reporter: Reporter | None = None, tune: TuneOptions | None = None) -> Path:
    """Train every planned (arch, seed) job not yet done in `out`, then write the benchmark table. Returns `out`.

    `archs` is the number of archs (None: all) or a full `BuildRequest`. With `tune`, the jobs are Ray Tune
    trials; the results and the table are the same as without."""
    request = archs if isinstance(archs, BuildRequest) else BuildRequest(archs=archs)
    reporter = reporter or Reporter(quiet=True)
    seeds = request.training_seeds(settings)
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / BUILD_FILE
    try:
        arch_list = plan_order(settings.space, settings.seed, request.unique, request.archs)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    multi = len(arch_list) if request.multi_seed_archs is None else min(request.multi_seed_archs, len(arch_list))
    planned = {"settings": settings.as_dict(), "unique": request.unique, "seeds": seeds,
               "archs_requested": request.archs, "multi_seed_archs": multi}
    if plan_path.is_file():
        existing = json.loads(plan_path.read_text())
        _check_growth(out, existing, planned, arch_list)
    elif out.exists() and any(p.name != BUILD_FILE for p in out.iterdir()):
        raise UserError(f"{out} is not empty and holds no {BUILD_FILE}; choose an empty or new --out")
    atomic_write_json(plan_path, {**planned, "archs": arch_list})
    results_dir = out / "results"
    results_dir.mkdir(exist_ok=True)
    jobs = _jobs(arch_list, seeds, multi)
    todo = [(a, s) for a, s in jobs if not (results_dir / f"{_key(a, s, seeds[0])}.json").is_file()]
    done = len(jobs) - len(todo)
    how = (f"{workers} worker(s)" if tune is None else
           f"Ray Tune trials of {tune.cpus:g} CPU and {tune.gpus:g} GPU on "
           + (f"the cluster at {tune.address}" if tune.address else "a local Ray"))
    what = f"{len(arch_list)} {'classes' if request.unique else 'archs'}" + (
        f", seeds {', '.join(map(str, seeds))} for {multi} of them" if len(seeds) > 1 else "")
    reporter.info(f"benchmark {out}: {what}: {len(jobs)} trainings, {done} done, {len(todo)} to train "
                  f"({settings.epochs} epoch{'s' if settings.epochs != 1 else ''} each, {how})")
    eta = ETA(len(jobs), done)

    def record(result: dict[str, Any]) -> None:
        nonlocal done
        atomic_write_json(results_dir / f"{_key(result['arch'], result['seed'], seeds[0])}.json", result)
        done += 1
        remaining = eta.remaining(done)
        eta_text = f"  ETA {format_seconds(remaining)}" if remaining else ""
        reporter.info(f"[{done}/{len(jobs)}] test {result['test_acc']:.2f}%  {result['seconds']:.1f}s  seed "
                      f"{result['seed']}  {result['arch']}{eta_text}")

    if tune is not None:
        if todo:
            from .tune import train_archs

            train_archs(todo, settings.as_dict(), record, storage=out / TUNE_DIR, address=tune.address,
                        cpus=tune.cpus, gpus=tune.gpus, max_concurrent=tune.max_concurrent, reporter=reporter)
    elif workers <= 1:
        for arch, seed in todo:
            record(train_arch(arch, replace(settings, seed=seed)))
    else:
        context = multiprocessing.get_context("spawn")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            futures = [pool.submit(train_arch, arch, replace(settings, seed=seed)) for arch, seed in todo]
            try:
                for future in concurrent.futures.as_completed(futures):
                    record(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return write_table(out, arch_list, settings, request=request, seeds=seeds, multi_seed_archs=multi,
                       workers=workers if tune is None else None)


def _read_results(out: Path, arch_list: list[str], seeds: list[int], multi: int) -> dict[tuple[str, int], dict]:
    return {(a, s): json.loads((out / "results" / f"{_key(a, s, seeds[0])}.json").read_text())
            for a, s in _jobs(arch_list, seeds, multi)}


def _noise_ceiling(results: dict[tuple[str, int], dict], arch_list: list[str], seeds: list[int], multi: int,
                   metric: str) -> dict[str, Any] | None:
    """Agreement of two training seeds over the archs trained with both: what no supernet can beat."""
    if len(seeds) < 2 or multi < 2:
        return None
    a = np.array([results[(arch, seeds[0])].get(metric, np.nan) for arch in arch_list[:multi]], float)
    b = np.array([results[(arch, seeds[1])].get(metric, np.nan) for arch in arch_list[:multi]], float)
    if np.isnan(a).all() or np.isnan(b).all():
        return None
    return {"metric": metric, "seeds": seeds[:2], "archs": multi,
            "kendall_tau": round(nasbench.kendall_tau(a, b), 4), "spearman": round(nasbench.spearman(a, b), 4),
            "mean_abs_diff": round(float(np.nanmean(np.abs(a - b))), 4)}


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"min": round(float(values.min()), 4), "max": round(float(values.max()), 4),
            "median": round(float(np.median(values)), 4), "std": round(float(values.std()), 4),
            "p10": round(float(np.percentile(values, 10)), 4), "p90": round(float(np.percentile(values, 90)), 4)}


def write_table(out: Path, arch_list: list[str], settings: StandaloneSettings, request: BuildRequest | None = None,
                seeds: list[int] | None = None, multi_seed_archs: int | None = None,
                workers: int | None = None) -> Path:
    """Collect the per-job results into the compact benchmark format, with the build's cost, spread and noise
    ceiling in `meta.json`."""
    import torch

    request = request or BuildRequest()
    seeds = seeds or [settings.seed]
    multi = len(arch_list) if multi_seed_archs is None else multi_seed_archs
    results = _read_results(out, arch_list, seeds, multi)
    space = searchspaces.get(settings.space)
    rows = members(settings.space, arch_list) if request.unique else list(arch_list)
    rep_of = {a: (space.canonical(space.parse(a)).to_string() if request.unique else a) for a in rows}

    def per_arch(metric: str, seed: int | None = None) -> dict[str, float]:
        out_values = {}
        for arch in arch_list:
            values = [results[(arch, s)].get(metric) for s in seeds
                      if (arch, s) in results and (seed is None or s == seed)]
            values = [np.nan if v is None else v for v in values]
            out_values[arch] = float(np.mean(values)) if values else np.nan
        return out_values

    ds = settings.dataset
    columns: dict[tuple[str, str], np.ndarray] = {}
    for metric in ("test_acc", "valid_acc", "test_loss", "valid_loss"):
        by_arch = per_arch(metric)
        columns[(ds, metric)] = np.array([by_arch[rep_of[a]] for a in rows], float)
    if len(seeds) > 1:
        for seed in seeds:
            for metric in ("test_acc", "valid_acc", "test_loss"):
                by_arch = per_arch(metric, seed)
                columns[(ds, f"{metric}_s{seed}")] = np.array([by_arch[rep_of[a]] for a in rows], float)
    _, task = _cost_task(settings)
    # the options of the trained network that its costs depend on (NB201: C, N; MobileNet: width, schedule)
    macro = {k: v for k, v in task.items() if k in space.COST_OPTIONS}
    columns[(ds, "params")] = np.array([space.params(space.parse(a), **task) for a in rows], float)
    columns[(ds, "flops")] = np.array([space.flops(space.parse(a), **task) for a in rows], float)

    seconds = [r["seconds"] for r in results.values()]
    test_by_arch = per_arch("test_acc")
    trained_test = np.array([test_by_arch[a] for a in arch_list], float)
    meta = {
        "description": f"{len(rows)} {settings.space} archs"
                       + (f" ({len(arch_list)} classes of identical networks, one trained per class)"
                          if request.unique else "")
                       + f" trained stand-alone on {ds} ({settings.epochs} epochs, "
                         + "".join(f"{k}={v}, " for k, v in macro.items())
                         + f"seeds {', '.join(map(str, seeds))}) by `nas bench build`",
        "source": "nas bench build",
        "command": request.command,
        "training": settings.as_dict(),
        "macro": macro,
        "plan": {"unique": request.unique, "archs_trained": len(arch_list), "rows": len(rows),
                 "space_size": space.size(), "seeds": seeds, "multi_seed_archs": multi,
                 "order_seed": settings.seed},
        "cost": {"trainings": len(results), "seconds_per_training_median": round(statistics.median(seconds), 3),
                 "seconds_per_training_mean": round(statistics.fmean(seconds), 3),
                 "train_seconds_total": round(sum(seconds), 1), "workers": workers,
                 "threads_per_worker": 1 if workers and workers > 1 else None,
                 "device": sorted({r.get("device", "?") for r in results.values()})},
        "environment": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                        "platform": platform.platform(), "cpus": os.cpu_count()},
        "spread": {"test_acc_over_trained_archs": _spread(trained_test),
                   "test_acc_over_rows": _spread(columns[(ds, "test_acc")])},
        "noise_ceiling": _noise_ceiling(results, arch_list, seeds, multi, "test_acc"),
        "noise_ceiling_test_loss": _noise_ceiling(results, arch_list, seeds, multi, "test_loss"),
        "metric_notes": {
            "test_acc": f"top-1 on the {ds} test split, mean over the seeds trained"
                        + ("; every arch carries its class representative's accuracy" if request.unique else ""),
            "valid_acc": f"top-1 on the {ds} validation split (valid_fraction {settings.valid_fraction}), mean over "
                         "the seeds trained",
            "test_loss": f"mean cross-entropy on the {ds} test split (lower is better), mean over the seeds trained",
            "valid_loss": f"mean cross-entropy on the {ds} validation split, mean over the seeds trained",
            "params": "the arch's own stand-alone network (affine BN), analytic",
            "flops": "the arch's own stand-alone network, analytic, in the space's FLOPs convention",
        },
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_seconds": round(sum(seconds), 1),
    }
    return nasbench.write_table(out, name=out.name, space=settings.space, archs=rows, columns=columns, meta=meta)


def _cost_task(settings: StandaloneSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stand-alone network's build options and cost task, without loading more than the dataset's shape."""
    from . import data as datasets
    from .standalone import network_options

    bundle = datasets.load(settings.dataset, data_dir=settings.data_dir, valid_fraction=settings.valid_fraction,
                           split_seed=settings.split_seed)
    return network_options(settings, bundle)


def pack(build_dir: Path, out: Path, name: str | None = None) -> Path:
    """Copy a finished build's table to `out` as `table.csv.gz` + `meta.json` (what ships inside the package as
    `nasbench/tables/<name>`), renamed to `name` (default: the folder name of `out`). Returns `out`."""
    try:
        bench = nasbench.read_table(build_dir)
    except nasbench.BenchmarkError as exc:
        raise UserError(f"{build_dir} holds no finished benchmark table: {exc}") from None
    name = name or out.name
    values = {key: bench.values(*key) for key in ((d, m) for d in bench.datasets for m in bench.metrics(d))}
    meta = {k: v for k, v in bench.meta.items() if k not in ("name", "n_archs", "datasets", "metrics", "format")}
    packed = nasbench.Benchmark(name, bench.space, bench.archs, values, meta, canonical=True)
    return packed.save(out, compress=True)

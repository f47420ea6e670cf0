"""`nas bench build`: a ground-truth benchmark that fits a CPU, by training sampled archs stand-alone.

Each arch is one call of `standalone.train_arch` (a plain function; with `--tune` each arch is one Ray Tune
trial, so the jobs spread over the GPUs of a cluster, see `nas.tune.train_archs`). Every finished arch is
written at once to `results/<key>.json` (atomically), so an interrupted build resumes without retraining
finished archs. When all are done the table is written in the compact benchmark
format (`table.csv` + `meta.json`) that `nasbench.load(DIR)` and `nas rank --benchmark DIR` read.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TuneOptions:
    """`nas bench build --tune`: where Ray runs and what one arch's trial asks for."""

    address: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    max_concurrent: int | None = None


def _key(arch: str) -> str:
    return hashlib.sha1(arch.encode()).hexdigest()[:16]


def sample_archs(space_name: str, count: int | None, seed: int) -> list[str]:
    """`count` distinct archs drawn uniformly without replacement (all of them when count is None). Spaces too
    large to enumerate are sampled arch by arch (distinct canonical archs, in draw order)."""
    space = searchspaces.get(space_name)
    if space.size() > 1_000_000:
        if count is None:
            raise ValueError(f"space {space_name!r} has {space.size():.3g} archs; give --archs N, not all")
        rng, drawn = np.random.default_rng(seed), {}
        while len(drawn) < count:
            arch = space.sample(rng)
            drawn.setdefault(arch, arch.to_string())
        return list(drawn.values())
    everything = [a.to_string() for a in space.enumerate()]
    if count is None or count >= len(everything):
        return everything
    rng = np.random.default_rng(seed)
    return [everything[i] for i in sorted(rng.choice(len(everything), size=count, replace=False))]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def build(out: Path, settings: StandaloneSettings, archs: int | None, workers: int = 1,
          reporter: Reporter | None = None, tune: TuneOptions | None = None) -> Path:
    """Train every planned arch not yet done in `out`, then write the benchmark table. Returns `out`.

    With `tune`, the archs are Ray Tune trials; the results and the table are the same as without."""
    reporter = reporter or Reporter(quiet=True)
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / BUILD_FILE
    planned = {"settings": settings.as_dict(), "archs_requested": archs}
    if plan_path.is_file():
        existing = json.loads(plan_path.read_text())
        if {k: existing[k] for k in planned} != planned:
            raise UserError(
                f"{out} holds a build with other settings ({BUILD_FILE}); rerun with the same flags to resume it, "
                "or choose another --out"
            )
        arch_list = existing["archs"]
    else:
        if out.exists() and any(p.name != BUILD_FILE for p in out.iterdir()):
            raise UserError(f"{out} is not empty and holds no {BUILD_FILE}; choose an empty or new --out")
        arch_list = sample_archs(settings.space, archs, settings.seed)
        atomic_write_json(plan_path, {**planned, "archs": arch_list})
    results_dir = out / "results"
    results_dir.mkdir(exist_ok=True)
    todo = [a for a in arch_list if not (results_dir / f"{_key(a)}.json").is_file()]
    done = len(arch_list) - len(todo)
    how = (f"{workers} worker(s)" if tune is None else
           f"Ray Tune trials of {tune.cpus:g} CPU and {tune.gpus:g} GPU on "
           + (f"the cluster at {tune.address}" if tune.address else "a local Ray"))
    reporter.info(f"benchmark {out}: {len(arch_list)} archs, {done} done, {len(todo)} to train "
                  f"({settings.epochs} epochs each, {how})")
    eta = ETA(len(arch_list), done)

    def record(result: dict[str, Any]) -> None:
        nonlocal done
        atomic_write_json(results_dir / f"{_key(result['arch'])}.json", result)
        done += 1
        remaining = eta.remaining(done)
        reporter.info(f"[{done}/{len(arch_list)}] test {result['test_acc']:.2f}%  {result['seconds']:.1f}s  "
                      f"{result['arch']}" + (f"  ETA {format_seconds(remaining)}" if remaining else ""))

    if tune is not None:
        if todo:
            from .tune import train_archs

            train_archs(todo, settings.as_dict(), record, storage=out / TUNE_DIR, address=tune.address,
                        cpus=tune.cpus, gpus=tune.gpus, max_concurrent=tune.max_concurrent, reporter=reporter)
    elif workers <= 1:
        for arch in todo:
            record(train_arch(arch, settings))
    else:
        context = multiprocessing.get_context("spawn")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            futures = [pool.submit(train_arch, arch, settings) for arch in todo]
            try:
                for future in concurrent.futures.as_completed(futures):
                    record(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return write_table(out, arch_list, settings)


def write_table(out: Path, arch_list: list[str], settings: StandaloneSettings) -> Path:
    """Collect the per-arch results into the compact benchmark format."""
    results = [json.loads((out / "results" / f"{_key(a)}.json").read_text()) for a in arch_list]
    columns = {
        (settings.dataset, metric): np.array([np.nan if r[metric] is None else r[metric] for r in results], float)
        for metric in ("test_acc", "valid_acc", "params", "flops")
    }
    meta = {
        "description": f"{len(arch_list)} {settings.space} archs trained stand-alone on {settings.dataset} "
                       f"({settings.epochs} epochs, seed {settings.seed}) by `nas bench build`",
        "source": "nas bench build",
        "training": settings.as_dict(),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_seconds": round(sum(r["seconds"] for r in results), 1),
    }
    return nasbench.write_table(out, name=out.name, space=settings.space, archs=arch_list, columns=columns,
                                meta=meta)

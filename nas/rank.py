"""`nas rank`: how well a supernet's inherited-weight scores order archs the way a benchmark's truth does.

The evaluation split is loaded once onto the device; archs are evaluated back to back through one
`ArchEvaluator` (no rebuilding). Results: `ranking.csv` (arch, score, true), `ranking.json` (metrics with
bootstrap intervals and everything the numbers depend on) and a scatter plot.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import nasbench
import searchspaces

from . import checkpoint, plots, rundir
from .errors import UserError
from .io import atomic_write_json, atomic_write_text
from .progress import ETA, Reporter, format_seconds
from .runtime import derive_seed, select_device

if TYPE_CHECKING:
    import pandas as pd

STREAM_RANK = 12


def load_benchmark(name_or_dir: str) -> nasbench.Benchmark:
    try:
        return nasbench.load(name_or_dir)
    except nasbench.BenchmarkError as exc:
        raise UserError(str(exc)) from None


def distinct_networks(space_name: str, archs: list[str]) -> list[str]:
    """One arch per class of identical networks (`space.canonical`): the class representative where the list
    holds it, else the class's first arch in list order; list order is kept. Spaces without equivalences: all."""
    space = searchspaces.get(space_name)
    if not space.has_equivalences:
        return list(archs)
    chosen: dict[str, str] = {}
    for arch in archs:
        rep = space.canonical(space.parse(arch)).to_string()
        if rep not in chosen or arch == rep:
            chosen[rep] = arch
    keep = set(chosen.values())
    return [a for a in archs if a in keep]


def choose_archs(bench: nasbench.Benchmark, count: int | None, seed: int, dedup: bool = False) -> list[str]:
    """A seeded sample of `count` benchmark archs (all when None), in table order; with `dedup`, drawn from one
    arch per class of identical networks (ALGORITHMS.md §0.1 `eval.dedup`)."""
    archs = distinct_networks(bench.space, list(bench.archs)) if dedup else list(bench.archs)
    if count is None or count >= len(archs):
        return archs
    rng = np.random.default_rng(derive_seed(seed, STREAM_RANK))
    return [archs[i] for i in sorted(rng.choice(len(archs), size=count, replace=False))]


def truth_dataset(bench: nasbench.Benchmark, requested: str | None, run_dataset: str) -> str:
    dataset = requested or (run_dataset if run_dataset in bench.datasets else None)
    if dataset is None:
        raise UserError(f"benchmark {bench.name} has no {run_dataset!r} results; pick one with --dataset "
                        f"({', '.join(bench.datasets)})")
    if dataset not in bench.datasets:
        raise UserError(f"benchmark {bench.name} has no dataset {dataset!r}; accepted: {', '.join(bench.datasets)}")
    return dataset


def _truth_metric(bench: nasbench.Benchmark, dataset: str, requested: str) -> str:
    if requested not in bench.metrics(dataset):
        raise UserError(f"benchmark {bench.name} has no metric {requested!r} for {dataset}; accepted: "
                        f"{', '.join(bench.metrics(dataset))}")
    return requested


def rank_run(run_path: Path, benchmark: str, dataset: str | None = None, archs: int | None = 500,
             bn_mode: str | None = None, split: str = "test", metric: str = "test_acc", seed: int = 0,
             eval_batch_size: int | None = None, out: Path | None = None, n_boot: int = 1000,
             quiet: bool = False, dedup: bool = False) -> dict[str, Any]:
    """Score benchmark archs with the run's last checkpoint and write the ranking files. Returns ranking.json."""
    from . import fewshot  # torch-heavy; imported when used
    from .components import build_model, make_evaluator

    config = rundir.load_config(run_path)
    last = run_path / "checkpoints" / "last.pt"
    tree = fewshot.SplitTree.load(run_path) if fewshot.is_split_run(run_path) else None
    if tree is not None and tree.nodes[fewshot.ROOT].status == "pending":
        raise UserError(f"{run_path} has not finished training its first supernet yet; train it first")
    if tree is None and not last.is_file():
        raise UserError(f"{run_path} has no checkpoint yet (checkpoints/last.pt); train it first")
    bench = load_benchmark(benchmark)
    if bench.space != config["space"]["name"]:
        raise UserError(f"benchmark {bench.name} is for space {bench.space!r}, but the run searched "
                        f"{config['space']['name']!r}")
    dataset = truth_dataset(bench, dataset, config["data"]["name"])
    metric = _truth_metric(bench, dataset, metric)
    if bn_mode is not None:
        config["eval"]["bn_mode"] = bn_mode
    if eval_batch_size is not None:
        config["eval"]["batch_size"] = eval_batch_size
    out = out or run_path
    out.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(out / "rank.log", quiet=quiet)
    try:
        device = select_device(config["train"]["device"])
        space, bundle, net = build_model(config, device)  # no strategy: scoring needs none
        if tree is None:
            state = checkpoint.load(last, map_location=device)
            net.load_state_dict(state["model"])
        try:
            evaluator = make_evaluator(config, net, bundle, split)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        chosen = choose_archs(bench, archs, seed, dedup)
        truth = bench.query_many(chosen, dataset, metric)
        reporter.info(f"ranking {len(chosen)} {bench.name} archs: supernet {split} accuracy "
                      f"(BN {evaluator.bn_mode}, eval batch {evaluator.batch_size}) vs {dataset} {metric}")
        started = time.perf_counter()
        eta = ETA(len(chosen))

        def progress(done: int) -> None:
            if done % 25 == 0:
                remaining = eta.remaining(done)
                reporter.live(f"{done}/{len(chosen)} archs" + (f"  ETA {format_seconds(remaining)}" if remaining
                                                               else ""))

        owners = None
        if tree is not None:  # a few-shot run: each arch is scored by the sub-supernet that contains it
            scores, owners, epoch = fewshot.routed_scores(config, run_path, tree, space, bundle, net, device,
                                                          [space.parse(a) for a in chosen], split, progress)
            reporter.info(f"scored by {len(set(owners))} sub-supernets: " + ", ".join(
                f"{leaf} {owners.count(leaf)}" for leaf in dict.fromkeys(owners)))
        else:
            scores = np.empty(len(chosen))
            for i, arch in enumerate(chosen):
                scores[i] = evaluator(space.parse(arch))
                progress(i + 1)
            epoch = state["epoch"]
        seconds = time.perf_counter() - started
        report = nasbench.ranking_report(scores, truth, names=chosen, n_boot=n_boot, seed=seed)
        result = {
            "run_dir": str(run_path),
            "checkpoint_epoch": epoch,
            **({"sub_supernets": {leaf: owners.count(leaf) for leaf in dict.fromkeys(owners)}} if owners else {}),
            "benchmark": bench.name,
            "benchmark_dataset": dataset,
            "benchmark_metric": metric,
            "score": f"{split}_acc",
            "protocol": "ranking-test" if split == "test" else f"ranking-{split}",
            "eval_data": bundle.name,
            **evaluator.description,
            "num_archs": len(chosen),
            "arch_sample": "all" if archs is None or archs >= len(bench.archs) else archs,
            "dedup": dedup,
            "seed": seed,
            "seconds": round(seconds, 2),
            "archs_per_second": round(len(chosen) / max(seconds, 1e-9), 2),
            "metrics": report,
        }
        _write_csv(out / "ranking.csv", chosen, scores, truth, owners)
        atomic_write_json(out / "ranking.json", result)
        plot = _scatter(out / "plots" / "ranking_scatter.png", scores, truth, result)
        reporter.info(_summary_line(result))
        reporter.info(f"wrote {out / 'ranking.csv'}, {out / 'ranking.json'}, {plot}")
        return result
    finally:
        reporter.close()


def read_ranking(path: str | Path) -> pd.DataFrame:
    """What `nas rank` wrote, as a pandas DataFrame for notebooks: one row per ranked arch (index `arch`), columns
    `supernet_score`, `true_acc` (NaN where the benchmark has none) and, for few-shot runs, `sub_supernet`.

    `path` is a run or `nas rank --out` directory holding ranking.csv, or the CSV itself; the frame's `attrs`
    carry ranking.json (metrics with intervals, benchmark, protocol) when it lies beside the CSV."""
    import pandas as pd

    path = Path(path)
    file = path / "ranking.csv" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{file} does not exist; expected a run directory ranked by nas rank, or its ranking.csv")
    frame = pd.read_csv(file, index_col="arch", dtype={"sub_supernet": str})
    summary = file.with_name("ranking.json")
    if summary.is_file():
        frame.attrs.update(json.loads(summary.read_text()))
    return frame


def _write_csv(path: Path, archs: list[str], scores: np.ndarray, truth: np.ndarray,
               owners: list[str] | None = None) -> None:
    """ranking.csv: arch, score, truth, and (few-shot runs) the sub-supernet that scored the arch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arch", "supernet_score", "true_acc"] + (["sub_supernet"] if owners else []))
    for i, (arch, score, true) in enumerate(zip(archs, scores, truth)):
        writer.writerow([arch, f"{score:.6g}", "" if np.isnan(true) else f"{true:.6g}"]
                        + ([owners[i]] if owners else []))
    atomic_write_text(path, buffer.getvalue())


def _summary_line(result: dict[str, Any]) -> str:
    m = result["metrics"]

    def fmt(name: str) -> str:
        v = m[name]
        if v["value"] is None:
            return f"{name} undefined"
        interval = f" [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v["ci_low"] is not None else ""
        return f"{name} {v['value']:.3f}{interval}"

    tops = [k for k in m if k.startswith("precision_at_") and isinstance(m[k], dict) and "value" in m[k]]
    return "  ".join([fmt("kendall_tau"), fmt("spearman"), *(fmt(k) for k in tops), fmt("top1_regret")])


def _scatter(path: Path, scores: np.ndarray, truth: np.ndarray, result: dict[str, Any]) -> Path:
    plt = plots.pyplot()
    m = result["metrics"]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.scatter(truth, scores, s=8, alpha=0.6)
    ax.set_xlabel(f"{result['benchmark']} {result['benchmark_dataset']} {result['benchmark_metric']} (%)")
    ax.set_ylabel(f"supernet {result['score']} (%), BN {result['bn_mode']}")
    tau, rho = m["kendall_tau"]["value"], m["spearman"]["value"]
    ax.set_title(f"Kendall tau {'undefined' if tau is None else f'{tau:.3f}'}  Spearman "
                 f"{'undefined' if rho is None else f'{rho:.3f}'}  n={m['n']}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return plots.save_figure(fig, path)

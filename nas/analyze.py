"""`nas analyze controller RUN_DIR...`: does a trained ENAS controller's hidden state remember the arch it drew?

The protocol of Adam & Lorraine (specs/ALGORITHMS.md §5.4): draw `samples` archs (100) from the controller, keep
its final hidden state (`strategies.controller`: `read`, after it has read the whole arch, and `emit`, the state
that emitted the last decision, both reported), and over every pair of archs
correlate (Spearman, and Pearson) the distance between their hidden states (L2, and cosine) with how alike the
archs are: common ops, common connections, graph edit distance of their cell graphs (`searchspaces.similarity`,
networkx) and the absolute difference of their benchmark accuracy, where a benchmark covers both (NB201: looked up
by class of identical networks). A controller that remembers its decisions puts alike archs close: negative
correlations for the two counts, positive for the two distances.

Each run gives two rows: its trained controller (`plain`, or `memory buffer` for `strategy.memory`) and its
untrained controller (`random`: the same initialisation before any step, the paper's random row; counted once
when several runs share it, as runs of one seed with and without the buffer do). Several run
directories (the seeds of a study) give per kind the mean with a 95 % t-interval over runs. Writes
`analysis/controller.json` and `analysis/controller.png` in each run, and the combined table to `--out`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nasbench
import searchspaces
import strategies
from searchspaces.similarity import EditDistances, common_connections, common_ops
from strategies.controller import LSTMController
from strategies.enas import ENASStrategy, build_controller

from . import checkpoint, plots, rundir
from .errors import UserError
from .io import atomic_write_json
from .progress import Reporter

MEASURES: tuple[str, ...] = ("common_ops", "common_connections", "edit_distance", "abs_perf_diff")
MEASURE_LABELS = {"common_ops": "# common ops", "common_connections": "# common connections",
                  "edit_distance": "graph edit distance", "abs_perf_diff": "abs. perf. diff."}
EXPECTED_SIGN = {"common_ops": -1, "common_connections": -1, "edit_distance": 1, "abs_perf_diff": 1}
DISTANCES: tuple[str, ...] = ("l2", "cosine")
# Adam & Lorraine's blog table (ALGORITHMS.md §5.4, PTB RNN cells; Spearman of the hidden-state distance)
PAPER_TABLE = {
    "random": {"common_ops": -0.090, "common_connections": -0.130, "edit_distance": -0.064, "abs_perf_diff": 0.004},
    "memory buffer": {"common_ops": -0.404, "common_connections": -0.160, "edit_distance": 0.100,
                      "abs_perf_diff": 0.163},
    "plain": {"common_ops": -0.315, "common_connections": -0.072, "edit_distance": -0.028, "abs_perf_diff": -0.001},
}


# --- controllers of a run -------------------------------------------------------------------------------------
def run_controllers(run_path: Path) -> tuple[searchspaces.Space, dict[str, Any], dict[str, LSTMController]]:
    """The space, the resolved ENAS settings and `{"random": untrained, kind: trained}` controllers of a run."""
    config = rundir.load_config(run_path)
    if config["strategy"]["name"] != "enas":
        raise UserError(f"{run_path} trained strategy {config['strategy']['name']!r}; nas analyze controller reads "
                        "ENAS runs (strategy enas)")
    if config.get("split", {}).get("method", "none") != "none":
        raise UserError(f"{run_path} is a few-shot split run; nas analyze controller reads one-shot ENAS runs")
    last = run_path / "checkpoints" / "last.pt"
    if not last.is_file():
        raise UserError(f"{run_path} has no checkpoint yet (checkpoints/last.pt); train it first")
    options = {k: v for k, v in config["strategy"].items() if k != "name"}
    settings = ENASStrategy.resolved({**strategies.entry("enas").defaults(), **options})
    space = searchspaces.get(config["space"]["name"])
    trained = build_controller(space, settings, config["seed"])
    trained.load_state_dict(checkpoint.load(last)["strategy"]["controller"])
    kind = "memory buffer" if settings["memory"] else "plain"
    return space, {**settings, "seed": config["seed"], "data": config["data"]["name"]}, {
        "random": build_controller(space, settings, config["seed"]), kind: trained}


def default_truth(space: searchspaces.Space, dataset: str) -> tuple[nasbench.Benchmark, str] | None:
    """The first registered benchmark of `space` with results on `dataset`, or None."""
    for name in nasbench.names():
        try:
            bench = nasbench.load(name)
        except nasbench.BenchmarkError:
            continue
        if bench.space == space.name and dataset in bench.datasets:
            return bench, dataset
    return None


def truth_lookup(space: searchspaces.Space, bench: nasbench.Benchmark, dataset: str,
                 metric: str) -> Callable[[list[searchspaces.Arch]], np.ndarray]:
    """`archs -> benchmark metric` (NaN where the table lacks the arch), by class of identical networks."""
    if metric not in bench.metrics(dataset):
        raise UserError(f"benchmark {bench.name} has no metric {metric!r} for {dataset}; accepted: "
                        f"{', '.join(bench.metrics(dataset))}")

    def lookup(archs: list[searchspaces.Arch]) -> np.ndarray:
        keys = [space.canonical(a).to_string() for a in archs]
        return bench.query_many(keys, dataset, metric, missing="nan")

    return lookup


# --- the analysis ---------------------------------------------------------------------------------------------
def pair_measures(space: searchspaces.Space, archs: Sequence[searchspaces.Arch], truth: np.ndarray | None,
                  ged: EditDistances) -> dict[str, np.ndarray]:
    """Every measure over the pairs i < j (in `np.triu_indices` order); NaN where a benchmark value is missing."""
    i, j = np.triu_indices(len(archs), k=1)
    graphs = [space.to_graph(a) for a in archs]
    out = {
        "common_ops": np.array([common_ops(space, archs[a], archs[b]) for a, b in zip(i, j)], dtype=float),
        "common_connections": np.array([common_connections(graphs[a], graphs[b]) for a, b in zip(i, j)], dtype=float),
        "edit_distance": np.array([ged(graphs[a], graphs[b]) for a, b in zip(i, j)], dtype=float),
    }
    out["abs_perf_diff"] = np.abs(truth[i] - truth[j]) if truth is not None else np.full(len(i), np.nan)
    return out


def hidden_distances(hidden: np.ndarray) -> dict[str, np.ndarray]:
    """L2 and cosine (1 - cos) distances between hidden states over the pairs i < j."""
    i, j = np.triu_indices(len(hidden), k=1)
    l2 = np.linalg.norm(hidden[i] - hidden[j], axis=1)
    unit = hidden / np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12)
    return {"l2": l2, "cosine": 1.0 - (unit[i] * unit[j]).sum(1)}


def correlations(distances: dict[str, np.ndarray], measures: dict[str, np.ndarray]) -> dict[str, Any]:
    """Spearman and Pearson of every hidden distance with every measure, over the pairs where both are finite."""
    out: dict[str, Any] = {}
    for dname, dist in distances.items():
        out[dname] = {}
        for mname, values in measures.items():
            keep = np.isfinite(values) & np.isfinite(dist)
            ok = keep.sum() >= 3 and np.ptp(values[keep]) > 0 and np.ptp(dist[keep]) > 0
            out[dname][mname] = {
                "spearman": float(nasbench.spearman(dist[keep], values[keep])) if ok else None,
                "pearson": float(nasbench.pearson(dist[keep], values[keep])) if ok else None,
                "pairs": int(keep.sum()),
            }
    return out


@torch.no_grad()
def analyse_controller(controller: LSTMController, space: searchspaces.Space, samples: int, seed: int,
                       truth: Callable[[list[searchspaces.Arch]], np.ndarray] | None,
                       ged: EditDistances) -> dict[str, Any]:
    """The hidden-state analysis of one controller: correlations, plus what the figure shows."""
    drawn = controller.sample(samples, np.random.default_rng(seed), space.allowed_next)
    archs = [space.decode(row) for row in drawn.tokens]
    measures = pair_measures(space, archs, truth(archs) if truth is not None else None, ged)
    distances = hidden_distances(drawn.hidden.double().numpy())
    distances.update({f"{k}_emit": v for k, v in hidden_distances(drawn.emit_hidden.double().numpy()).items()})
    return {
        "samples": samples,
        "distinct_archs": len(set(archs)),
        "mean_entropy": float(drawn.entropy.mean()),
        "correlations": correlations(distances, measures),
        "_pairs": {"hidden_l2": distances["l2"], **measures},  # for the figure; not written
    }


def analyse_runs(run_paths: Sequence[Path], samples: int = 100, seed: int = 0, benchmark: str | None = None,
                 dataset: str | None = None, metric: str = "test_acc", ged_timeout: float = 1.0,
                 out: Path | None = None, reporter: Reporter | None = None, command: str = "") -> dict[str, Any]:
    """Analyse every run's random and trained controller; write each run's files and the combined table."""
    reporter = reporter or Reporter(quiet=True)
    rows: list[dict[str, Any]] = []
    seen_inits: set[tuple] = set()
    for run_path in map(Path, run_paths):
        started = time.perf_counter()
        space, settings, controllers = run_controllers(run_path)
        truth, truth_info = _truth(space, settings["data"], benchmark, dataset, metric)
        ged = EditDistances(ged_timeout)
        results = {kind: analyse_controller(c, space, samples, seed, truth, ged) for kind, c in controllers.items()}
        report = {
            "run": str(run_path), "space": space.name, "seed": settings["seed"], "profile": settings["profile"],
            "memory": settings["memory"], "samples": samples, "sample_seed": seed, "truth": truth_info,
            "ged_timeout_s": ged_timeout, "ged_inexact_pairs": ged.inexact,
            "controllers": {k: {key: v for key, v in r.items() if not key.startswith("_")} for k, r in results.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
        atomic_write_json(run_path / "analysis" / "controller.json", report)
        plots.controller_hidden_states(run_path / "analysis" / "controller.png",
                                       {k: r["_pairs"] for k, r in results.items()}, MEASURE_LABELS)
        for kind, result in report["controllers"].items():
            if kind == "random":  # runs that differ only in training (memory or not) share their initialisation
                init = (space.name, settings["seed"], *(settings[k] for k in ("lstm_size", "tanh_constant",
                                                                               "op_tanh_reduce", "temperature")))
                if init in seen_inits:
                    continue
                seen_inits.add(init)
            rows.append({"run": str(run_path), "seed": settings["seed"], "profile": settings["profile"],
                         "kind": kind, "truth": truth_info, "distinct_archs": result["distinct_archs"],
                         "mean_entropy": result["mean_entropy"], "correlations": result["correlations"]})
        reporter.info(f"{run_path}: " + "; ".join(
            f"{kind} " + " ".join(f"{m} {_fmt(r['correlations']['l2'][m]['spearman'])}" for m in MEASURES)
            for kind, r in report["controllers"].items()) + f"  ({report['seconds']:.0f}s)")
    table = summarise(rows)
    combined = {"command": command, "git_sha": rundir.git_sha(), "runs": rows, "table": table, "paper": PAPER_TABLE,
                "samples": samples, "sample_seed": seed, "measures": list(MEASURES), "expected_sign": EXPECTED_SIGN}
    if out is not None:
        atomic_write_json(out, combined)
    return combined


STATES = {"l2": "read", "l2_emit": "emit"}  # the hidden state after reading the last token / that emitted it


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per hidden state (`read`, `emit`) and (profile, kind): the mean Spearman of the L2 hidden distance with each
    measure, a 95 % t-interval over runs (`nas.study.mean_interval`), and the number of runs."""
    from .study import mean_interval

    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(f"{row['profile']}/{row['kind']}", []).append(row)
    table: dict[str, Any] = {}
    for distance, state in STATES.items():
        for key, members in groups.items():
            table[f"{key} ({state})"] = {
                "runs": len(members), "state": state,
                "distinct_archs": float(np.mean([m["distinct_archs"] for m in members])),
                **{measure: mean_interval([m["correlations"][distance][measure]["spearman"] for m in members])
                   for measure in MEASURES}}
    return table


def format_table(table: dict[str, Any]) -> str:
    """The combined table as text: one row per (profile, kind), the mean Spearman per measure and the runs."""
    lines = ["controller (hidden state)".ljust(34) + "".join(MEASURE_LABELS[m].rjust(24) for m in MEASURES) + "  runs"]
    for key, entry in table.items():
        cells = []
        for m in MEASURES:
            e = entry[m]
            interval = f" [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]" if e["ci_low"] is not None else ""
            cells.append((_fmt(e["mean"]) + interval).rjust(24))
        lines.append(key.ljust(34) + "".join(cells) + f"  {entry['runs']}")
    return "\n".join(lines)


def _truth(space, run_dataset: str, benchmark: str | None, dataset: str | None, metric: str):
    if benchmark == "none":
        return None, None
    if benchmark is None:
        found = default_truth(space, dataset or run_dataset)
        if found is None:
            return None, None
        bench, ds = found
    else:
        try:
            bench = nasbench.load(benchmark)
        except nasbench.BenchmarkError as exc:
            raise UserError(str(exc)) from None
        if bench.space != space.name:
            raise UserError(f"benchmark {bench.name} is for space {bench.space!r}, not {space.name!r}")
        ds = dataset or run_dataset
        if ds not in bench.datasets:
            raise UserError(f"benchmark {bench.name} has no dataset {ds!r}; accepted: {', '.join(bench.datasets)}")
    return truth_lookup(space, bench, ds, metric), {"benchmark": bench.name, "dataset": ds, "metric": metric}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"

"""`nas search`: config -> space, supernet, strategy, data -> training -> post-training search -> run directory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import searchspaces
import strategies
import supernets

from . import checkpoint, plots, rundir
from . import data as datasets
from .engine import Trainer
from .errors import UserError
from .evaluate import ArchEvaluator
from .io import atomic_write_json
from .progress import Reporter
from .runtime import STREAM_CALIB, STREAM_MONITOR, STREAM_SEARCH, derive_seed, seed_everything, select_device


def build_components(config: dict, device: torch.device):
    """Space, data, supernet and strategy of a config, seeded; shared by search and later commands."""
    seed = config["seed"]
    seed_everything(seed, config["train"]["deterministic"])
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    dc = config["data"]
    bundle = datasets.load(
        dc["name"], data_dir=dc["data_dir"], download=dc["download"], valid_fraction=dc["valid_fraction"],
        split_seed=dc["split_seed"], device=device,
    )
    space = searchspaces.get(config["space"]["name"])
    net = supernets.build(space, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                          **config["supernet"]).to(device)
    strategy_opts = {k: v for k, v in config["strategy"].items() if k != "name"}
    strategy = strategies.get(config["strategy"]["name"], **strategy_opts)
    strategy.setup(net, space, seed, bundle, epochs=config["train"]["epochs"])
    return space, bundle, net, strategy


def _split(bundle, name: str):
    split = {"valid": bundle.valid, "test": bundle.test, "train": bundle.train}[name]
    if split is None:
        raise UserError(f"the {name} split is empty; set data.valid_fraction > 0 or choose another split")
    return split


def make_evaluator(config: dict, net: supernets.Supernet, bundle, split_name: str) -> ArchEvaluator:
    ec = config["eval"]
    return ArchEvaluator(
        net, _split(bundle, split_name), batch_size=ec["batch_size"],
        bn_mode=ec["bn_mode"] or config["supernet"].get("bn_mode", "batch"), calib_split=bundle.train,
        calib_batches=ec["calib_batches"], calib_batch_size=ec["calib_batch_size"],
        calib_seed=derive_seed(config["seed"], STREAM_CALIB), amp=config["train"]["amp"],
    )


def _task(config: dict, bundle) -> dict[str, Any]:
    """Arguments of the analytic cost functions: the standalone child in the benchmark configuration (affine BN)."""
    task = dict(num_classes=bundle.num_classes, in_channels=bundle.in_channels, image_size=bundle.image_size)
    if "N" in config["supernet"]:  # NB201: the final network has the supernet's macro structure
        task.update(C=config["supernet"]["C"], N=config["supernet"]["N"])
    return task  # DARTS: the evaluation network's own defaults (C=36, 20 layers)


def run_search(config: dict, run_path: Path, argv: Sequence[str], quiet: bool = False,
               resume: bool = False) -> dict[str, Any]:
    """Train the supernet, pick an arch, and write the run directory. Returns the summary."""
    started = time.perf_counter()
    reporter = Reporter(run_path / "log.txt", quiet=quiet)
    try:
        device = select_device(config["train"]["device"])
        rundir.write_environment(run_path, rundir.environment(argv, str(device)))
        space, bundle, net, strategy = build_components(config, device)
        monitor = _monitor(config, net, space, bundle)
        trainer = Trainer(config, net, strategy, bundle.train, device, reporter,
                          checkpoint_dir=run_path / "checkpoints", monitor=monitor,
                          on_epoch=lambda state: rundir.write_metrics(run_path, state.rows), valid_split=bundle.valid)
        last = run_path / "checkpoints" / "last.pt"
        if resume and last.is_file():
            trainer.load_checkpoint_state(checkpoint.load(last, map_location=device))
            reporter.info(f"resuming {run_path} after epoch {trainer.state.epoch}/{config['train']['epochs']}")
        reporter.info(
            f"search space {space.name}, strategy {strategy.name}, data {bundle.name} "
            f"({len(bundle.train)} train / {len(bundle.valid) if bundle.valid is not None else 0} valid / "
            f"{len(bundle.test)} test), device {device}, {sum(p.numel() for p in net.parameters()):,} supernet "
            f"parameters, run directory {run_path}"
        )
        train_started = time.perf_counter()
        state = trainer.fit()
        train_s = time.perf_counter() - train_started
        rundir.write_metrics(run_path, state.rows)
        report = strategy.report()
        if report:
            atomic_write_json(run_path / "strategy.json", report)
            if report.get("alpha_history"):
                plots.alpha_history(run_path / "plots" / "alphas.png", report)

        search_started = time.perf_counter()
        arch_info = _pick_arch(config, net, space, strategy, bundle, reporter)
        search_s = time.perf_counter() - search_started
        if arch_info is not None:
            atomic_write_json(run_path / "arch.json", arch_info)
        last_row = state.rows[-1] if state.rows else {}
        summary = {
            "status": "complete",
            "run_dir": str(run_path),
            "space": space.name,
            "strategy": strategy.name,
            "dataset": bundle.name,
            "seed": config["seed"],
            "epochs": state.epoch,
            "steps": state.global_step,
            "final_train_loss": last_row.get("train_loss"),
            "final_train_acc": last_row.get("train_acc"),
            "best_arch": arch_info["arch"] if arch_info else None,
            "best_score": arch_info["score"] if arch_info else None,
            "best_test_acc_inherited": arch_info.get("test_acc_inherited") if arch_info else None,
            "train_seconds_this_invocation": round(train_s, 2),
            "search_seconds": round(search_s, 2),
            "total_seconds_this_invocation": round(time.perf_counter() - started, 2),
            "data": bundle.info,
        }
        atomic_write_json(run_path / "summary.json", summary)
        if arch_info:
            reporter.info(f"best arch {arch_info['arch']}  {arch_info['metric']} {arch_info['score']:.2f}%"
                          f"  (test {arch_info['test_acc_inherited']:.2f}% with inherited weights)")
        reporter.info(f"run directory: {run_path}")
        if arch_info:
            reporter.info(f"next: nas arch info --space {space.name} --arch '{arch_info['arch']}'")
        return summary
    finally:
        reporter.close()


def _monitor(config: dict, net, space, bundle):
    """After every epoch: mean valid accuracy of a few fixed archs (a cheap health signal) and, every
    `rank.every` epochs, Kendall tau against a benchmark on a fixed arch sample (`--rank-every`)."""
    parts = []
    count = config["eval"]["monitor_archs"]
    if count > 0 and bundle.valid is not None:
        rng = np.random.default_rng(derive_seed(config["seed"], STREAM_MONITOR))
        archs = [space.sample(rng) for _ in range(count)]
        evaluator = make_evaluator(config, net, bundle, "valid")
        parts.append(lambda epoch: {"monitor_acc": float(np.mean([evaluator(a) for a in archs]))})
    rc = config["rank"]
    if rc["every"] > 0:
        parts.append(_rank_monitor(config, net, space, bundle))
    if not parts:
        return None
    return lambda epoch: {k: v for part in parts for k, v in part(epoch).items()}


def _rank_monitor(config: dict, net, space, bundle):
    import nasbench

    from .rank import choose_archs, load_benchmark, truth_dataset

    rc = config["rank"]
    bench = load_benchmark(rc["benchmark"])
    if bench.space != space.name:
        raise UserError(f"rank.benchmark {bench.name} is for space {bench.space!r}, not {space.name!r}")
    dataset = truth_dataset(bench, rc["dataset"], bundle.name)
    chosen = choose_archs(bench, rc["archs"], config["seed"])
    truth = bench.query_many(chosen, dataset, rc["metric"])
    archs = [space.parse(a) for a in chosen]
    evaluator = make_evaluator(config, net, bundle, rc["split"])

    def rank(epoch: int) -> dict[str, float]:
        if epoch % rc["every"] and epoch != config["train"]["epochs"]:
            return {}
        scores = np.array([evaluator(a) for a in archs])
        return {"kendall_tau": float(nasbench.kendall_tau(scores, truth))}

    return rank


def _pick_arch(config: dict, net, space, strategy, bundle, reporter: Reporter) -> dict[str, Any] | None:
    sc = config["search"]
    derived = strategy.derive()
    task = _task(config, bundle)
    evaluator = make_evaluator(config, net, bundle, sc["split"]) if sc["method"] != "none" or derived else None
    if derived is not None:
        best, score, method, evaluated = derived, evaluator(derived), f"{strategy.name}.derive", 1
    elif sc["method"] == "none":
        return None
    else:
        limits = {"params": sc["max_params"], "flops": sc["max_flops"]}

        def allowed(arch) -> bool:
            return all(limit is None or getattr(space, kind)(arch, **task) <= limit for kind, limit in limits.items())

        def on_result(n: int, arch, score: float) -> None:
            reporter.live(f"search {n}/{sc['budget']}  {score:.2f}%  {arch.to_string()}")

        rng = np.random.default_rng(derive_seed(config["seed"], STREAM_SEARCH))
        kwargs = {}
        if sc["method"] == "evolution":
            kwargs = {"population": sc["population"], "sample_size": sc["sample_size"]}
        result = strategies.SEARCHERS[sc["method"]](
            space, evaluator, budget=sc["budget"], rng=rng, valid_only=sc["valid_only"],
            allowed=allowed if any(v is not None for v in limits.values()) else None, on_result=on_result, **kwargs,
        )
        best, score, method, evaluated = result.best, result.score, sc["method"], result.evaluations
        reporter.info(f"{method} search: {evaluated} archs scored on the {sc['split']} split")
    test_acc = evaluator(best) if sc["split"] == "test" else make_evaluator(config, net, bundle, "test")(best)
    return {
        "arch": best.to_string(),
        "space": space.name,
        "score": score,
        "metric": f"{sc['split']}_acc",
        "test_acc_inherited": test_acc,
        "method": method,
        "evaluated": evaluated,
        **evaluator.description,
        "params": space.params(best, **task),
        "flops": space.flops(best, **task),
        "cost_model": {k: v for k, v in task.items()},
    }

"""`nas search`: config -> space, supernet, strategy, data -> training -> post-training search -> run directory."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import nasbench
import searchspaces
import strategies

from . import checkpoint, fewshot, plots, rundir
from .components import build_components, cost_task, make_evaluator
from .engine import PathCosts, Trainer, TrainState
from .errors import UserError
from .io import atomic_write_json, atomic_write_text
from .latency import load_latency
from .limits import search_limits, within
from .progress import Reporter
from .rank import choose_archs, load_benchmark, truth_dataset
from .runtime import STREAM_MONITOR, STREAM_SEARCH, derive_seed, select_device

STREAM_FLOPS_REFERENCE = 21  # the uniform reference sample of the sampled-FLOPs histogram
STREAM_SAMPLE_CHECK = 22  # the uniformly sampled archs of the post-training check (eval.sample_check)
REFERENCE_MAX = 20_000  # at most this many uniform reference archs (analytic FLOPs cost up to ~0.3 ms each)


def _latency(config: dict, space) -> Callable[[Any], float] | None:
    """The latency model `arch -> ms` of `search.latency` when `search.max_latency` is set (nas/latency.py)."""
    sc = config["search"]
    if sc["max_latency"] is None:
        return None
    if not sc["latency"]:
        raise UserError("search.max_latency (--max-latency) needs a latency model: set search.latency (--latency) "
                        "to a lookup table, a table of measured archs or module:function")
    return load_latency(sc["latency"], space)


def check_latency_model(config: dict) -> None:
    """Load the run's latency model once, so that a bad table or hook is reported before the run starts."""
    _latency(config, searchspaces.get(config["space"]["name"]))


def _constraint(config: dict, space, task: dict[str, Any]) -> Callable[[Any], bool] | None:
    """`allowed(arch)` for every limit of the run (params, FLOPs, latency), or None without limits."""
    limits, latency = search_limits(config), _latency(config, space)
    if not limits and latency is None:
        return None
    return within(space, task, limits, latency, config["search"]["max_latency"])


def check_limits(config: dict, space, task: dict[str, Any]) -> None:
    """Refuse, before training, limits that no arch of the space meets: the smallest arch (fewest parameters)
    is tried first, then a seeded sample of 2,000 archs (FLOPs need not be smallest where params are)."""
    allowed = _constraint(config, space, task)
    if allowed is None or config["search"]["method"] == "none":
        return
    limits = search_limits(config)
    smallest = space.smallest(**task)
    if allowed(smallest):
        return
    rng = np.random.default_rng(derive_seed(config["seed"], STREAM_SEARCH))
    if any(allowed(space.sample(rng)) for _ in range(2000)):
        return
    costs = {kind: getattr(space, kind)(smallest, **task) for kind in limits}
    bad = ", ".join(f"search.max_{kind}={limit:,} (--max-{kind})" for kind, limit in limits.items()
                    if costs[kind] > limit)
    if not bad:
        raise UserError(f"search.max_latency={config['search']['max_latency']} ms (--max-latency) excludes every "
                        f"arch of space {space.name!r} that was tried (the smallest and 2,000 samples) by the model "
                        f"{config['search']['latency']}; use a larger limit")
    need = " and ".join(f"--max-{kind} >= {costs[kind]:,}" for kind, limit in limits.items() if costs[kind] > limit)
    raise UserError(f"{bad} excludes every arch of space {space.name!r}: its smallest arch has "
                    f"{', '.join(f'{costs[k]:,} {k}' for k in costs)} for this task; use {need}")


def _path_costs(space, task: dict[str, Any]) -> PathCosts | None:
    """The record of the analytic FLOPs of every trained path, where the space counts FLOPs."""
    if not space.has_flops:
        return None
    # A hard sample is an arch of the space only where the relaxation has one row per decision (NB201, MobileNet);
    # DARTS's relaxation has one row per edge, and GDAS's one op on every edge is no genotype of the space.
    per_decision = [label for label, _ in space.relaxation()] == list(space.labels)
    return PathCosts(lambda arch: space.flops(arch, **task), space.decode if per_decision else lambda hard: None)


def write_sampled_flops(run_path: Path, config: dict, space, strategy, record: PathCosts) -> None:
    """`sampled_flops.csv` (epoch, global step, path position, FLOPs of every trained path) and
    `plots/sampled_flops.png`: its histogram over a seeded uniform sample of the space, smallest/largest marked."""
    lines = ["epoch,step,path,flops"]
    lines += [f"{e + 1},{s},{p},{f}" for e, s, p, f in zip(record.epochs, record.steps, record.paths, record.values)]
    atomic_write_text(run_path / "sampled_flops.csv", "\n".join(lines) + "\n")
    if not record.values:
        return
    task = strategy.cost_task
    rng = np.random.default_rng(derive_seed(config["seed"], STREAM_FLOPS_REFERENCE))
    reference = [space.flops(space.sample(rng), **task) for _ in range(min(len(record), REFERENCE_MAX))]
    plots.sampled_flops(
        run_path / "plots" / "sampled_flops.png", record.values, reference,
        extremes={"smallest": space.flops(space.smallest(**task), **task),
                  "largest": space.flops(space.largest(**task), **task)},
        title=f"{strategy.name} on {space.name}: FLOPs of the trained paths",
    )


def run_search(config: dict, run_path: Path, argv: Sequence[str], quiet: bool = False,
               resume: bool = False, on_epoch: Callable[[TrainState], None] | None = None) -> dict[str, Any]:
    """Train the supernet, pick an arch, and write the run directory. Returns the summary.

    `on_epoch(state)` runs after every epoch, once its checkpoint and metrics.csv are written (Ray Tune
    reports and checkpoints there)."""
    if strategies.strategy_class(config["strategy"]["name"]).inputs == "text":
        from .textsearch import run_text_search  # teacher, SuperLMs and the task-agnostic search

        return run_text_search(config, run_path, argv, quiet, resume, on_epoch)
    started = time.perf_counter()
    reporter = Reporter(run_path / "log.txt", quiet=quiet)
    try:
        device = select_device(config["train"]["device"])
        rundir.write_environment(run_path, rundir.environment(argv, str(device)))
        if config["split"]["method"] != "none":
            return _run_split(config, run_path, device, reporter, resume, on_epoch, started)
        space, bundle, net, strategy = build_components(config, device)
        check_limits(config, space, strategy.cost_task)
        monitor = _monitor(config, net, space, bundle)
        path_costs = _path_costs(space, strategy.cost_task)
        trainer = Trainer(config, net, strategy, bundle.train, device, reporter,
                          checkpoint_dir=run_path / "checkpoints", monitor=monitor,
                          on_epoch=lambda state: _epoch_done(run_path, state, on_epoch), valid_split=bundle.valid,
                          path_costs=path_costs)
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
        if path_costs is not None:
            write_sampled_flops(run_path, config, space, strategy, path_costs)
        report = strategy.report()
        if report:
            atomic_write_json(run_path / "strategy.json", report)
            if report.get("alpha_history"):
                plots.alpha_history(run_path / "plots" / "alphas.png", report)

        population = _sample_check(config, space, bundle, reporter, lambda archs: list(map(
            make_evaluator(config, net, bundle, "valid"), archs)))
        search_started = time.perf_counter()
        arch_info = _pick_arch(config, net, space, strategy, bundle, reporter)
        search_s = time.perf_counter() - search_started
        if arch_info is not None:
            atomic_write_json(run_path / "arch.json", arch_info)
        summary = _summary(config, run_path, space.name, strategy.name, bundle, state.epoch, state.global_step,
                           state.rows, arch_info, population, train_s, search_s, started)
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


def _summary(config: dict, run_path: Path, space: str, strategy: str, bundle, epochs: int, steps: int,
             rows: list[dict[str, Any]], best: dict[str, Any] | None, population: dict[str, Any] | None,
             train_s: float, search_s: float, started: float, **extra: Any) -> dict[str, Any]:
    """summary.json of a finished search: what ran, the last epoch's figures, the picked arch, timings; `extra`
    adds what a kind of run has besides (a few-shot run's split)."""
    last_row = rows[-1] if rows else {}
    return {
        "status": "complete", "run_dir": str(run_path), "space": space, "strategy": strategy,
        "dataset": bundle.name, "seed": config["seed"], "epochs": epochs, "steps": steps,
        "final_train_loss": last_row.get("train_loss"), "final_train_acc": last_row.get("train_acc"),
        "best_arch": best["arch"] if best else None,
        "best_score": best["score"] if best else None,
        "best_test_acc_inherited": best.get("test_acc_inherited") if best else None,
        "sampled_archs_valid_acc": population,
        **extra,
        "train_seconds_this_invocation": round(train_s, 2),
        "search_seconds": round(search_s, 2),
        "total_seconds_this_invocation": round(time.perf_counter() - started, 2),
        "data": bundle.info,
    }


def _sample_check(config: dict, space, bundle, reporter: Reporter,
                  score: Callable[[list], Sequence[float]]) -> dict[str, Any] | None:
    """How well the trained supernet serves the space as a whole: the inherited valid accuracy (`score(archs)`) of
    `eval.sample_check` uniformly sampled archs (seeded, the same archs for every strategy with that seed).
    A search can pick a good arch from a supernet that serves most of the space badly; this shows which."""
    count = config["eval"].get("sample_check", 0)  # runs written before the key existed: off
    if count <= 0 or bundle.valid is None:
        return None
    rng = np.random.default_rng(derive_seed(config["seed"], STREAM_SAMPLE_CHECK))
    scores = np.asarray(score([space.sample(rng) for _ in range(count)]), dtype=float)
    result = {"archs": count, "median": float(np.median(scores)), "p10": float(np.percentile(scores, 10)),
              "p90": float(np.percentile(scores, 90)), "mean": float(scores.mean())}
    reporter.info(f"inherited valid accuracy of {count} uniformly sampled archs: median {result['median']:.1f}% "
                  f"(10th-90th percentile {result['p10']:.1f}-{result['p90']:.1f}%)")
    return result


def _run_split(config: dict, run_path: Path, device, reporter: Reporter, resume: bool,
               on_epoch: Callable[[TrainState], None] | None, started: float) -> dict[str, Any]:
    """`nas search` with few-shot splitting (nas/fewshot.py): train the split tree, pick an arch in every leaf
    (its strategy's own derive, or the post-training search with the leaf's share of the budget), keep the best
    by its search-split score, and write the run directory with `split.json` and `plots/split.png`."""
    trainer = fewshot.FewShotTrainer(config, run_path, device, reporter, on_epoch)
    space, bundle = trainer.space, trainer.bundle
    task = cost_task(config, bundle, space)
    check_limits(config, space, task)
    reporter.info(f"search space {space.name}, strategy {config['strategy']['name']}, data {bundle.name}, "
                  f"few-shot split ({config['split']['method']}) after epochs "
                  f"{', '.join(map(str, config['split']['epochs']))} of {config['train']['epochs']}, device {device}, "
                  f"run directory {run_path}")
    train_started = time.perf_counter()
    tree = trainer.fit(resume)
    train_s = time.perf_counter() - train_started - trainer.score_seconds  # training alone; the scores apart
    rows = [row for node in tree.walk() for row in node.rows]
    rundir.write_metrics(run_path, rows)
    fewshot.write_split_plot(run_path, tree)
    leaves = tree.leaves()
    population = _sample_check(config, space, bundle, reporter, lambda archs: fewshot.routed_scores(
        config, run_path, tree, space, bundle, trainer.net, device, archs, "valid")[0])
    search_started = time.perf_counter()
    leaf_config = copy.deepcopy(config)
    leaf_config["search"]["budget"] = fewshot.split_budget(config["search"]["budget"], len(leaves))
    picks = []
    for leaf in leaves:
        net, subspace, strategy, _ = trainer.build(leaf)
        info = _pick_arch(leaf_config, net, subspace, strategy, bundle, reporter)
        if info is not None:
            picks.append({**info, "subnet": leaf.id})
    search_s = time.perf_counter() - search_started
    best = max(picks, key=lambda info: info["score"]) if picks else None
    if best is not None:
        atomic_write_json(run_path / "arch.json", {**best, "selection": f"best {best['metric']} over the picks of "
                                                   f"{len(leaves)} sub-supernets", "leaf_picks": picks})
    summary = _summary(config, run_path, space.name, config["strategy"]["name"], bundle, tree.total,
                       sum(int(row.get("steps", 0)) for row in rows), rows, best, population, train_s, search_s,
                       started, best_subnet=best["subnet"] if best else None,
                       split={"method": tree.method, "epochs": tree.epochs, "sub_supernets": len(leaves),
                              "units": [n.split["unit"] for n in tree.walk() if n.split],
                              "score_seconds_this_invocation": round(trainer.score_seconds, 2)})
    atomic_write_json(run_path / "summary.json", summary)
    if best:
        reporter.info(f"best arch {best['arch']} (sub-supernet {best['subnet']})  {best['metric']} "
                      f"{best['score']:.2f}%  (test {best['test_acc_inherited']:.2f}% with inherited weights)")
    reporter.info(f"run directory: {run_path}")
    return summary


def _epoch_done(run_path: Path, state: TrainState, on_epoch: Callable[[TrainState], None] | None) -> None:
    rundir.write_metrics(run_path, state.rows)
    if on_epoch is not None:
        on_epoch(state)


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
    rc = config["rank"]
    bench = load_benchmark(rc["benchmark"])
    if bench.space != space.name:
        raise UserError(f"rank.benchmark {bench.name} is for space {bench.space!r}, not {space.name!r}")
    dataset = truth_dataset(bench, rc["dataset"], bundle.name)
    chosen = choose_archs(bench, rc["archs"], config["seed"], rc.get("dedup", False))
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
    derived = strategy.derive(max_flops=sc["max_flops"])
    task = strategy.cost_task  # the run's cost task, computed once when the strategy was set up
    allowed = _constraint(config, space, task)
    if derived is not None and allowed is not None and not allowed(derived):
        reporter.info(f"{strategy.name}'s own arch {derived.to_string()} exceeds the search limits; searching "
                      "with inherited weights instead")
        derived = None
    evaluator = make_evaluator(config, net, bundle, sc["split"]) if sc["method"] != "none" or derived else None
    if derived is not None:
        best, score, method = derived, evaluator(derived), f"{strategy.name}.derive"
        evaluated = max(1, strategy.derive_scored)
    elif sc["method"] == "none":
        return None
    else:
        limits = search_limits(config)

        def on_result(n: int, arch, score: float) -> None:
            reporter.live(f"search {n}/{sc['budget']}  {score:.2f}%  {arch.to_string()}")

        rng = np.random.default_rng(derive_seed(config["seed"], STREAM_SEARCH))
        kwargs = {}
        if sc["method"] == "evolution":
            kwargs = {"population": sc["population"], "sample_size": sc["sample_size"]}
        try:
            result = strategies.SEARCHERS[sc["method"]](
                space, evaluator, budget=sc["budget"], rng=rng, valid_only=sc["valid_only"],
                allowed=allowed, on_result=on_result, **kwargs,
            )
        except ValueError as exc:  # the searcher met no allowed arch: a limit too tight for this space
            if allowed is None:
                raise
            limit_text = " and ".join([f"search.max_{kind}={limit:,}" for kind, limit in limits.items()]
                                      + ([f"search.max_latency={sc['max_latency']}"] if sc["max_latency"] else []))
            raise UserError(f"the {sc['method']} search found no arch within {limit_text}: {exc}; loosen the "
                            "limit (the trained supernet is kept in checkpoints/)") from None
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
        "limits": {"max_params": sc["max_params"], "max_flops": sc["max_flops"], "max_latency": sc["max_latency"]},
        **({"latency_ms": _latency(config, space)(best), "latency_model": sc["latency"]}
           if sc["max_latency"] is not None else {}),
    }

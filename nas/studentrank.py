"""`nas analyze students RUN_DIR`: how faithfully a finished AutoDistil run's SuperLMs rank their students.

The task-agnostic search (§6.7) trusts the held-out distillation loss of a student with the weights it inherits
from its SuperLM. This analysis checks that trust on the run's own data: it draws `students` archs (uniformly over
the run's sub-spaces, then uniformly inside one; distinct), scores each with inherited weights, then trains each
one stand-alone, from the teacher's slice (where every SuperLM student starts too), with the run's objective,
optimiser and schedule for the same number of steps as one SuperLM (one student per step instead of the
sandwich's four), and scores it again. The Kendall tau and Spearman between the two losses, with bootstrap
intervals, over all students and within each sub-space, go to `analysis/students.json` with a scatter plot.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

import nasbench
import supernets
from searchspaces.transformer import TransformerSpace

from . import checkpoint, plots, rundir
from .components import strategy_options
from .distill import DistillTrainer, HeldOut
from .errors import UserError
from .io import atomic_write_json
from .progress import ETA, Reporter, format_seconds
from .runtime import derive_seed, seed_everything, select_device

STREAM_STUDENTS = 41


def _draw(subspaces: dict[str, TransformerSpace], count: int, seed: int) -> list[tuple[str, Any]]:
    rng = np.random.default_rng(derive_seed(seed, STREAM_STUDENTS))
    names, chosen = list(subspaces), []
    capacity = sum(sub.size() for sub in subspaces.values())
    if count > capacity:
        raise UserError(f"--students {count} exceeds the {capacity} students of the run's sub-spaces")
    while len(chosen) < count:
        name = names[int(rng.integers(len(names)))]
        arch = subspaces[name].sample(rng)
        if all(arch != a for _, a in chosen):
            chosen.append((name, arch))
    return chosen


def rank_students(run_dir: Path, students: int = 20, seed: int = 0, quiet: bool = False,
                  out: Path | None = None) -> dict[str, Any]:
    """Inherited vs stand-alone held-out loss of `students` drawn students (see the module docstring)."""
    from strategies import get as get_strategy

    from .textsearch import obtain_teacher

    if students < 3:
        raise UserError(f"--students takes 3 or more students, got {students}")
    config = rundir.load_config(run_dir)
    if config["strategy"]["name"] != "autodistil" or not (run_dir / "summary.json").is_file():
        raise UserError(f"{run_dir} is not a finished nas search --strategy autodistil run (no summary.json or "
                        "another strategy)")
    out = out or run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(out / "students.log", quiet=quiet)
    try:
        device = select_device(config["train"]["device"])
        seed_everything(config["seed"], config["train"]["deterministic"])
        teacher, _, text, _ = obtain_teacher(config, run_dir, device, reporter)
        probe = get_strategy("autodistil", **strategy_options(config))
        space = TransformerSpace(teacher=teacher.teacher)
        subspaces = probe.subspaces(space)
        held_out = HeldOut(teacher, teacher.largest(), text.valid[:config["strategy"]["eval_sequences"]],
                           probe.distill_loss, config["eval"]["batch_size"], device)
        drawn = _draw(subspaces, students, seed)
        inherited = {}
        for name, sub in subspaces.items():
            net = supernets.build(sub, **config["supernet"]).to(device)
            net.load_state_dict(checkpoint.load(run_dir / "superlms" / name / "checkpoints" / "last.pt",
                                                map_location=device)["model"])
            for n, arch in drawn:
                if n == name:
                    inherited[arch] = held_out(net, arch)
        rows, eta, started = [], ETA(len(drawn)), time.perf_counter()
        for index, (name, arch) in enumerate(drawn):
            alone = space.restrict_json({d.label: [c] for d, c in zip(space.decisions, arch.choices)})
            net = supernets.build(alone, **config["supernet"]).to(device)
            net.load_state_dict(teacher.state_dict())
            strategy = copy.deepcopy(probe)
            strategy.setup(net, alone, config["seed"])
            silent = Reporter(None, quiet=True)
            DistillTrainer(config, net, teacher, strategy, text.train, held_out, device, silent, arch.to_string()).fit()
            rows.append({"arch": arch.to_string(), "subspace": name, "inherited_loss": inherited[arch],
                         "standalone_loss": held_out(net, arch), "params": space.params(arch)})
            remaining = eta.remaining(index + 1)
            reporter.info(f"student {index + 1}/{len(drawn)} {arch.to_string()} ({name}): inherited "
                          f"{rows[-1]['inherited_loss']:.4f}, stand-alone {rows[-1]['standalone_loss']:.4f}"
                          + (f"  ETA {format_seconds(remaining)}" if remaining and index + 1 < len(drawn) else ""))
        result = _report(rows, subspaces, config, students, seed)
        result["seconds"] = round(time.perf_counter() - started, 1)
        atomic_write_json(out / "students.json", result)
        plots.student_ranking(out / "students.png", rows, result["all"]["kendall_tau"]["value"])
        reporter.info(f"Kendall tau inherited vs stand-alone over {len(rows)} students: "
                      f"{result['all']['kendall_tau']['value']:.3f} [{result['all']['kendall_tau']['ci_low']:.3f}, "
                      f"{result['all']['kendall_tau']['ci_high']:.3f}]; within sub-spaces (mean): "
                      f"{result['within_mean_tau']:.3f}; {out / 'students.json'}")
        return result
    finally:
        reporter.close()


def _report(rows: list[dict[str, Any]], subspaces, config: dict, students: int, seed: int) -> dict[str, Any]:
    """Ranking metrics (higher = better, so losses are negated) over all students and per sub-space."""
    def metrics(part: list[dict[str, Any]]) -> dict[str, Any]:
        report = nasbench.ranking_report([-r["inherited_loss"] for r in part], [-r["standalone_loss"] for r in part],
                                         ks=(0.25,), seed=seed)
        return {k: report[k] for k in ("n", "kendall_tau", "spearman")}

    within = {name: metrics([r for r in rows if r["subspace"] == name]) for name in subspaces
              if sum(r["subspace"] == name for r in rows) >= 3}
    taus = [w["kendall_tau"]["value"] for w in within.values() if w["kendall_tau"]["value"] is not None]
    return {"students": students, "seed": seed, "budget": {"epochs": config["train"]["epochs"],
                                                            "batch_size": config["train"]["batch_size"],
                                                            "lr": config["train"]["lr"]},
            "all": metrics(rows), "within": within, "within_mean_tau": float(np.mean(taus)) if taus else None,
            "rows": rows}

"""A sampler's cost per training step: time inside its hooks over the whole step, and the step over uniform's.

    python benchmarks/sampler_overhead.py [--strategy pada] [--space nb201] [--supernet KEY=VALUE]
        [--strategy-option KEY=VALUE] [--batch-size 64] [--steps 8] [--repeats 3] [--hooks-only]

Each trial trains a fresh supernet (same seed, same synthetic data held on the device) for two epochs with
`nas.engine.Trainer` and measures the second, so the strategy's whole bookkeeping is included: per-step hooks,
the epoch's resampled index list and the end-of-epoch update.

Direct measure (`hook_s_per_step`, `step_s`, `hook_ratio`). Every hook the engine calls on the strategy
(`sample_step`, `sample`, `loss`, `after_backward`, `epoch_order`, `on_epoch_end`) is wrapped with
`time.perf_counter`; a hook called from inside another (the default `sample_step` calls `sample`) counts once,
in the outer one. Per trial, `hook_s_per_step` is the hooks' seconds in the second epoch over its steps
(`epoch_order` and `on_epoch_end` amortised over them), `step_s` that epoch's seconds (from entering
`epoch_order` to leaving `on_epoch_end`) over its steps, and `hook_ratio` their ratio, the share of a step spent
in the strategy's bookkeeping. Figures are medians over repeats (`hook_ratio`: median of per-repeat ratios). On
CUDA the device is synchronised before and after every hook, so that a hook is charged for its own kernels and
not for the forward/backward still queued; that removes the overlap of host bookkeeping with queued device work,
so steps are those of a synchronised loop (slightly slower than a free-running one), and every trial,
baselines included, is synchronised alike. The CPU needs no synchronisation.

Whole-run comparison (skipped with `--hooks-only`). A path's cost varies a hundredfold across NB201 archs, so the
baseline replays exactly the paths the strategy drew, with uniform's (empty) bookkeeping: `ratio` is the
strategy's step over a plain SPOS step on the same paths. `ratio_free` compares with uniform drawing its own
paths (confounded by which paths each drew). Both are ratios of two separate runs, so they carry the machine's
run-to-run noise (on a shared CPU they moved between 0.94 and 1.29 for PA&DA); `hook_ratio` does not. Repeats
alternate the order of the runs.

The last line of stdout is one JSON object with `hook_s_per_step`, `step_s` and `hook_ratio` (and, unless
`--hooks-only`, `baseline_step_s`, `strategy_step_s` and `ratio`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _args import OneLineParser, key_values, non_negative_int, positive_int
from _timing import environment, synchronizer

import searchspaces
import strategies
import supernets
from nas import config as cfg
from nas import data
from nas.engine import Trainer
from nas.io import atomic_write_json
from nas.progress import Reporter
from nas.runtime import seed_everything, select_device

# The strategy hooks the engine calls during training (`arch_step` only for strategies with `uses_arch_step`).
HOOKS: tuple[str, ...] = ("sample_step", "sample", "loss", "after_backward", "arch_step", "epoch_order",
                          "on_epoch_end")
TIMED_EPOCH = 1  # the second of two epochs: the first one warms up and gives epoch-end updates something to do


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="sampler_overhead.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="pada", help="strategy to measure (default pada)")
    p.add_argument("--space", default="nb201", choices=supernets.names())
    p.add_argument("--supernet", action="append", default=[], metavar="KEY=VALUE",
                   help="supernet build option, e.g. C=16, width_mult=0.35 (repeatable; default: the supernet's)")
    p.add_argument("--strategy-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the measured strategy, e.g. grad_read=after_backward (repeatable)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--image-size", type=positive_int, default=32)
    p.add_argument("--steps", type=positive_int, default=8, help="steps per epoch")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--C", type=positive_int, default=None, help="shorthand for --supernet C=... (cell spaces)")
    p.add_argument("--N", type=positive_int, default=None, help="shorthand for --supernet N=... (NB201)")
    p.add_argument("--hooks-only", action="store_true",
                   help="only the direct hook measure: skip the uniform baseline runs (a third of the time)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", metavar="PATH", default=None,
                   help="also add this setting's figures as a row of a results table (results/*.json, replacing "
                        "the row of the same setting) that python -m nas.report renders")
    args = p.parse_args(argv)
    if args.strategy not in strategies.names():
        p.error(f"unknown strategy {args.strategy!r}; accepted: {', '.join(strategies.names())}")
    supernet_items = [f"{key}={value}" for key, value in (("C", args.C), ("N", args.N)) if value is not None]
    supernet_items += args.supernet
    args.supernet_options = _given(key_values(p, "--supernet", supernet_items, supernets.entry(args.space).defaults(),
                                              f"the {args.space} supernet"), supernet_items)
    args.strategy_options = _given(key_values(p, "--strategy-option", args.strategy_option,
                                              strategies.entry(args.strategy).defaults(),
                                              f"strategy {args.strategy}"), args.strategy_option)
    return args


def _given(values: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """The options named on the command line (the rest stay the presets' defaults of the resolved config)."""
    named = {item.partition("=")[0] for item in items}
    return {key: value for key, value in values.items() if key in named}


class HookTimer:
    """Wraps a strategy's hooks with `time.perf_counter` and sums their seconds per epoch.

    A hook called while another one runs is not timed again (its time is part of the outer hook's). `sync` waits
    for the device before and after each timed hook. The epoch's own span runs from entering `epoch_order` to
    leaving `on_epoch_end`, the first and last hooks the engine calls in an epoch.
    """

    def __init__(self, strategy: strategies.Strategy, sync: Callable[[], None]):
        self.sync = sync
        self.epoch = -1
        self.seconds: dict[int, dict[str, float]] = {}
        self.span: dict[int, list[float]] = {}
        self._depth = 0
        for name in HOOKS:
            setattr(strategy, name, self._wrap(name, getattr(strategy, name)))

    def _wrap(self, name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return hook(*args, **kwargs)
            if name == "epoch_order":
                self.epoch = int(args[0] if args else kwargs["epoch"])
            self._depth += 1
            self.sync()
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                self.sync()
                end = time.perf_counter()
                self._depth -= 1
                per_hook = self.seconds.setdefault(self.epoch, dict.fromkeys(HOOKS, 0.0))
                per_hook[name] += end - start
                if name == "epoch_order":
                    self.span[self.epoch] = [start, end]
                elif name == "on_epoch_end":
                    self.span[self.epoch][1] = end

        return timed

    def per_step(self, epoch: int, steps: int) -> tuple[float, float, dict[str, float]]:
        """(hook seconds per step, step seconds, seconds per step of each hook) of one finished epoch."""
        per_hook = {name: s / steps for name, s in self.seconds[epoch].items()}
        start, end = self.span[epoch]
        return sum(per_hook.values()), (end - start) / steps, per_hook


class _Replay(strategies.UniformStrategy):
    """Uniform's hooks (none), but the paths of a recorded run."""

    name = "uniform"

    def __init__(self, archs: list):
        super().__init__()
        self.archs = list(archs)

    def sample(self):
        return self.archs.pop(0)


class _Recording:
    """Wraps a strategy's `sample` to record the paths it draws."""

    def __init__(self, strategy: strategies.Strategy):
        self.archs: list = []
        original = strategy.sample

        def sample():
            arch = original()
            self.archs.append(arch)
            return arch

        strategy.sample = sample


def timed_run(name: str, args: argparse.Namespace, bundle, device: torch.device, replay: list | None = None,
              record: list | None = None) -> dict[str, Any]:
    """Two epochs of `name` on a fresh supernet: per-step hook seconds, step seconds and the per-hook split of
    the second epoch."""
    options = args.strategy_options if name == args.strategy and replay is None else {}
    flags = {"space.name": args.space, "strategy.name": name, "train.epochs": 2, "train.batch_size": args.batch_size,
             "seed": args.seed, **{f"supernet.{k}": v for k, v in args.supernet_options.items()},
             **{f"strategy.{k}": v for k, v in options.items()}}
    config = cfg.resolve([], flags)
    seed_everything(args.seed, deterministic=False)
    space = searchspaces.get(args.space)
    net = supernets.build(space, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                          **config["supernet"]).to(device)
    strategy = _Replay(replay) if replay is not None else strategies.get(name, **options)
    strategy.setup(net, space, args.seed, bundle, epochs=2)
    recording = _Recording(strategy) if record is not None else None  # inside the timer: a list append
    timer = HookTimer(strategy, synchronizer(device))
    trainer = Trainer(config, net, strategy, bundle.train, device, Reporter(quiet=True))
    trainer.fit()
    if recording is not None:
        record.extend(recording.archs)
    hooks, step, per_hook = timer.per_step(TIMED_EPOCH, trainer.steps_per_epoch)
    return {"hook_s": hooks, "step_s": step, "per_hook_s": per_hook}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = select_device(args.device)
        bundle = data.load("synthetic", synthetic_size=args.steps * args.batch_size, synthetic_classes=10,
                           synthetic_image_size=args.image_size, valid_fraction=0.0, device=device)
    except Exception as exc:  # noqa: BLE001 - one line for any bad device or data size
        print(f"sampler_overhead.py: error: {exc}", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, Any]]] = {args.strategy: [], "replay": [], "uniform": []}
    paths: list = []
    for r in range(args.repeats):
        order = [args.strategy] if args.hooks_only else [args.strategy, "replay", "uniform"]
        for run in order if r % 2 == 0 else reversed(order):  # the strategy comes first in repeat 0: it draws paths
            if run == "replay":
                runs[run].append(timed_run("uniform", args, bundle, device, replay=paths))
            elif run == "uniform":
                runs[run].append(timed_run("uniform", args, bundle, device))
            else:
                runs[run].append(timed_run(run, args, bundle, device, record=paths if r == 0 else None))
        line = (f"repeat {r + 1}/{args.repeats}: {args.strategy} {runs[args.strategy][-1]['step_s'] * 1e3:.1f} "
                f"ms/step, {runs[args.strategy][-1]['hook_s'] * 1e3:.2f} ms of it in its hooks")
        if not args.hooks_only:
            line += (f"; uniform on the same paths {runs['replay'][-1]['step_s'] * 1e3:.1f}, uniform on its own "
                     f"paths {runs['uniform'][-1]['step_s'] * 1e3:.1f}")
        print(line, file=sys.stderr, flush=True)
    ours = runs[args.strategy]
    result: dict[str, Any] = {
        "strategy": args.strategy, "space": args.space,
        "hook_s_per_step": _median(ours, "hook_s"), "step_s": _median(ours, "step_s"),
        "hook_ratio": statistics.median(run["hook_s"] / run["step_s"] for run in ours),
        "hook_s_per_step_by_hook": {name: statistics.median(run["per_hook_s"][name] for run in ours)
                                    for name in HOOKS},
        "hook_timing": ("perf_counter around each hook, the device synchronised before and after it"
                        if device.type == "cuda" else "perf_counter around each hook (CPU: no synchronisation)"),
        # step seconds per repeat by run (the strategy's, and the baselines' below) and the strategy's hook seconds
        "per_repeat": {args.strategy: [run["step_s"] for run in ours], "hook_s": [run["hook_s"] for run in ours]},
    }
    if not args.hooks_only:
        base, other = _median(runs["replay"], "step_s"), result["step_s"]
        result.update({
            "baseline": "uniform on the strategy's paths", "baseline_step_s": base, "strategy_step_s": other,
            "ratio": other / base,
            "ratio_median_of_repeats": statistics.median(o["step_s"] / b["step_s"]
                                                         for o, b in zip(ours, runs["replay"])),
            "baseline_hook_s_per_step": _median(runs["replay"], "hook_s"),
            "uniform_own_paths_step_s": _median(runs["uniform"], "step_s"),
            "ratio_free": other / _median(runs["uniform"], "step_s"),
        })
        result["per_repeat"].update({name: [run["step_s"] for run in runs[name]] for name in ("replay", "uniform")})
    result.update({
        "strategy_options": args.strategy_options, "supernet_options": args.supernet_options,
        "batch_size": args.batch_size, "image_size": args.image_size, "steps_per_epoch": args.steps,
        "repeats": args.repeats, "seed": args.seed, **environment(device),
    })
    if args.record:
        record_row(Path(args.record), result, argv if argv is not None else sys.argv[1:])
    print(json.dumps(result))
    return 0


RECORD_COLUMNS = [["setting", "setting"], ["step_ms", "step (ms)"], ["hook_ms", "in its hooks (ms)"],
                  ["hook_ratio", "hook time / step time"], ["ratio", "step / uniform's on the same paths"]]


def record_row(path: Path, result: dict[str, Any], argv: list[str]) -> None:
    """Add (or replace) this setting's row in a table file of `nas.report`'s `json` kind, with its command."""
    options = ", ".join(f"{k}={v}" for k, v in {**result["supernet_options"], **result["strategy_options"]}.items())
    setting = (f"{result['strategy']} on {result['space']}{' (' + options + ')' if options else ''}, batch "
               f"{result['batch_size']}, {result['image_size']}x{result['image_size']}, {result['device']}")
    row = {"setting": setting, "step_ms": result["step_s"] * 1e3, "hook_ms": result["hook_s_per_step"] * 1e3,
           "hook_ratio": result["hook_ratio"], "ratio": result.get("ratio"),
           "command": shlex.join(["python", "benchmarks/sampler_overhead.py", *_without_record(argv)])}
    table = json.loads(path.read_text()) if path.exists() else {}
    rows = [r for r in table.get("rows", []) if r["setting"] != setting] + [row]
    table.update({"columns": RECORD_COLUMNS, "digits": {"step_ms": 1, "hook_ms": 2, "hook_ratio": 3, "ratio": 3},
                  "rows": rows, "command": "; ".join(r["command"] for r in rows),
                  "note": f"Medians over repeats; torch {result['torch']}, {result['threads']} threads."})
    atomic_write_json(path, table)


def _without_record(argv: list[str]) -> list[str]:
    """The command line minus `--record PATH` (the row's command reproduces the figures, not the file)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--record":
            skip = True
        elif not arg.startswith("--record="):
            kept.append(arg)
    return kept


if __name__ == "__main__":
    sys.exit(main())

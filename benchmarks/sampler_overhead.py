"""A sampler's cost per training step over uniform sampling, through the real engine.

    python benchmarks/sampler_overhead.py [--strategy pada] [--batch-size 64] [--steps 8] [--repeats 3]

Each trial trains the same supernet (same seed, same synthetic 32x32 data held on the device) for two epochs
with `nas.engine.Trainer`; the second epoch is timed, so the strategy's whole bookkeeping is included: per-step
hooks, the epoch's resampled index list and the end-of-epoch update.

A path's cost varies a hundredfold across NB201 archs, so two samplers drawing different paths cannot be
compared over a few steps. The baseline therefore replays exactly the paths the strategy drew, with uniform's
(empty) bookkeeping: `ratio` is the strategy's machinery over a plain SPOS step on the same paths. `ratio_free`
compares with uniform drawing its own paths (confounded by which paths each drew; reported for completeness).
Repeats alternate the order of the runs; figures are medians over repeats. The last line of stdout is one
JSON object with `baseline_step_s`, `strategy_step_s` and `ratio`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys

import torch
from _args import OneLineParser, positive_int

import searchspaces
import strategies
import supernets
from nas import config as cfg
from nas import data
from nas.engine import Trainer
from nas.progress import Reporter
from nas.runtime import seed_everything, select_device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="sampler_overhead.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="pada", help="strategy to compare with uniform (default pada)")
    p.add_argument("--space", default="nb201")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--image-size", type=positive_int, default=32)
    p.add_argument("--steps", type=positive_int, default=8, help="steps per epoch")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--C", type=positive_int, default=16)
    p.add_argument("--N", type=positive_int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.strategy not in strategies.names():
        p.error(f"unknown strategy {args.strategy!r}; accepted: {', '.join(strategies.names())}")
    return args


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

    def __init__(self, strategy):
        self.archs: list = []
        original = strategy.sample

        def sample():
            arch = original()
            self.archs.append(arch)
            return arch

        strategy.sample = sample


def timed_epoch(name: str, args: argparse.Namespace, bundle, device: torch.device, replay: list | None = None,
                record: list | None = None) -> float:
    """Seconds per step of the second of two epochs of `name` on a fresh supernet."""
    config = cfg.resolve([], {"strategy.name": name, "train.epochs": 2, "train.batch_size": args.batch_size,
                              "seed": args.seed, "supernet.C": args.C, "supernet.N": args.N})
    seed_everything(args.seed, deterministic=False)
    space = searchspaces.get(args.space)
    net = supernets.build(space, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                          **config["supernet"]).to(device)
    strategy = _Replay(replay) if replay is not None else strategies.get(name)
    strategy.setup(net, space, args.seed, bundle, epochs=2)
    recording = _Recording(strategy) if record is not None else None
    trainer = Trainer(config, net, strategy, bundle.train, device, Reporter(quiet=True))
    state = trainer.fit()
    if recording is not None:
        record.extend(recording.archs)
    return state.rows[1]["epoch_time_s"] / trainer.steps_per_epoch


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = select_device(args.device)
    except Exception as exc:  # noqa: BLE001 - one line for any bad device
        print(f"sampler_overhead.py: error: {exc}", file=sys.stderr)
        return 2
    bundle = data.load("synthetic", synthetic_size=args.steps * args.batch_size, synthetic_classes=10,
                       synthetic_image_size=args.image_size, valid_fraction=0.0, device=device)
    times: dict[str, list[float]] = {"replay": [], args.strategy: [], "uniform": []}
    paths: list = []
    times[args.strategy].append(timed_epoch(args.strategy, args, bundle, device, record=paths))
    for r in range(args.repeats):
        if r > 0:
            times[args.strategy].append(timed_epoch(args.strategy, args, bundle, device))
        times["replay"].append(timed_epoch("uniform", args, bundle, device, replay=paths))
        times["uniform"].append(timed_epoch("uniform", args, bundle, device))
        print(f"repeat {r + 1}/{args.repeats}: {args.strategy} {times[args.strategy][-1] * 1e3:.1f} ms/step, uniform "
              f"on the same paths {times['replay'][-1] * 1e3:.1f}, uniform on its own paths "
              f"{times['uniform'][-1] * 1e3:.1f}", file=sys.stderr)
    base, other = statistics.median(times["replay"]), statistics.median(times[args.strategy])
    result = {
        "strategy": args.strategy, "baseline": "uniform on the strategy's paths", "baseline_step_s": base,
        "strategy_step_s": other, "ratio": other / base,
        "ratio_median_of_repeats": statistics.median(o / b for o, b in zip(times[args.strategy], times["replay"])),
        "uniform_own_paths_step_s": statistics.median(times["uniform"]),
        "ratio_free": other / statistics.median(times["uniform"]),
        "per_repeat": {k: v for k, v in times.items()}, "batch_size": args.batch_size,
        "image_size": args.image_size, "steps_per_epoch": args.steps, "repeats": args.repeats, "C": args.C,
        "N": args.N, "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

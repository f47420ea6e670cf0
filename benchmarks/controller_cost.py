"""What ENAS's controller costs beside the supernet: one controller step against one supernet training step.

    python benchmarks/controller_cost.py [--repeats 5] [--device auto] [--out results/controller_cost.json]

On the ENAS study's setting (NB201 + digits, C=8, N=1, batch 64, one thread on the CPU) it times, interleaved and
repeated, one shared-weight epoch of the engine (18 steps, each drawing its path from the controller), one
controller step of the cifar_micro profile (10 archs drawn with gradient, their 10 rewards on validation
minibatches of 128, the REINFORCE backward and the Adam step) and the same step's controller work alone (the
draws, backward and Adam, rewards left out), and takes medians. From them: a controller step as a share of a
supernet step, the share of the reward forwards in it, and the controller phase of an epoch (30 steps) against the
shared phase. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _timing import environment, prepare, synchronizer, write_quantities

from nas import config as cfg
from nas.components import build_components
from nas.engine import Trainer
from nas.progress import Reporter
from nas.runtime import epoch_generator

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["space.name=nb201", "data.name=digits", "strategy.name=enas", "train.threads=1", "eval.monitor_archs=0"]


class _NoETA:
    def remaining(self, done: int):
        return None


def measure(repeats: int, device: torch.device, memory: bool) -> dict:
    config = cfg.resolve([], {}, SETTINGS + [f"strategy.memory={str(memory).lower()}", "strategy.buffer_loss_epoch=0",
                                             "strategy.buffer_store_epoch=0"])
    space, bundle, net, strategy = build_components(config, device)
    trainer = Trainer(config, net, strategy, bundle.train, device, Reporter(None, quiet=True))
    sync = synchronizer(device)
    if memory:
        strategy.buffer.add(strategy.draw(1000).tokens, strategy.rng)
    batches = strategy._valid_batches(0)
    rewards = strategy.rewards

    def controller_only(archs, batches_):
        return torch.full((len(archs),), 0.5)

    epoch_s, step_s, ctl_s = [], [], []
    trainer._train_epoch(0, epoch_generator(0, 0), _NoETA())  # warm-up
    strategy.controller_step(batches, epoch=0)
    for k in range(repeats):
        sync()
        started = time.perf_counter()
        trainer._train_epoch(k, epoch_generator(0, k), _NoETA())
        sync()
        epoch_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(5):
            strategy.controller_step(batches, epoch=0)
        sync()
        step_s.append((time.perf_counter() - started) / 5)
        strategy.rewards = controller_only
        started = time.perf_counter()
        for _ in range(5):
            strategy.controller_step(batches, epoch=0)
        ctl_s.append((time.perf_counter() - started) / 5)
        strategy.rewards = rewards
    step = statistics.median(epoch_s) / trainer.steps_per_epoch
    controller_step = statistics.median(step_s)
    return {"supernet_step_s": step, "controller_step_s": controller_step,
            "controller_only_s": statistics.median(ctl_s), "epoch_s": statistics.median(epoch_s),
            "steps_per_epoch": trainer.steps_per_epoch, "controller_steps": strategy.settings["controller_steps"],
            "num_aggregate": strategy.settings["num_aggregate"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "results" / "controller_cost.json"))
    args = parser.parse_args(argv)
    device, _ = prepare(args.device, 1, 0)
    rows, measured = [], {}
    for memory in (False, True):
        m = measured["memory" if memory else "plain"] = measure(args.repeats, device, memory)
        tag = " + memory buffer" if memory else ""
        phase = m["controller_steps"] * m["controller_step_s"] / m["epoch_s"]
        rows += [
            {"quantity": f"one controller step{tag} (ms, median)", "value": 1e3 * m["controller_step_s"]},
            {"quantity": f"one controller step{tag} / one supernet step", "value": m["controller_step_s"]
             / m["supernet_step_s"]},
            {"quantity": f"its controller work alone{tag}, rewards left out (ms)",
             "value": 1e3 * m["controller_only_s"]},
            {"quantity": f"controller phase{tag} ({m['controller_steps']} steps) / shared phase "
                         f"({m['steps_per_epoch']} steps)", "value": phase},
        ]
    rows.insert(0, {"quantity": "one supernet step, batch 64 (ms, median)",
                    "value": 1e3 * measured["plain"]["supernet_step_s"]})
    write_quantities(args.out, "python benchmarks/controller_cost.py", rows, 2,
                     f"medians of {args.repeats} interleaved repeats, one thread", measured=measured,
                     **environment(device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

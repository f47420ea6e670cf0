"""What GM-NAS's gradient-matching scores cost beside training: one score pass against one training step.

    python benchmarks/split_cost.py [--repeats 5] [--out results/split_cost.json]

On the few-shot study's setting (NB201 + digits, C=8, N=1, batch 64, the uniform supernet, one thread) it times,
interleaved and repeated, one training epoch of the engine and the gradient-matching score of one edge (its 5
candidates x R batches: a forward and backward each, and the gradient copies), and takes medians. From the time
of one score pass and of one training step it gives the share of the training time that the scores of a split
schedule cost: the study's (splits after epochs 8 and 12 of 18: 6 edges scored at the root, 5 in each of its two
children, 720 training steps) at R = 10 and at the reference's R = 100. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _timing import write_quantities

from nas import config as cfg
from nas.components import build_components
from nas.engine import Trainer
from nas.progress import Reporter
from nas.runtime import epoch_generator
from strategies import gm

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["space.name=nb201", "data.name=digits", "strategy.name=uniform", "train.threads=1", "eval.monitor_archs=0",
            "train.epochs=18", "split.method=gm", "split.epochs=[8, 12]"]
UNITS_SCORED = 6 + 2 * 5  # the root scores all 6 edges; each child the 5 still unsplit
TRAIN_STEPS = 720  # the study's budget, 8 + 2 x 4 + 4 x 6 epochs of 18 steps


def measure(repeats: int, r: int) -> dict:
    config = cfg.resolve([], {}, SETTINGS)
    torch.set_num_threads(1)
    space, bundle, net, strategy = build_components(config, torch.device("cpu"))
    trainer = Trainer(config, net, strategy, bundle.train, torch.device("cpu"), Reporter(None, quiet=True))
    candidates = space.decisions[0].candidates
    rng = np.random.default_rng(0)

    def batches():
        while True:
            yield from bundle.train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0),
                                            drop_last=True)

    epoch_s, score_s = [], []
    trainer._train_epoch(0, epoch_generator(0, 0), _NoETA())  # warm-up
    for k in range(repeats):
        started = time.perf_counter()
        trainer._train_epoch(k, epoch_generator(0, k), _NoETA())
        epoch_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        gm.gradient_distances(net, space, space.labels[0], candidates, batches(), lambda: strategy.probe(rng), r)
        score_s.append(time.perf_counter() - started)
    step = statistics.median(epoch_s) / trainer.steps_per_epoch
    score_pass = statistics.median(score_s) / (r * len(candidates))
    return {"step_s": step, "pass_s": score_pass, "epoch_s": statistics.median(epoch_s),
            "score_s": statistics.median(score_s), "candidates": len(candidates), "repeats_timed": r,
            "steps_per_epoch": trainer.steps_per_epoch}


class _NoETA:
    def remaining(self, done: int):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--r", type=int, default=10, help="score batches timed per repeat")
    parser.add_argument("--out", default=str(ROOT / "results" / "split_cost.json"))
    args = parser.parse_args(argv)
    m = measure(args.repeats, args.r)
    rows = [{"quantity": "one training step, batch 64 (ms, median)", "value": 1e3 * m["step_s"]},
            {"quantity": "one score pass: forward + backward + gradient copy (ms, median)", "value": 1e3 * m["pass_s"]}]
    for r in (10, 100):
        passes = UNITS_SCORED * m["candidates"] * r
        share = passes * m["pass_s"] / (TRAIN_STEPS * m["step_s"])
        rows.append({"quantity": f"scores of the study's schedule at R = {r} ({passes:,} passes) / its "
                                 f"{TRAIN_STEPS} training steps (%)", "value": 100 * share})
    write_quantities(args.out, "python benchmarks/split_cost.py", rows, 1,
                     f"medians of {args.repeats} interleaved repeats, one thread", measured=m, torch=torch.__version__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

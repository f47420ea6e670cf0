"""Supernet training-step overhead over the standalone child networks of the same archs.

    python benchmarks/step_time.py [--batch-size 64] [--archs 8] [--steps 10] [--repeats 5] [--device auto]

One training step is what the engine does per batch: forward, per-sample cross-entropy, mean,
`zero_grad(set_to_none=True)`, backward, `clip_grad_norm_(params, 5.0, foreach=True)`, SGD step (lr 0.05,
momentum 0.9, weight decay 2.5e-4) over ALL of the model's parameters. The supernet's optimizer holds every
candidate's parameters, as in a real search; each child (exported up front, exporting is not timed) has its own
optimizer over its own parameters. Both sides do the same conv work on the same input batch.

For each repeat, for each of K fixed archs (same order), `--steps` supernet steps on that arch are timed, then
`--steps` child steps on that arch (interleaved, so machine noise hits both sides alike). The figures are the
median over repeats of the per-repeat mean step times, their ratio (the supernet's overhead over the physical
limit of training that child alone), and the median of the per-repeat ratios. A line per repeat goes to stderr;
the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from _args import OneLineParser, non_negative_int, positive_int
from _timing import environment, prepare, time_steps
from torch import nn

import searchspaces
import supernets

LR, MOMENTUM, WEIGHT_DECAY, GRAD_CLIP = 0.05, 0.9, 2.5e-4, 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="step_time.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--image-size", type=positive_int, default=32)
    p.add_argument("--channels", type=positive_int, default=3, help="input image channels")
    p.add_argument("--classes", type=positive_int, default=10)
    p.add_argument("--C", type=positive_int, default=16, help="channels of the first stage")
    p.add_argument("--N", type=positive_int, default=5, help="search cells per stage")
    p.add_argument("--archs", type=positive_int, default=8, help="K: number of fixed sampled archs (round robin)")
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps per arch per repeat, each side")
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed steps per arch and side")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--bn-mode", default="batch", choices=supernets.BN_MODES)
    p.add_argument("--affine", action="store_true", help="affine BatchNorm (convs then have no bias)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("argument --device: cuda requested but torch.cuda.is_available() is False")
    return args


def make_step(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              y: torch.Tensor) -> Callable[[], None]:
    """One engine training step of `model` on (x, y); the optimizer holds every parameter of `model`."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step() -> None:
        logits = forward(x)
        per_sample = F.cross_entropy(logits.float(), y, reduction="none")
        loss = per_sample.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP, foreach=True)
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device, sync = prepare(args.device, args.threads, args.seed)

    space = searchspaces.get("nb201")
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    net = supernets.build(space, num_classes=args.classes, in_channels=args.channels, C=args.C, N=args.N,
                          affine=args.affine, bn_mode=args.bn_mode).to(device)
    net.train()
    children = [net.export(arch).to(device).train() for arch in archs]  # exported before any step

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, args.channels, args.image_size, args.image_size, generator=gen).to(device)
    y = torch.randint(0, args.classes, (args.batch_size,), generator=gen).to(device)

    # The supernet has ONE optimizer over all candidates' parameters, shared by every arch's step.
    super_params = [p for p in net.parameters() if p.requires_grad]
    super_opt = torch.optim.SGD(super_params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def super_step(arch) -> Callable[[], None]:
        def step() -> None:
            logits = net(x, arch)
            per_sample = F.cross_entropy(logits.float(), y, reduction="none")
            loss = per_sample.mean()
            super_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(super_params, GRAD_CLIP, foreach=True)
            super_opt.step()
        return step

    super_steps = [super_step(arch) for arch in archs]
    child_steps = [make_step(child, child, x, y) for child in children]

    for s_step, c_step in zip(super_steps, child_steps):
        for _ in range(args.warmup):
            s_step()
        for _ in range(args.warmup):
            c_step()
    sync()

    per_repeat = []
    for r in range(args.repeats):
        s_times, c_times = [], []
        for s_step, c_step in zip(super_steps, child_steps):
            s_times.append(time_steps(s_step, args.steps, sync))
            c_times.append(time_steps(c_step, args.steps, sync))
        s_mean, c_mean = statistics.fmean(s_times), statistics.fmean(c_times)
        row = {"repeat": r, "supernet_step_s": s_mean, "child_step_s": c_mean, "ratio": s_mean / c_mean,
               "per_arch_ratio": [s / c for s, c in zip(s_times, c_times)]}
        per_repeat.append(row)
        print(f"repeat {r + 1}/{args.repeats}: supernet {s_mean * 1e3:.2f} ms/step  child {c_mean * 1e3:.2f} ms/step"
              f"  ratio {row['ratio']:.3f}", file=sys.stderr, flush=True)

    supernet_s = statistics.median(row["supernet_step_s"] for row in per_repeat)
    child_s = statistics.median(row["child_step_s"] for row in per_repeat)
    result = {
        "supernet_step_s": supernet_s,
        "child_step_s": child_s,
        "ratio": supernet_s / child_s,
        "ratio_median_of_repeats": statistics.median(row["ratio"] for row in per_repeat),
        "per_repeat": per_repeat,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "channels": args.channels,
        "classes": args.classes,
        "C": args.C,
        "N": args.N,
        "affine": args.affine,
        "bn_mode": args.bn_mode,
        "archs": [arch.to_string() for arch in archs],
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "seed": args.seed,
        **environment(device),
        "supernet_params": sum(p.numel() for p in super_params),
        "child_params": [sum(p.numel() for p in child.parameters()) for child in children],
    }
    if not all(math.isfinite(v) and v > 0 for v in (supernet_s, child_s)):
        print("step_time.py: error: non-positive or non-finite step time measured", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

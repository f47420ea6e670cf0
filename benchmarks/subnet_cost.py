"""Step time of the smallest and the largest subnet of a supernet: does a small path really cost less?

    python benchmarks/subnet_cost.py [--space mobilenet] [--batch-size 64] [--image-size 32] [--threads 2]
                                     [--supernet schedule=cifar] [--child] [--json result.json]

Weight-sharing with elastic (entangled) layers is worth its complexity only if a subnet runs at its real size:
the smallest MobileNet path should cost a fraction of the largest, roughly in proportion to their FLOPs. For
each of `space.smallest()` and `space.largest()` this times forward + cross-entropy + backward through the
supernet (`zero_grad(set_to_none=True)` first; the optimizer step is left out, it is one per training step
whatever the paths), and with `--child` the same for the exported standalone child. Per repeat, each subnet
runs `--steps` timed steps (the order alternates between repeats so that machine drift hits both alike) after
`--warmup` untimed ones; the figure is the median over repeats of the mean step time. Analytic FLOPs and
params come from `space.flops`/`space.params` for this task and these supernet options.

Prints a table (stdout) and, with `--json PATH` (`-` for stdout), one JSON object with `time_ratio`
(smallest / largest step time), `flops_ratio`, `params_ratio` and the per-subnet figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from _args import OneLineParser, non_negative_int, positive_int
from _timing import environment, prepare, time_steps
from torch import nn

import searchspaces
import supernets

SUBNETS = ("smallest", "largest")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="subnet_cost.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="mobilenet", choices=supernets.names(),
                   help="a space with a supernet (default mobilenet)")
    p.add_argument("--supernet", action="append", default=[], metavar="KEY=VALUE",
                   help="supernet build option, e.g. schedule=cifar, width_mult=0.75, C=16 (repeatable; default: "
                        "the supernet's defaults)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--image-size", type=positive_int, default=32)
    p.add_argument("--channels", type=positive_int, default=3, help="input image channels")
    p.add_argument("--classes", type=positive_int, default=10)
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps per subnet per repeat")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed steps per subnet before timing")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--child", action="store_true", help="also time the exported standalone children")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH ('-': stdout)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("argument --device: cuda requested but torch.cuda.is_available() is False")
    known = supernets.entry(args.space).defaults()
    options = dict(known)
    for item in args.supernet:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            p.error(f"argument --supernet: {item!r} is not KEY=VALUE with a build option of {args.space}; "
                    f"accepted keys: {', '.join(known)}")
        options[key] = yaml.safe_load(raw)
    args.options = options
    return args


def make_fwd_bwd(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor) -> Callable[[], None]:
    """Forward, cross-entropy and backward of `model` on (x, y): the per-path part of a training step."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x).float(), y)
        loss.backward()

    return step


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device, sync = prepare(args.device, args.threads, args.seed)

    space = searchspaces.get(args.space)
    try:
        net = supernets.build(space, num_classes=args.classes, in_channels=args.channels, **args.options)
    except (ValueError, TypeError) as exc:
        print(f"subnet_cost.py: error: cannot build the {args.space} supernet: {exc}", file=sys.stderr)
        return 2
    net = net.to(device).train()
    # The cost model of the run: the task plus the supernet options the space's costs read (others are ignored).
    task = dict(num_classes=args.classes, in_channels=args.channels, image_size=args.image_size, **args.options)
    archs = {"smallest": space.smallest(**task), "largest": space.largest(**task)}

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, args.channels, args.image_size, args.image_size, generator=gen).to(device)
    y = torch.randint(0, args.classes, (args.batch_size,), generator=gen).to(device)

    steps = {name: make_fwd_bwd(net, lambda inp, arch=arch: net(inp, arch), x, y) for name, arch in archs.items()}
    children = {}
    if args.child:
        children = {name: net.export(arch).to(device).train() for name, arch in archs.items()}
        steps.update({f"{name}_child": make_fwd_bwd(child, child, x, y) for name, child in children.items()})
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    sync()

    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.repeats):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            times[name].append(time_steps(steps[name], args.steps, sync))
        line = "  ".join(f"{name} {times[name][-1] * 1e3:.2f} ms" for name in steps)
        print(f"repeat {r + 1}/{args.repeats}: {line}", file=sys.stderr, flush=True)

    subnets = {}
    for name, arch in archs.items():
        row = {
            "arch": arch.to_string(),
            "params": space.params(arch, **task),
            "flops": space.flops(arch, **task),
            "step_s": statistics.median(times[name]),
            "per_repeat_s": times[name],
        }
        if args.child:
            row["child_step_s"] = statistics.median(times[f"{name}_child"])
            row["child_params_counted"] = sum(p.numel() for p in children[name].parameters())
        subnets[name] = row
    small, large = subnets["smallest"], subnets["largest"]
    result = {
        "space": space.name,
        "supernet_options": args.options,
        "subnets": subnets,
        "time_ratio": small["step_s"] / large["step_s"],
        "flops_ratio": small["flops"] / large["flops"],
        "params_ratio": small["params"] / large["params"],
        "timed": "forward + cross-entropy + backward (no optimizer step)",
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "channels": args.channels,
        "classes": args.classes,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "seed": args.seed,
        **environment(device),
        "supernet_params": sum(p.numel() for p in net.parameters()),
    }
    if args.child:
        result["child_time_ratio"] = small["child_step_s"] / large["child_step_s"]

    options = ", ".join(f"{k}={v}" for k, v in args.options.items())
    print(f"{space.name} supernet ({options}), batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"{result['device']}, {result['threads']} threads; forward+backward, median of {args.repeats} repeats x "
          f"{args.steps} steps")
    header = f"{'subnet':10s} {'params':>12s} {'MFLOPs':>10s} {'ms/step':>9s}" + (
        f" {'child ms':>9s}" if args.child else "") + "  arch"
    print(header)
    for name, row in subnets.items():
        print(f"{name:10s} {row['params']:>12,d} {row['flops'] / 1e6:>10.2f} {row['step_s'] * 1e3:>9.2f}"
              + (f" {row['child_step_s'] * 1e3:>9.2f}" if args.child else "") + f"  {row['arch']}")
    print(f"smallest/largest: time {result['time_ratio']:.3f}, FLOPs {result['flops_ratio']:.3f}, "
          f"params {result['params_ratio']:.3f}"
          + (f", child time {result['child_time_ratio']:.3f}" if args.child else ""))
    if args.json == "-":
        print(json.dumps(result))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

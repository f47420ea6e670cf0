"""Measure a per-block latency lookup table of the MobileNet space for one device and task.

    python benchmarks/latency_table.py --out lut.json [--image-size 32] [--classes 10] [--batch-size 1]
                                       [--supernet width_mult=1.0] [--device cpu|cuda] [--threads 1]

Every elastic block is timed alone at each kernel and expand ratio on an input of its real shape (median over
`--repeats`), the stem and head once. `nas search ... --max-latency MS --set search.latency=lut.json` then
constrains the post-training search with `latency(arch) = constant + sum of its blocks' entries`, which costs
a few table lookups per candidate. Run it on the deployment device: CPU figures say nothing about a GPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from _args import OneLineParser, non_negative_int, positive_int

import searchspaces
import supernets
from nas.io import atomic_write_json
from nas.latency import build_lookup_table, load_latency


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="latency_table.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--image-size", type=positive_int, default=32)
    p.add_argument("--channels", type=positive_int, default=3)
    p.add_argument("--classes", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--repeats", type=positive_int, default=20)
    p.add_argument("--warmup", type=non_negative_int, default=3)
    p.add_argument("--supernet", action="append", default=[], metavar="KEY=VALUE",
                   help="width_mult=..., schedule=cifar|imagenet (repeatable)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch intra-op threads (0: default)")
    args = p.parse_args(argv)
    opts = {}
    for item in args.supernet:
        key, sep, value = item.partition("=")
        if not sep or key not in ("width_mult", "schedule"):
            p.error(f"--supernet {item!r}: expected width_mult=FLOAT or schedule=cifar|imagenet")
        opts[key] = float(value) if key == "width_mult" else value
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    space = searchspaces.get("mobilenet")
    schedule = opts.get("schedule", "cifar" if args.image_size <= 64 else "imagenet")
    net = supernets.build(space, num_classes=args.classes, in_channels=args.channels,
                          width_mult=opts.get("width_mult", 1.0), schedule=schedule)
    task = dict(num_classes=args.classes, in_channels=args.channels, image_size=args.image_size,
                width_mult=opts.get("width_mult", 1.0), schedule=schedule)
    table = build_lookup_table(net, space, task, torch.device(args.device), args.batch_size, args.repeats,
                               args.warmup)
    atomic_write_json(Path(args.out), table)
    latency = load_latency(args.out, space)
    small, large = latency(space.smallest()), latency(space.largest())
    print(json.dumps({"out": args.out, "device": args.device, "smallest_ms": round(small, 3),
                      "largest_ms": round(large, 3), "blocks": len(table["terms"])}), file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

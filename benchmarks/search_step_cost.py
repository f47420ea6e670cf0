"""Time and peak memory of one search step on a supernet: single path vs the `mix` and `entangle` relaxations.

    python benchmarks/search_step_cost.py [--space darts] [--batch-size 64] [--steps 5] [--repeats 3] [--out F]

Modes, each one training step on the same batch (forward, cross-entropy, backward, clip, SGD over all weights):
- `single`: a uniformly sampled path (SPOS, PA&DA): only the sampled candidates run;
- `mix`: softmax weights over every candidate of every edge (DARTS's weight step): all candidates run;
- `entangle`: the same weights on the supernet built with `mode=entangle` (TangleNAS, ALGORITHMS.md §3): the
  candidates of an entangled group (DARTS: sep 3x3 in 5x5, dil 3x3 in 5x5) run as one superposed convolution;
- `darts`, `darts-entangle`: a whole first-order DARTS step (architecture step on a validation batch plus the
  weight step) in either build mode;
- `gdas`, `gdas-entangle`: straight-through Gumbel samples: one candidate (group) per edge runs, alpha still gets
  gradients.
Every mode runs in its own process, so its peak memory is its own: on CPU the peak resident set size during the
steps above the level before the first one (`ru_maxrss`), on CUDA `torch.cuda.max_memory_allocated`. Times are
medians over repeats of the mean step time. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

from _args import OneLineParser, positive_int

MODES = ("single", "mix", "entangle", "darts", "darts-entangle", "gdas", "gdas-entangle")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="search_step_cost.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="darts", choices=("darts", "nb201"), help="a cell space (its C and cells)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--image-size", type=positive_int, default=32)
    p.add_argument("--C", type=positive_int, default=16)
    p.add_argument("--layers", type=positive_int, default=8, help="darts: cells; nb201: cells per stage (N)")
    p.add_argument("--steps", type=positive_int, default=5)
    p.add_argument("--warmup", type=positive_int, default=1)
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="PATH",
                   help="also write the summary, with the command that made it, to this JSON file (results/...)")
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        p.error(f"--modes {args.modes!r} is not valid; accepted: a comma-separated subset of {', '.join(MODES)}")
    args.mode_list = modes
    return args


def worker(args: argparse.Namespace) -> dict:
    """One mode in this process: time `steps` steps `repeats` times and measure the peak memory."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    import searchspaces
    import strategies
    import supernets
    from nas import data
    from nas.runtime import select_device
    from supernets import ArchWeights

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = select_device(args.device)
    space = searchspaces.get(args.space)
    size = {"darts": {"C": args.C, "layers": args.layers}, "nb201": {"C": args.C, "N": args.layers}}[args.space]
    kind, _, build_mode = args.worker.partition("-")  # e.g. darts-entangle: a DARTS step, mode=entangle
    build_mode = "entangle" if kind == "entangle" else (build_mode or "mix")
    kind = "mix" if kind == "entangle" else kind
    net = supernets.build(space, num_classes=10, in_channels=3, mode=build_mode, **size).to(device)
    bundle = data.load("synthetic", synthetic_size=max(2 * args.batch_size, 20), synthetic_image_size=args.image_size,
                       valid_fraction=0.5, device=device)
    train = next(bundle.train.batches(args.batch_size, augment=False))
    valid = next(bundle.valid.batches(args.batch_size, augment=False))
    params = list(net.parameters())
    optimizer = torch.optim.SGD(params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    strategy = strategies.get("gdas" if kind == "gdas" else "darts")
    strategy.setup(net, space, args.seed, bundle, epochs=1)
    rng = np.random.default_rng(args.seed)

    def relaxed() -> ArchWeights:
        return ArchWeights(strategy.weights().detach())

    def step() -> None:
        if kind == "darts":
            strategy.arch_step(valid, strategies.ArchStepContext(0, 0, train, 0.025, optimizer))
        arch = {"single": lambda: space.sample(rng), "mix": relaxed, "darts": relaxed,
                "gdas": strategy.relaxed}[kind]()
        loss = F.cross_entropy(net(train.x, arch), train.y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0, foreach=True)
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model, data and libraries, before any step
    for _ in range(args.warmup):
        step()
    means = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        means.append((time.perf_counter() - started) / args.steps)
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
        kind = "cuda max_memory_allocated above the model and data"
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024  # kB on Linux
        kind = "peak RSS of the process above its level before the first step"
    return {"mode": args.worker, "build_mode": build_mode, "step_s": statistics.median(means), "per_repeat": means,
            "peak_mb": peak_mb,
            "rss_before_steps_mb": base_rss / 1024, "memory": kind}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    results = {}
    for mode in args.mode_list:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *passed, "--worker", mode],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"search_step_cost.py: error: mode {mode} failed: {proc.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
            return 1
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{mode:14s} {results[mode]['step_s'] * 1e3:8.1f} ms/step  peak {results[mode]['peak_mb']:8.1f} MB",
              file=sys.stderr)
    summary = {"space": args.space, "batch_size": args.batch_size, "image_size": args.image_size, "C": args.C,
               "layers": args.layers, "device": args.device, "steps": args.steps, "repeats": args.repeats,
               "modes": results}
    for mode in results:
        summary[f"{mode}_step_s"] = results[mode]["step_s"]
        summary[f"{mode}_peak_mb"] = results[mode]["peak_mb"]
    if "single" in results:
        for mode in results:
            if mode != "single":
                summary[f"{mode}_over_single_time"] = results[mode]["step_s"] / results["single"]["step_s"]
    for base in ("mix", "darts", "gdas"):  # entangle against the same step in mix mode
        tangled = "entangle" if base == "mix" else f"{base}-entangle"
        if base in results and tangled in results:
            summary[f"{tangled}_over_{base}_memory"] = results[tangled]["peak_mb"] / results[base]["peak_mb"]
            summary[f"{tangled}_over_{base}_time"] = results[tangled]["step_s"] / results[base]["step_s"]
    if args.out:
        from nas.io import atomic_write_json

        summary["command"] = "python benchmarks/search_step_cost.py " + " ".join(shlex.quote(a) for a in passed)
        summary["torch"] = _torch_version()
        atomic_write_json(args.out, {**summary, **_table(summary, results)})
    print(json.dumps(summary))
    return 0


def _table(summary: dict, results: dict) -> dict:
    """The rows `python -m nas.report` renders (`report:json:`): one per mode, entangle against its mix twin."""
    rows = []
    for mode, r in results.items():
        kind = mode.partition("-")[0]
        twin = "mix" if mode == "entangle" else kind if mode.endswith("-entangle") else None
        rows.append({"mode": mode, "build_mode": r["build_mode"], "step_ms": 1e3 * r["step_s"], "peak_mb": r["peak_mb"],
                     "memory_vs_mix": r["peak_mb"] / results[twin]["peak_mb"] if twin in results else None,
                     "time_vs_mix": r["step_s"] / results[twin]["step_s"] if twin in results else None})
    note = (f"{summary['space']} supernet, C={summary['C']}, {summary['layers']} cells, batch {summary['batch_size']}, "
            f"{summary['image_size']}x{summary['image_size']} inputs, {summary['device']}, torch {summary['torch']}; "
            f"medians over {summary['repeats']} repeats of {summary['steps']} steps. Peak memory: "
            f"{next(iter(results.values()))['memory']}. The ratios compare each entangle step with the same step in "
            "mix mode.")
    return {"columns": [["mode", "step"], ["build_mode", "supernet.mode"], ["step_ms", "ms/step"],
                        ["peak_mb", "peak MB"], ["memory_vs_mix", "memory / mix"], ["time_vs_mix", "time / mix"]],
            "digits": {"step_ms": 0, "peak_mb": 0, "memory_vs_mix": 2, "time_vs_mix": 2}, "rows": rows, "note": note}


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())

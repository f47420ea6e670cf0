"""Where stand-alone training of NB201 cells on digits stops improving: the per-arch budget of nb201-digits.

    python benchmarks/standalone_plateau.py [--archs 16] [--epochs 10,15,20,30] [--workers 2]
                                            [--out results/standalone_plateau.json]

Trains the same uniformly sampled networks (one per class of identical networks, seeded) from scratch with the
benchmark's protocol (`nas.standalone.train_arch`: C=8, N=1, SGD 0.1 Nesterov cosine, batch 64) for each
budget, a separate cosine schedule per budget, and records their mean and median test/valid accuracy, test loss
and seconds per training. The JSON is in the form `python -m nas.report` turns into a README table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path

from nas.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent


def _train(job: tuple[str, int, int, int, int]) -> dict:
    import torch

    from nas.standalone import StandaloneSettings, train_arch

    torch.set_num_threads(1)
    arch, epochs, C, N, seed = job
    return {"epochs": epochs, **train_arch(arch, StandaloneSettings(C=C, N=N, epochs=epochs, seed=seed, device="cpu"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, default=16)
    parser.add_argument("--epochs", default="10,15,20,30")
    parser.add_argument("--C", type=int, default=8)
    parser.add_argument("--N", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--sample-seed", type=int, default=11, help="seed of the sampled networks")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "standalone_plateau.json"))
    args = parser.parse_args(argv)
    from nas.benchbuild import plan_order

    budgets = [int(e) for e in args.epochs.split(",")]
    archs = plan_order("nb201", args.sample_seed, unique=True, count=args.archs)
    jobs = [(a, e, args.C, args.N, args.seed) for e in budgets for a in archs]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_train, jobs))
    rows = []
    for epochs in budgets:
        runs = [r for r in results if r["epochs"] == epochs]
        test = [r["test_acc"] for r in runs]
        rows.append({"epochs": epochs, "test_mean": statistics.fmean(test), "test_median": statistics.median(test),
                     "valid_mean": statistics.fmean(r["valid_acc"] for r in runs),
                     "test_loss_mean": statistics.fmean(r["test_loss"] for r in runs),
                     "seconds": statistics.median(r["seconds"] for r in runs)})
    command = "python benchmarks/standalone_plateau.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")
    out = {
        "command": command,
        "columns": [["epochs", "epochs"], ["test_mean", "test acc. mean (%)"], ["test_median", "median (%)"],
                    ["valid_mean", "valid acc. mean (%)"], ["test_loss_mean", "test loss mean"],
                    ["seconds", "s per training (median)"]],
        "digits": {"test_mean": 2, "test_median": 2, "valid_mean": 2, "test_loss_mean": 4, "seconds": 1},
        "rows": rows,
        "note": f"{len(archs)} networks (one per class of identical networks, sample seed {args.sample_seed}), "
                f"C={args.C}, N={args.N}, training seed {args.seed}, each budget its own cosine schedule; "
                f"{args.workers} worker process{'es' if args.workers > 1 else ''} of one thread.",
        "archs": archs,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(args.out, out)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

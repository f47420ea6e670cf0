"""Where scipy.stats pays for ranking metrics and where our vectorised form does: one run, interleaved, medians.

    python benchmarks/rank_metrics.py [--n 15625] [--boot 200] [--repeats 7] [--out results/rank_metrics.json]

Data: a supernet-like score list against ground truth at NB201's size (n = 15,625), both rounded so that ties are
frequent, as they are for supernet accuracies. Three comparisons, each timed over `--repeats` interleaved rounds
(ours, then scipy, alternating which goes first), medians reported:

- one point estimate of Kendall tau-b, Spearman and Pearson: our weighted form (`nasbench.weighted.Plan` at unit
  weights, what every bootstrap resample runs) against `scipy.stats.kendalltau`/`spearmanr`/`pearsonr`;
- `--boot` bootstrap resamples of Kendall tau: our block evaluation (`nasbench.bootstrap`) against a loop of
  `scipy.stats.kendalltau` over the same resamples;
- the report `nas rank` writes (three correlations, three precisions, regret, `--boot` resamples): ours, which
  takes its point estimates from scipy and its intervals from the vectorised form, against the all-scipy
  alternative for the three correlations alone (point and loop over resamples; it has no precision or regret).

The decision in nasbench/metrics.py follows these figures: point estimates by scipy, bootstrap by our form.
"""

from __future__ import annotations

import shlex
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy.stats
from _args import OneLineParser, positive_int

from nas.io import atomic_write_json
from nasbench import bootstrap, kendall_tau, ranking_report
from nasbench.metrics import _resample_weights
from nasbench.weighted import Plan


def tied_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores correlated with the truth (tau about 0.5), rounded to supernet-like resolution so ties are common."""
    rng = np.random.default_rng(seed)
    true = rng.normal(70.0, 8.0, size=n)
    pred = true + rng.normal(0.0, 8.0, size=n)
    return np.round(pred, 1), np.round(true, 2)


def ours_point(p: np.ndarray, t: np.ndarray) -> None:
    plan = Plan(p, t)
    ones = np.ones((1, p.shape[0]), dtype=np.int64)
    plan.kendall(ones), plan.spearman(ones), plan.pearson(ones)


def scipy_point(p: np.ndarray, t: np.ndarray) -> None:
    scipy.stats.kendalltau(p, t), scipy.stats.spearmanr(p, t), scipy.stats.pearsonr(p, t)


def scipy_boot(p: np.ndarray, t: np.ndarray, n_boot: int, metrics: tuple[Callable, ...]) -> None:
    """The scipy alternative to our bootstrap: the same resamples, one scipy call per resample and metric."""
    for W in _resample_weights(p.shape[0], n_boot, 0):
        for w in W:
            idx = np.repeat(np.arange(p.shape[0]), w)
            for metric in metrics:
                metric(p[idx], t[idx])


def interleaved(pairs: list[tuple[Callable[[], None], Callable[[], None]]], repeats: int) -> list[tuple[float, float]]:
    """Median seconds of each (ours, scipy) pair, the two alternating which runs first in each round."""
    times: list[tuple[list[float], list[float]]] = [([], []) for _ in pairs]
    for r in range(repeats):
        for (ours, theirs), (t_ours, t_theirs) in zip(pairs, times):
            order = [(ours, t_ours), (theirs, t_theirs)]
            for fn, sink in (order if r % 2 == 0 else order[::-1]):
                start = time.perf_counter()
                fn()
                sink.append(time.perf_counter() - start)
    return [(statistics.median(a), statistics.median(b)) for a, b in times]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=positive_int, default=15625, help="list length (default 15625, NB201)")
    parser.add_argument("--boot", type=positive_int, default=200, help="bootstrap resamples (default 200)")
    parser.add_argument("--repeats", type=positive_int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--out", default="results/rank_metrics.json", help="JSON results file")
    args = parser.parse_args(argv)
    p, t = tied_scores(args.n, seed=0)
    kendall_tau(p, t), ours_point(p, t), scipy_point(p, t)  # warm-up (imports, caches)
    corr = (scipy.stats.kendalltau, scipy.stats.spearmanr, scipy.stats.pearsonr)
    pairs = [
        (lambda: ours_point(p, t), lambda: scipy_point(p, t)),
        (lambda: bootstrap(p, t, kendall_tau, n_boot=args.boot), lambda: scipy_boot(p, t, args.boot, corr[:1])),
        (lambda: ranking_report(p, t, n_boot=args.boot), lambda: scipy_boot(p, t, args.boot, corr)),
    ]
    (point, boot, report) = interleaved(pairs, args.repeats)
    rows = [
        {"quantity": "point estimates: Kendall tau-b + Spearman + Pearson", "ours": point[0], "scipy": point[1]},
        {"quantity": f"Kendall tau bootstrap, {args.boot} resamples", "ours": boot[0], "scipy": boot[1]},
        {"quantity": f"ranking report, {args.boot} resamples (scipy: the three correlations only)",
         "ours": report[0], "scipy": report[1]},
    ]
    for row in rows:
        row["scipy_over_ours"] = row["scipy"] / row["ours"]
    command = "python benchmarks/rank_metrics.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    atomic_write_json(args.out, {
        "command": command, "n": args.n, "boot": args.boot, "repeats": args.repeats,
        "numpy": np.__version__, "scipy": scipy.__version__,
        "columns": [["quantity", f"n = {args.n:,}"], ["ours", "ours (s)"], ["scipy", "scipy (s)"],
                    ["scipy_over_ours", "scipy / ours"]],
        "digits": {"ours": 4, "scipy": 4, "scipy_over_ours": 2}, "rows": rows,
        "note": "medians over interleaved repeats on one machine; ours = nasbench.weighted.Plan",
    })
    for row in rows:
        print(f"{row['quantity']}: ours {row['ours']:.4f} s, scipy {row['scipy']:.4f} s "
              f"(scipy/ours {row['scipy_over_ours']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

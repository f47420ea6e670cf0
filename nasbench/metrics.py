"""Ranking metrics between predicted scores and ground truth (spec ALGORITHMS.md §0.6), with bootstrap intervals.

All functions take `pred` and `true` (same length, one entry per arch) and drop pairs where either is NaN.
Ties are common (supernet accuracies on a few thousand images), so every metric defines them:

- `kendall_tau`: tau-b, `(n_c - n_d) / sqrt((n0 - n1)(n0 - n2))` (the default of `scipy.stats.kendalltau`).
- `spearman`: Pearson correlation of average ranks; `pearson`: of the raw values.

Point estimates of these three come from `scipy.stats` (`kendalltau`, `spearmanr`, `pearsonr`): on one list scipy
is faster than our weighted form (results/rank_metrics.json: tau at n = 15,625 in ~5 ms against ~30 ms). The
bootstrap keeps our own vectorised form (`weighted.Plan`), which evaluates a block of resamples in one pass; a
loop of scipy calls over the resamples is no faster and gives no intervals for precision or regret.
- `precision_at_k`, `top1_regret`: ties broken by the canonical arch string (ascending), then list position.

Undefined values (fewer than two pairs, a constant list) are NaN. `ranking_report` gathers everything with
percentile bootstrap intervals; it evaluates all resamples of all metrics as weight blocks (see `weighted.py`),
so n_boot = 1000 at n = 15,625 takes seconds with no approximation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.stats

from .errors import BenchmarkError
from .weighted import Plan

_BLOCK_ELEMENTS = 1 << 21  # resamples are drawn and evaluated in blocks of about this many (resample, item) cells


def drop_nan(pred: Any, true: Any, names: Sequence[str] | None = None
             ) -> tuple[np.ndarray, np.ndarray, list[str] | None, int]:
    """`pred`, `true` (and `names`) without the pairs where either value is NaN, and how many pairs were dropped."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise BenchmarkError(f"pred has {p.shape[0]} values and true has {t.shape[0]}; expected the same length")
    if names is not None:
        names = list(names)
        if len(names) != p.shape[0] or not all(isinstance(n, str) for n in names):
            raise BenchmarkError(f"names must be {p.shape[0]} strings (one per pair); got {len(names)} entries")
    keep = ~(np.isnan(p) | np.isnan(t))
    dropped = int(p.shape[0] - keep.sum())
    if dropped:
        p, t = p[keep], t[keep]
        names = [n for n, k in zip(names, keep.tolist()) if k] if names is not None else None
    return p, t, names, dropped


def kendall_tau(pred: Any, true: Any) -> float:
    """Kendall tau-b (ties in either list); NaN when undefined."""
    p, t, _, _ = drop_nan(pred, true)
    return _scipy_point("kendall_tau", p, t)


def spearman(pred: Any, true: Any) -> float:
    """Spearman rho: Pearson correlation of average ranks; NaN when undefined."""
    p, t, _, _ = drop_nan(pred, true)
    return _scipy_point("spearman", p, t)


def pearson(pred: Any, true: Any) -> float:
    """Pearson correlation; NaN when undefined."""
    p, t, _, _ = drop_nan(pred, true)
    return _scipy_point("pearson", p, t)


def precision_at_k(pred: Any, true: Any, k: int | float, names: Sequence[str] | None = None) -> float:
    """|top_k(pred) ∩ top_k(true)| / k; ties broken by name (ascending), then position, so the result is stable.

    `k` is a count (int, 1..n) or a fraction of the list (float in (0, 1], rounded half up, at least 1).
    """
    p, t, names, _ = drop_nan(pred, true, names)
    if p.shape[0] == 0:
        return math.nan
    k = resolve_k(k, p.shape[0])
    return float(_plan(p, t, names).precision(np.ones((1, p.shape[0]), dtype=np.int64), [k])[0, 0])


def top1_regret(pred: Any, true: Any, names: Sequence[str] | None = None) -> float:
    """Best true value minus the true value of the arch ranked first by `pred` (ties: name, then position)."""
    p, t, names, _ = drop_nan(pred, true, names)
    if p.shape[0] == 0:
        return math.nan
    return float(_plan(p, t, names).regret(np.ones((1, p.shape[0]), dtype=np.int64))[0])


def resolve_k(k: int | float, n: int) -> int:
    """A top-k size for a list of n: an int count in 1..n, or a float fraction in (0, 1] (half up, at least 1)."""
    if isinstance(k, (bool, np.bool_)):
        raise BenchmarkError(f"k={k!r} is not a top-k size; accepted: an int count 1..{n} or a fraction in (0, 1]")
    if isinstance(k, (int, np.integer)):
        if not 1 <= k <= n:
            raise BenchmarkError(f"k={k} is out of range for a list of {n}; accepted: an int count 1..{n}")
        return int(k)
    if isinstance(k, (float, np.floating)) and 0.0 < k <= 1.0:
        return max(1, int(math.floor(k * n + 0.5)))
    raise BenchmarkError(f"k={k!r} is not a top-k size; accepted: an int count 1..{n} or a fraction in (0, 1]")


def bootstrap(pred: Any, true: Any, statistic: Callable[..., float], n_boot: int = 1000, alpha: float = 0.05,
              seed: int = 0, names: Sequence[str] | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval `(low, high)` of `statistic(pred, true)` at level 1 - alpha.

    Resamples are index sets drawn with replacement by a seeded `numpy.random.Generator`; each is passed in
    index order (a resample is a multiset, so order only matters for tie-breaking, where it follows the original
    list). With `names`, the statistic is called as `statistic(pred, true, names=names)`. The metrics of this
    module (`kendall_tau`, `spearman`, `pearson`, `top1_regret`, `functools.partial(precision_at_k, k=...)`)
    are evaluated for all resamples at once; any other callable is called once per resample. NaN replicates are
    ignored; `(nan, nan)` when there are fewer than two pairs.
    """
    p, t, names, _ = drop_nan(pred, true, names)
    _check_boot(n_boot, alpha)
    n = p.shape[0]
    if n < 2:
        return math.nan, math.nan
    fast = _fast_statistic(statistic, n)
    values = []
    if fast is not None:
        plan = _plan(p, t, names)
        for W in _resample_weights(n, n_boot, seed):
            values.append(fast(plan, W))
    else:
        for W in _resample_weights(n, n_boot, seed):
            for w in W:
                idx = np.repeat(np.arange(n), w)
                args = {"names": [names[i] for i in idx]} if names is not None else {}
                values.append(np.array([statistic(p[idx], t[idx], **args)], dtype=np.float64))
    return _interval(np.concatenate(values), alpha)


def ranking_report(pred: Any, true: Any, names: Sequence[str] | None = None,
                   ks: Sequence[int | float] = (0.01, 0.05, 0.10), n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> dict[str, Any]:
    """Every ranking metric with its percentile bootstrap interval, as a JSON-ready dict.

    Keys: `n` (pairs used), `dropped_nan`, `ci_level`, `n_boot`, `seed`, `precision_k` (the k used per
    precision key) and, each as `{"value", "ci_low", "ci_high"}`: `kendall_tau`, `spearman`, `pearson`,
    `precision_at_{x}pct` for a fraction k (e.g. 0.05 -> `precision_at_5pct`) or `precision_at_{k}` for a count,
    and `top1_regret`. Undefined numbers are None (JSON null). All metrics share the same resamples;
    `n_boot` is honoured at every n (Kendall runs in O(n log n) per resample, vectorised over resamples).
    """
    p, t, names, dropped = drop_nan(pred, true, names)
    _check_boot(n_boot, alpha)
    n = p.shape[0]
    keys = [_precision_key(k) for k in ks]
    if len(set(keys)) != len(keys):
        raise BenchmarkError(f"ks={list(ks)!r} name the same precision twice; give each k once")
    report: dict[str, Any] = {"n": n, "dropped_nan": dropped, "ci_level": 1.0 - alpha, "n_boot": n_boot, "seed": seed}
    metric_names = ["kendall_tau", "spearman", "pearson", *keys, "top1_regret"]
    if n == 0:
        report["precision_k"] = {key: None for key in keys}
        report.update({m: _entry(math.nan, math.nan, math.nan) for m in metric_names})
        return report
    k_values = [resolve_k(k, n) for k in ks]
    report["precision_k"] = dict(zip(keys, k_values))
    plan = _plan(p, t, names)

    def evaluate(W: np.ndarray) -> np.ndarray:
        return np.column_stack([plan.kendall(W), plan.spearman(W), plan.pearson(W), plan.precision(W, k_values),
                                plan.regret(W)])

    ones = np.ones((1, n), dtype=np.int64)
    point = np.array([*(_scipy_point(m, p, t) for m in _SCIPY_POINT), *plan.precision(ones, k_values)[0],
                      plan.regret(ones)[0]], dtype=np.float64)
    if n < 2:
        boots = np.full((1, len(metric_names)), np.nan)
    else:
        boots = np.concatenate([evaluate(W) for W in _resample_weights(n, n_boot, seed)])
    for j, metric in enumerate(metric_names):
        low, high = _interval(boots[:, j], alpha)
        report[metric] = _entry(point[j], low, high)
    return report


# --- helpers ----------------------------------------------------------------------------------------
# Point estimates computed by scipy.stats, in the order of ranking_report's first columns.
_SCIPY_POINT: dict[str, Callable[..., Any]] = {
    "kendall_tau": scipy.stats.kendalltau, "spearman": scipy.stats.spearmanr, "pearson": scipy.stats.pearsonr,
}


def _scipy_point(metric: str, p: np.ndarray, t: np.ndarray) -> float:
    """`metric` of one NaN-free pair of lists by scipy.stats; NaN when undefined (fewer than two pairs, a constant
    list), where scipy would warn."""
    if p.shape[0] < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        return math.nan
    return float(_SCIPY_POINT[metric](p, t).statistic)


def _plan(p: np.ndarray, t: np.ndarray, names: list[str] | None) -> Plan:
    name_rank = None
    if names is not None:
        name_rank = np.unique(np.array(names, dtype=object).astype(str), return_inverse=True)[1].reshape(-1)
    return Plan(p, t, name_rank)


def _fast_statistic(statistic: Callable[..., float], n: int) -> Callable[[Plan, np.ndarray], np.ndarray] | None:
    fast: dict[Callable[..., float], Callable[[Plan, np.ndarray], np.ndarray]] = {
        kendall_tau: Plan.kendall, spearman: Plan.spearman, pearson: Plan.pearson, top1_regret: Plan.regret,
    }
    if statistic in fast:
        return fast[statistic]
    if (isinstance(statistic, functools.partial) and statistic.func is precision_at_k and not statistic.args
            and set(statistic.keywords) == {"k"}):
        k = resolve_k(statistic.keywords["k"], n)
        return lambda plan, W: plan.precision(W, [k])[:, 0]
    return None


def _resample_weights(n: int, n_boot: int, seed: int):
    """Blocks of resample multiplicities (each row: how often each item was drawn, n draws in all)."""
    rng = np.random.default_rng(seed)
    block = max(1, min(n_boot, _BLOCK_ELEMENTS // max(n, 1)))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        draws = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b)[:, None] * n + draws).reshape(-1)
        yield np.bincount(flat, minlength=b * n).reshape(b, n)


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _check_boot(n_boot: int, alpha: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise BenchmarkError(f"n_boot={n_boot!r} is invalid; accepted: an int >= 1")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise BenchmarkError(f"alpha={alpha!r} is invalid; accepted: a number in (0, 1)")


def _precision_key(k: int | float) -> str:
    if isinstance(k, (float, np.floating)) and not isinstance(k, bool):
        if not 0.0 < k <= 1.0:
            raise BenchmarkError(f"k={k!r} is not a top-k fraction; accepted: a fraction in (0, 1] or an int count")
        return f"precision_at_{format(round(float(k) * 100, 6), 'g')}pct"
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1:
        return f"precision_at_{int(k)}"
    raise BenchmarkError(f"k={k!r} is not a top-k size; accepted: an int count >= 1 or a fraction in (0, 1]")


def _entry(value: float, low: float, high: float) -> dict[str, float | None]:
    def clean(v: float) -> float | None:
        v = float(v)
        return None if math.isnan(v) else v

    return {"value": clean(value), "ci_low": clean(low), "ci_high": clean(high)}

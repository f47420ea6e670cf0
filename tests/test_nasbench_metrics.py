"""Ranking metrics: agreement with scipy.stats on tied data, hand-worked tie cases, deterministic tie-breaking by
name, NaN handling, and bootstrap intervals (vectorised resamples equal the one-by-one definition)."""

from __future__ import annotations

import functools
import json
import time

import numpy as np
import pytest
from scipy import stats

import nasbench
from nasbench import BenchmarkError, bootstrap, kendall_tau, pearson, precision_at_k, ranking_report, spearman
from nasbench import top1_regret as regret
from nasbench.weighted import Plan


def tied_pair(n: int, seed: int, decimals: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Correlated scores rounded so that ties are frequent in both lists."""
    rng = np.random.default_rng(seed)
    true = rng.normal(size=n)
    pred = true + rng.normal(size=n)
    return np.round(pred, decimals), np.round(true, decimals)


# --- agreement with scipy -----------------------------------------------------------------------------------
def weighted_point(pred, true) -> tuple[float, float, float]:
    """Kendall, Spearman and Pearson by our weighted form at unit weights: what every bootstrap resample runs."""
    plan = Plan(np.asarray(pred, dtype=float), np.asarray(true, dtype=float))
    ones = np.ones((1, len(pred)), dtype=np.int64)
    return float(plan.kendall(ones)[0]), float(plan.spearman(ones)[0]), float(plan.pearson(ones)[0])


@pytest.mark.parametrize("n", [2, 3, 7, 50, 999, 15625])
def test_correlations_match_scipy_with_ties(n):
    pred, true = tied_pair(n, seed=n)
    assert len(np.unique(pred)) < n or n < 10  # ties really occur
    expected = (stats.kendalltau(pred, true).statistic, stats.spearmanr(pred, true).statistic,
                stats.pearsonr(pred, true).statistic)
    assert (kendall_tau(pred, true), spearman(pred, true), pearson(pred, true)) == pytest.approx(expected, abs=1e-12)
    # the bootstrap's own form agrees with scipy too
    assert weighted_point(pred, true) == pytest.approx(expected, abs=1e-12)


def test_kendall_matches_scipy_heavy_ties_and_no_ties():
    rng = np.random.default_rng(7)
    pred, true = rng.integers(0, 4, 3000), rng.integers(0, 3, 3000)  # almost everything tied
    assert kendall_tau(pred, true) == pytest.approx(stats.kendalltau(pred, true).statistic, abs=1e-12)
    assert weighted_point(pred, true)[0] == pytest.approx(stats.kendalltau(pred, true).statistic, abs=1e-12)
    pred = rng.normal(size=15625)
    true = pred + rng.normal(size=15625)
    assert kendall_tau(pred, true) == pytest.approx(stats.kendalltau(pred, true).statistic, abs=1e-12)
    assert kendall_tau(pred, -pred) == -1.0 and kendall_tau(pred, pred) == 1.0


def test_kendall_is_fast_at_benchmark_size():
    pred, true = tied_pair(15625, seed=1, decimals=2)
    start = time.perf_counter()
    kendall_tau(pred, true)
    assert time.perf_counter() - start < 1.0


# --- hand-worked examples -----------------------------------------------------------------------------------
def test_kendall_tau_b_by_hand():
    # pred = [1, 2, 3, 3, 4], true = [2, 1, 3, 4, 4]; the 10 pairs (i, j):
    # (0,1) D; (0,2) (0,3) (0,4) (1,2) (1,3) (1,4) (2,4) C; (2,3) tied in pred; (3,4) tied in true.
    # n_c = 7, n_d = 1, n0 = 10, n1 = 1, n2 = 1: tau_b = 6 / sqrt(9 * 9) = 2/3.
    assert kendall_tau([1, 2, 3, 3, 4], [2, 1, 3, 4, 4]) == pytest.approx(2 / 3, abs=1e-15)
    # pred = [1, 1, 2], true = [5, 5, 6]: (0,1) tied in both, (0,2) (1,2) C.
    # n_c = 2, n_d = 0, n0 = 3, n1 = 1, n2 = 1: tau_b = 2 / sqrt(2 * 2) = 1 (tau-a would be 2/3).
    assert kendall_tau([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0, abs=1e-15)


def test_spearman_uses_average_ranks_by_hand():
    # ranks of pred [1, 2, 2, 3] -> [1, 2.5, 2.5, 4]; true ranks [1, 2, 3, 4]; centred: [-1.5, 0, 0, 1.5] and
    # [-1.5, -0.5, 0.5, 1.5]: sxy = 4.5, sxx = 4.5, syy = 5, rho = 4.5 / sqrt(22.5) = sqrt(0.9).
    assert spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(np.sqrt(0.9), abs=1e-15)


def test_undefined_correlations_are_nan():
    for metric in (kendall_tau, spearman, pearson):
        assert np.isnan(metric([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # constant pred
        assert np.isnan(metric([0.1, 0.1], [5.0, 6.0]))
        assert np.isnan(metric([1.0], [2.0]))
        assert np.isnan(metric([], []))


def test_precision_at_k_breaks_ties_by_name():
    names = ["e", "d", "c", "b", "a"]
    pred = [5.0, 4.0, 4.0, 4.0, 1.0]
    true = [5.0, 1.0, 2.0, 4.0, 3.0]
    # top-2 by pred: e (5), then among the tied 4s {d, c, b} the smallest name, b -> {e, b}.
    # top-2 by true: e (5), b (4) -> {e, b}: precision 2/2. (Position order would pick d -> 1/2.)
    assert precision_at_k(pred, true, 2, names=names) == 1.0
    assert precision_at_k(pred, true, 2) == 0.5
    assert precision_at_k(pred, true, 0.4, names=names) == 1.0  # 40% of 5 = 2
    # top-3 by pred {e, b, c}; by true {e, b, a}: 2/3.
    assert precision_at_k(pred, true, 3, names=names) == pytest.approx(2 / 3)
    assert precision_at_k(pred, true, 1.0) == 1.0


def test_precision_k_fractions_round_half_up_and_at_least_one():
    pred = np.arange(10.0)
    true = -np.arange(10.0)
    assert precision_at_k(pred, true, 0.01) == 0.0  # 0.1 items -> k = 1, the top items differ
    assert nasbench.metrics.resolve_k(0.05, 10) == 1 and nasbench.metrics.resolve_k(0.25, 10) == 3
    assert nasbench.metrics.resolve_k(0.10, 15625) == 1563
    for bad in (0, 11, 0.0, 1.5, True, "5"):
        with pytest.raises(BenchmarkError):
            precision_at_k(pred, true, bad)


def test_top1_regret_by_hand():
    pred = [0.9, 0.9, 0.1]
    true = [70.0, 80.0, 90.0]
    # b and a tie on pred; a comes first by name: regret = 90 - 80. By position b (index 0) would give 20.
    assert regret(pred, true, names=["b", "a", "c"]) == 10.0
    assert regret(pred, true) == 20.0
    assert regret([1, 2, 3], [1, 2, 3]) == 0.0


# --- NaN handling and input checks ----------------------------------------------------------------------------
def test_nan_pairs_are_dropped_and_counted():
    pred, true = tied_pair(200, seed=3)
    names = [f"arch{i:03d}" for i in range(200)]
    p, t = pred.copy(), true.copy()
    p[[5, 17]] = np.nan
    t[[17, 40, 99]] = np.nan
    keep = ~(np.isnan(p) | np.isnan(t))
    kept_names = [n for n, k in zip(names, keep) if k]
    assert kendall_tau(p, t) == kendall_tau(pred[keep], true[keep])
    assert spearman(p, t) == spearman(pred[keep], true[keep])
    assert precision_at_k(p, t, 10, names) == precision_at_k(pred[keep], true[keep], 10, kept_names)
    report = ranking_report(p, t, names=names, n_boot=50)
    assert report["n"] == 196 and report["dropped_nan"] == 4
    assert report["kendall_tau"]["value"] == kendall_tau(pred[keep], true[keep])


def test_mismatched_inputs_are_one_line_errors():
    with pytest.raises(BenchmarkError, match="pred has 3 values and true has 2"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(BenchmarkError, match="names must be 2 strings"):
        precision_at_k([1, 2], [1, 2], 1, names=["a"])
    with pytest.raises(BenchmarkError, match="n_boot"):
        bootstrap([1, 2, 3], [1, 2, 3], kendall_tau, n_boot=0)


# --- bootstrap ---------------------------------------------------------------------------------------------
def test_bootstrap_contains_the_estimate_and_narrows_with_n():
    widths = []
    for n in (100, 2000):
        pred, true = tied_pair(n, seed=11)
        for statistic in (kendall_tau, spearman, pearson):
            low, high = bootstrap(pred, true, statistic, n_boot=300, seed=2)
            assert low < statistic(pred, true) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


@pytest.mark.parametrize("statistic", [
    kendall_tau, spearman, pearson, regret, functools.partial(precision_at_k, k=7),
    functools.partial(precision_at_k, k=0.2),
])
def test_vectorised_bootstrap_equals_resampling_one_by_one(statistic):
    pred, true = tied_pair(60, seed=4)
    names = [f"n{i % 9}" for i in range(60)]  # repeated names: ties fall back to list order
    takes_names = statistic is regret or isinstance(statistic, functools.partial)

    def one_by_one(p, t, names):  # not one of ours, so bootstrap calls it once per resample
        return statistic(p, t, names=names) if takes_names else statistic(p, t)

    for alpha in (0.05, 0.5, 0.9):
        fast = bootstrap(pred, true, statistic, n_boot=150, alpha=alpha, seed=9, names=names)
        slow = bootstrap(pred, true, one_by_one, n_boot=150, alpha=alpha, seed=9, names=names)
        assert fast == pytest.approx(slow, abs=1e-12)


def test_bootstrap_is_seeded():
    pred, true = tied_pair(300, seed=5)
    assert bootstrap(pred, true, spearman, n_boot=100, seed=1) == bootstrap(pred, true, spearman, n_boot=100, seed=1)
    assert bootstrap(pred, true, spearman, n_boot=100, seed=1) != bootstrap(pred, true, spearman, n_boot=100, seed=2)


# --- the report --------------------------------------------------------------------------------------------------
def test_ranking_report_keys_values_and_determinism():
    pred, true = tied_pair(500, seed=6, decimals=2)
    names = [f"arch{i:03d}" for i in range(500)]
    report = ranking_report(pred, true, names=names, n_boot=200, seed=3)
    metrics = ["kendall_tau", "spearman", "pearson", "precision_at_1pct", "precision_at_5pct", "precision_at_10pct",
               "top1_regret"]
    assert set(report) == {"n", "dropped_nan", "ci_level", "n_boot", "seed", "precision_k", *metrics}
    assert report["n"] == 500 and report["dropped_nan"] == 0 and report["ci_level"] == pytest.approx(0.95)
    assert report["precision_k"] == {"precision_at_1pct": 5, "precision_at_5pct": 25, "precision_at_10pct": 50}
    assert report["kendall_tau"]["value"] == kendall_tau(pred, true)
    assert report["precision_at_5pct"]["value"] == precision_at_k(pred, true, 25, names)
    assert report["top1_regret"]["value"] == regret(pred, true, names)
    for metric in metrics:
        entry = report[metric]
        assert set(entry) == {"value", "ci_low", "ci_high"}
        assert entry["ci_low"] <= entry["ci_high"]
    assert report["spearman"]["ci_low"] < report["spearman"]["value"] < report["spearman"]["ci_high"]
    assert (report["kendall_tau"]["ci_low"], report["kendall_tau"]["ci_high"]) == pytest.approx(
        bootstrap(pred, true, kendall_tau, n_boot=200, seed=3), abs=1e-12)
    json.dumps(report, allow_nan=False)
    assert ranking_report(pred, true, names=names, n_boot=200, seed=3) == report
    assert ranking_report(pred, true, names=names, n_boot=200, seed=4) != report


def test_ranking_report_undefined_values_are_null_and_counts_name_keys():
    report = ranking_report([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], ks=(1, 0.5), n_boot=20)
    assert report["kendall_tau"] == {"value": None, "ci_low": None, "ci_high": None}
    assert "precision_at_1" in report and "precision_at_50pct" in report
    json.dumps(report, allow_nan=False)
    empty = ranking_report([np.nan], [1.0], n_boot=10)
    assert empty["n"] == 0 and empty["dropped_nan"] == 1 and empty["spearman"]["value"] is None


def test_ranking_report_at_benchmark_size_is_quick():
    pred, true = tied_pair(15625, seed=8, decimals=2)
    start = time.perf_counter()
    report = ranking_report(pred, true, n_boot=100)
    assert time.perf_counter() - start < 10.0
    assert report["precision_k"]["precision_at_1pct"] == 156
    assert report["kendall_tau"]["value"] == pytest.approx(stats.kendalltau(pred, true).statistic, abs=1e-12)

"""Rank statistics of weighted samples: the engine behind the metrics and their bootstrap.

A bootstrap resample of n items is fully described by its multiplicities `w` (how often each item was drawn),
and every statistic we report is a function of the sample as a multiset: Kendall tau-b, Spearman, Pearson,
precision@k and regret of the resample equal weighted versions on the original items with weights `w`. So each
statistic is planned once for a fixed `(pred, true)` (sort orders, tie groups) and then evaluated for a whole
block of weight rows `W` (shape `(B, n)`) with array operations: no Python loop over resamples, and the point
estimate is the same code with `W = ones`.

Resampled copies of one item are tied with each other in both lists; among equal scores, items are ordered by
name and then by original index, and copies of one item keep their order in both lists (see `Plan.precision`).
"""

from __future__ import annotations

import numpy as np


def average_rank_plan(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable sort order, tie-group starts (in sorted order) and the group of each sorted position."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    new = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    return order, starts, group


class Plan:
    """Precomputed orders for one `(pred, true, names)` list; methods map a weight block `W` to one value per row."""

    def __init__(self, pred: np.ndarray, true: np.ndarray, name_rank: np.ndarray | None = None):
        self.pred = np.asarray(pred, dtype=np.float64)
        self.true = np.asarray(true, dtype=np.float64)
        n = self.n = self.pred.shape[0]
        index = np.arange(n)
        name_rank = np.zeros(n, dtype=np.int64) if name_rank is None else name_rank
        # Best first; ties by name (ascending), then by original index.
        self.pred_best_first = np.lexsort((index, name_rank, -self.pred))
        self.true_best_first = np.lexsort((index, name_rank, -self.true))
        self._pred_ranks = average_rank_plan(self.pred)
        self._true_ranks = average_rank_plan(self.true)
        self._kendall_plan()

    # --- Kendall tau-b ------------------------------------------------------------------------------
    def _kendall_plan(self) -> None:
        x, y = self.pred, self.true
        perm = np.lexsort((y, x))  # by pred, then by true: discordant pairs = strict inversions of true in this order
        xs, ys = x[perm], y[perm]
        x_new = np.r_[True, xs[1:] != xs[:-1]]
        self._perm = perm
        self._x_starts = np.flatnonzero(x_new)
        self._xy_starts = np.flatnonzero(x_new | np.r_[True, ys[1:] != ys[:-1]])
        y_order, self._y_starts, _ = average_rank_plan(ys)
        self._y_gather = perm[y_order]
        # Inversions by bit levels of the dense rank r of true: a pair i < j with r_i > r_j is counted once, at
        # the highest bit where they differ, inside the group of positions sharing all higher bits.
        dense = np.unique(ys, return_inverse=True)[1].reshape(-1).astype(np.int64)
        self._levels = []
        for b in range(int(dense.max(initial=0)).bit_length()):
            order = np.argsort(dense >> (b + 1), kind="stable")
            high = (dense >> (b + 1))[order]
            bit = ((dense >> b) & 1)[order].astype(np.int32)
            new = np.r_[True, high[1:] != high[:-1]]
            group_start = np.maximum.accumulate(np.where(new, np.arange(self.n), 0))
            zeros = np.flatnonzero(bit == 0)
            self._levels.append((perm[order], bit, perm[order][zeros], zeros + 1, group_start[zeros]))

    def kendall(self, W: np.ndarray) -> np.ndarray:
        """Kendall tau-b per weight row: (n_c - n_d) / sqrt((n0 - n1)(n0 - n2)); NaN where undefined."""
        W = np.asarray(W, dtype=np.int64)
        N = W.sum(axis=1)
        total = N * (N - 1) // 2
        Wp = W[:, self._perm]
        x_tie = _pairs(np.add.reduceat(Wp, self._x_starts, axis=1))
        xy_tie = _pairs(np.add.reduceat(Wp, self._xy_starts, axis=1))
        y_tie = _pairs(np.add.reduceat(W[:, self._y_gather], self._y_starts, axis=1))
        # Inner loop in int32 (half the memory traffic): running sums stay <= N and each product w_j * (weight
        # before j) <= N^2 / 4, below 2^31 while N <= 92,681.
        small = W.astype(np.int32) if int(N.max(initial=0)) <= 92_000 else W
        cum = np.zeros((W.shape[0], self.n + 1), dtype=small.dtype)  # cum[:, j] = weight of ones before position j
        discordant = np.zeros(W.shape[0], dtype=np.int64)
        for gather, bit, zero_gather, zero_next, zero_start in self._levels:
            np.cumsum(small[:, gather] * bit, axis=1, out=cum[:, 1:])
            before_in_group = cum[:, zero_next] - cum[:, zero_start]
            discordant += (small[:, zero_gather] * before_in_group).sum(axis=1, dtype=np.int64)
        num = total - x_tie - y_tie + xy_tie - 2 * discordant
        den_x, den_y = total - x_tie, total - y_tie
        with np.errstate(invalid="ignore", divide="ignore"):
            # One root of the product: sqrt(a) * sqrt(b) rounds twice and misses tau = 1 exactly.
            tau = num / np.sqrt(den_x.astype(np.float64) * den_y.astype(np.float64))
        tau[(den_x <= 0) | (den_y <= 0)] = np.nan
        return np.clip(tau, -1.0, 1.0)

    # --- Spearman / Pearson -------------------------------------------------------------------------
    def spearman(self, W: np.ndarray) -> np.ndarray:
        """Pearson correlation of average ranks within each weighted sample."""
        W = np.asarray(W, dtype=np.float64)
        return _weighted_pearson(_average_ranks(W, *self._pred_ranks), _average_ranks(W, *self._true_ranks), W)

    def pearson(self, W: np.ndarray) -> np.ndarray:
        """Pearson correlation of the raw values within each weighted sample."""
        W = np.asarray(W, dtype=np.float64)
        return _weighted_pearson(self.pred[None, :], self.true[None, :], W)

    # --- top-k agreement ----------------------------------------------------------------------------
    def precision(self, W: np.ndarray, ks: list[int]) -> np.ndarray:
        """|top_k(pred) ∩ top_k(true)| / k per row, one column per k.

        In a resample, item i appears w_i times; its copies sit together in both best-first orders (same score,
        same name), so the first `c_pred` of them are in the pred top-k and the first `c_true` in the true
        top-k, and `min(c_pred, c_true)` copies are in both.
        """
        W = np.asarray(W, dtype=np.int64)
        out = np.empty((W.shape[0], len(ks)))
        ranked = []
        for order in (self.pred_best_first, self.true_best_first):
            Wo = W[:, order]
            ranked.append((order, Wo, np.cumsum(Wo, axis=1) - Wo))
        for j, k in enumerate(ks):
            counts = []
            for order, Wo, before in ranked:
                in_top = np.empty_like(Wo)
                in_top[:, order] = np.clip(k - before, 0, Wo)
                counts.append(in_top)
            out[:, j] = np.minimum(*counts).sum(axis=1) / k
        return out

    def regret(self, W: np.ndarray) -> np.ndarray:
        """True max minus the true value of the best-predicted arch, per row (ties: name, then index)."""
        present = np.asarray(W) > 0
        first = np.argmax(present[:, self.pred_best_first], axis=1)
        chosen = self.true[self.pred_best_first[first]]
        best = np.where(present, self.true[None, :], -np.inf).max(axis=1)
        return best - chosen


def _pairs(counts: np.ndarray) -> np.ndarray:
    """Sum over groups of C(count, 2) per row."""
    return (counts * (counts - 1) // 2).sum(axis=1)


def _average_ranks(W: np.ndarray, order: np.ndarray, starts: np.ndarray, group: np.ndarray) -> np.ndarray:
    """1-based average ranks of every item within each weighted sample (ties share their mean rank)."""
    group_weight = np.add.reduceat(W[:, order], starts, axis=1)
    below = np.cumsum(group_weight, axis=1) - group_weight
    ranks = np.empty_like(W)
    ranks[:, order] = (below + (group_weight + 1.0) / 2.0)[:, group]
    return ranks


def _weighted_pearson(a: np.ndarray, b: np.ndarray, W: np.ndarray) -> np.ndarray:
    N = W.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        da = a - (W * a).sum(axis=1, keepdims=True) / N
        db = b - (W * b).sum(axis=1, keepdims=True) / N
        saa = (W * da * da).sum(axis=1)
        sbb = (W * db * db).sum(axis=1)
        r = (W * da * db).sum(axis=1) / np.sqrt(saa * sbb)
    # A constant sample has no correlation; test it exactly (rounding can leave a tiny non-zero variance).
    r[_constant(a, W) | _constant(b, W) | ~(saa > 0) | ~(sbb > 0) | (N[:, 0] < 2)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _constant(values: np.ndarray, W: np.ndarray) -> np.ndarray:
    present = W > 0
    return np.where(present, values, -np.inf).max(axis=1) == np.where(present, values, np.inf).min(axis=1)

"""Uniform sampler and post-training search."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import searchspaces
import strategies
from strategies import random_search, regularized_evolution


@pytest.fixture()
def space():
    return searchspaces.get("nb201")


def _uniform(space, seed=0, **opts):
    strategy = strategies.get("uniform", **opts)
    strategy.setup(None, space, seed)
    return strategy


def test_uniform_is_uniform_per_edge(space):
    strategy = _uniform(space)
    counts = collections.Counter()
    for _ in range(4000):
        arch = strategy.sample()
        counts.update((label, op) for label, op in arch.items())
    for (label, op), n in counts.items():
        assert abs(n - 800) < 5 * np.sqrt(4000 * 0.2 * 0.8), (label, op, n)
    assert len(counts) == 30


def test_reject_disconnected_only_yields_connected_archs(space):
    strategy = _uniform(space, reject_disconnected=True)
    assert all(space.is_valid(strategy.sample()) for _ in range(500))
    plain = _uniform(space)
    assert any(not space.is_valid(plain.sample()) for _ in range(500))  # about 20% are disconnected


def test_state_dict_continues_the_same_sequence(space):
    strategy = _uniform(space, seed=3)
    for _ in range(10):
        strategy.sample()
    state = strategy.state_dict()
    expected = [strategy.sample() for _ in range(20)]
    other = _uniform(space, seed=99)
    other.load_state_dict(state)
    assert [other.sample() for _ in range(20)] == expected


def test_unknown_strategy_and_option(space):
    with pytest.raises(ValueError, match="accepted: uniform"):
        strategies.get("nope")
    with pytest.raises(ValueError, match="accepted: reject_disconnected"):
        strategies.get("uniform", temperature=2)


def _conv_score(arch) -> float:
    """A toy objective with a unique optimum: all edges nor_conv_3x3."""
    return sum({"nor_conv_3x3": 3, "nor_conv_1x1": 2, "skip_connect": 1}.get(op, 0) for op in arch.choices)


def test_random_search_counts_distinct_evaluations_and_keeps_the_best(space):
    calls = []

    def evaluate(arch):
        calls.append(arch)
        return _conv_score(arch)

    result = random_search(space, evaluate, budget=50, rng=np.random.default_rng(0))
    assert result.evaluations == 50 == len(calls) == len(set(calls))
    assert result.score == max(s for _, s in result.history)
    small = space.restrict("1<-0", ["none"]).restrict("2<-0", ["none"]).restrict("2<-1", ["none"])
    small = small.restrict("3<-0", ["none"]).restrict("3<-1", ["none", "skip_connect"])
    assert random_search(small, _conv_score, budget=100, rng=np.random.default_rng(0)).evaluations == 10


def test_regularized_evolution_beats_random_search_on_a_toy_objective(space):
    wins = 0
    for seed in range(5):
        re = regularized_evolution(space, _conv_score, budget=150, rng=np.random.default_rng(seed),
                                   population=20, sample_size=5)
        rs = random_search(space, _conv_score, budget=150, rng=np.random.default_rng(seed))
        assert re.evaluations == 150
        wins += re.score >= rs.score
    assert wins >= 4
    best = regularized_evolution(space, _conv_score, budget=400, rng=np.random.default_rng(0))
    assert best.best == space.make(["nor_conv_3x3"] * 6)


def test_search_honours_a_parameter_limit(space):
    limit = 300_000

    def allowed(arch):
        return space.params(arch) <= limit

    result = regularized_evolution(space, _conv_score, budget=120, rng=np.random.default_rng(0), allowed=allowed)
    assert all(space.params(a) <= limit for a, _ in result.history)
    assert space.params(result.best) <= limit

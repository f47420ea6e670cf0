"""ShiftNAS (specs/ALGORITHMS.md §4.2): bins, probability shift, generator, joint training, derive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

import searchspaces
import strategies
import supernets
from strategies.base import StepContext
from strategies.shiftnas import tilted_codes

TASK = dict(num_classes=10, in_channels=1, image_size=8, schedule="cifar")


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("mobilenet")


@pytest.fixture(scope="module")
def net(space):
    torch.manual_seed(0)
    return supernets.build(space, num_classes=10, in_channels=1, width_mult=0.5)


def _strategy(space, net, seed=0, **opts):
    opts = {"pool": 2000, "generator_warmup": 0, **opts}
    strategy = strategies.get("shiftnas", **opts)
    strategy.setup(net, space, seed, None, epochs=3, cost_task=dict(TASK, width_mult=0.5))
    return strategy


@pytest.fixture(scope="module")
def warmed(space, net):
    """A ShiftNAS strategy whose generator had 120 FLOPs-only warm-up steps."""
    return _strategy(space, net, generator_warmup=120)


def _step(strategy, net, arch, loss_value: float | None = None):
    """One training step as the engine runs it (forward, CE, backward, after_backward)."""
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    logits = net(x, arch)
    per_sample = F.cross_entropy(logits, y, reduction="none")
    net.zero_grad(set_to_none=True)
    per_sample.mean().backward()
    if loss_value is not None:
        per_sample = torch.full_like(per_sample, loss_value)
    strategy.after_backward(StepContext(0, 0, arch, x, y, torch.arange(8), logits.detach(), per_sample.detach()))


def test_relaxed_flops_are_exact_at_one_hot(space, net):
    strategy = _strategy(space, net, generator=False)
    rng = np.random.default_rng(0)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(5)]:
        onehot = F.one_hot(torch.tensor(arch.codes()), 3).double()
        assert float(strategy.flops_model.relaxed(onehot)) == space.flops(arch, **strategy.cost_task)


def test_bins_span_the_space_and_every_bin_has_archs(space, net):
    strategy = _strategy(space, net, generator=False)
    fm = strategy.flops_model
    assert fm.lo == space.flops(space.smallest(), **strategy.cost_task)
    assert fm.hi == space.flops(space.largest(), **strategy.cost_task)
    assert all(len(pool) > 0 for pool in strategy.pools)  # extremes filled by tilted samples
    for k, pool in enumerate(strategy.pools):
        assert (fm.bin_of(fm.of_codes(pool)) == k).all()


def test_tilted_samples_reach_the_extremes_uniform_sampling_misses(space):
    rng = np.random.default_rng(0)
    uniform = [space.flops(space.decode(c), **TASK) for c in space.sample_codes(rng, 1000)]
    tilted = [space.flops(space.decode(c), **TASK) for c in tilted_codes(space, rng, 1000)]
    lo, hi = space.flops(space.smallest(), **TASK), space.flops(space.largest(), **TASK)
    assert min(tilted) - lo < 0.5 * (min(uniform) - lo)
    assert hi - max(tilted) < 0.5 * (hi - max(uniform))


def test_sampled_flops_follow_the_bin_distribution(space, net):
    strategy = _strategy(space, net, generator=False)
    strategy.phi = np.array([3.0, 0.0, 0.0, 0.0, 0.0, -3.0])
    p = strategy.probabilities()
    fm = strategy.flops_model
    counts = np.bincount([int(fm.bin_of(space.flops(strategy.sample(), **strategy.cost_task))) for _ in range(3000)],
                         minlength=6) / 3000
    assert np.abs(counts - p).max() < 0.03
    assert p.min() >= 0.5 / 6 - 1e-12  # the floor p_min = uniform_mix / K


def test_probability_shifts_to_the_bin_whose_loss_falls(space, net):
    """Gradient ascent on sum_k P_k V_k: the bin that still improves gains probability, plateaued bins lose."""
    for rule in ("gradient", "boltzmann"):
        strategy = _strategy(space, net, generator=False, window=30, rule=rule)
        fm = strategy.flops_model
        for step in range(120):
            arch = strategy.sample()
            k = int(fm.bin_of(space.flops(arch, **strategy.cost_task)))
            loss = 2.0 - 0.01 * step if k == 0 else 2.0  # only bin 0 keeps improving
            strategy._pending = (k, k, None)
            x = torch.zeros(2, 1, 8, 8)
            strategy.after_backward(StepContext(0, step, arch, x, torch.zeros(2, dtype=torch.long),
                                                torch.arange(2), torch.zeros(2, 10), torch.full((2,), loss)))
        p = strategy.probabilities()
        assert p[0] > 1 / 6 and (p[1:] < 1 / 6).all(), rule
        probs = [h["probabilities"][0] for h in strategy.history]
        assert probs == sorted(probs) and probs[-1] > probs[0], rule
        assert len(strategy.history) == 4
        assert strategy.history[-1]["variation"][0] == 1.0  # normalised by max |V|


def test_generator_learns_to_follow_its_bin(space, warmed):
    strategy = warmed
    fm = strategy.flops_model
    targets, flops = [], []
    for k in range(6):
        centre = float(fm.edges[k:k + 2].mean())
        for arch in strategy.propose(centre, samples=8):
            targets.append(centre)
            flops.append(space.flops(arch, **strategy.cost_task))
    assert spearmanr(targets, flops)[0] > 0.7
    assert strategy.warmup_error < 0.3


def test_joint_training_reaches_generator_and_supernet(space, net):
    strategy = _strategy(space, net, generator_warmup=0)
    before = [p.detach().clone() for p in strategy.generator.parameters()]
    aw = strategy.sample()
    assert isinstance(aw, supernets.ArchWeights) and aw.hard is not None
    assert aw.weights.requires_grad
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    logits = net(x, aw)
    per_sample = F.cross_entropy(logits, y, reduction="none")
    net.zero_grad(set_to_none=True)
    per_sample.mean().backward()
    head_grad = strategy.generator.heads[10].weight.grad  # a kernel decision: CE (mask) + FLOPs terms
    assert head_grad is not None and head_grad.abs().sum() > 0
    assert net.stages[0][0].depthwise.weight.grad is not None
    strategy.after_backward(StepContext(0, 0, aw, x, y, torch.arange(8), logits.detach(), per_sample.detach()))
    assert any(not torch.equal(a, b) for a, b in zip(before, strategy.generator.parameters()))


def test_state_dict_resumes_the_same_sequence(space, net):
    a = _strategy(space, net, window=2)
    for _ in range(3):
        _step(a, net, a.sample())
    state = a.state_dict()
    b = _strategy(space, net, window=2)
    b.load_state_dict(state)
    for _ in range(3):
        wa, wb = a.sample(), b.sample()
        assert wa.hard == wb.hard
        torch.testing.assert_close(wa.weights, wb.weights)
        _step(a, net, wa, 1.0)
        _step(b, net, wb, 1.0)
    np.testing.assert_allclose(a.probabilities(), b.probabilities())


def test_derive_meets_the_budget(space, warmed):
    strategy = warmed
    fm = strategy.flops_model
    budget = float(fm.edges[3])
    arch = strategy.derive(max_flops=budget)
    assert arch is not None and space.flops(arch, **strategy.cost_task) <= budget
    assert strategy.derive() is None  # no budget: the pipeline searches with inherited weights
    assert strategy.derive(max_flops=fm.lo - 1) is None  # nothing fits
    report = strategy.report()
    assert len(report["generator_by_bin"]) == 6 and len(report["bin_edges_flops"]) == 7


def test_bad_options_are_one_sentence():
    for opts in ({"rule": "x"}, {"bins": 1}, {"uniform_mix": 2.0}):
        with pytest.raises(ValueError) as err:
            strategies.get("shiftnas", **opts)
        assert "\n" not in str(err.value)


def test_float16_loss_scale_is_removed_from_the_generator_gradient(space, net):
    """The engine unscales only the supernet's optimizer; the AG's cross-entropy gradient arrives scaled."""
    results = []
    for scale in (1.0, 1024.0):
        strategy = _strategy(space, net, seed=3)
        aw = strategy.sample()
        torch.manual_seed(0)
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
        logits = net(x, aw)
        per_sample = F.cross_entropy(logits, y, reduction="none")
        net.zero_grad(set_to_none=True)
        (per_sample.mean() * scale).backward()
        strategy.after_backward(StepContext(0, 0, aw, x, y, torch.arange(8), logits.detach(), per_sample.detach(),
                                            loss_scale=lambda s=scale: s))
        results.append([p.detach().clone() for p in strategy.generator.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("args, fragment", [
    (["--space", "nb201", "--strategy", "shiftnas"], "strategy.generator=false"),
    (["--space", "mobilenet", "--strategy", "darts", "--set", "supernet.mode=mix"],
     "'mix' mode, which the mobilenet supernet does not"),
])
def test_strategies_that_do_not_fit_the_space_are_refused_before_the_run(tmp_path, capsys, args, fragment):
    from nas.cli import main

    assert main(["search", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()

"""PA&DA: schedules, gradient-norm path importance, loss-gradient data importance, checkpoint state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import searchspaces
import strategies
import supernets
from nas import checkpoint
from nas import data as datasets
from nas.cli import main
from strategies import StepContext

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@pytest.fixture(scope="module")
def bundle():
    return datasets.load("synthetic", synthetic_size=64, synthetic_classes=4, valid_fraction=0.25)


def _pada(bundle, epochs=4, space=None, **opts):
    space = space or searchspaces.get("nb201")
    net = supernets.build(space, num_classes=4, C=4, N=1)
    strategy = strategies.get("pada", **opts)
    strategy.setup(net, space, seed=0, data=bundle, epochs=epochs)
    return strategy, net, space


def _ctx(strategy, arch, bundle, logits=None, positions=None):
    positions = torch.arange(8) if positions is None else positions
    y = bundle.train.labels[positions]
    logits = torch.zeros(len(positions), 4) if logits is None else logits
    return StepContext(epoch=0, step=0, arch=arch, x=None, y=y, index=bundle.train.indices[positions],
                       logits=logits, per_sample_loss=torch.zeros(len(positions)))


def _set_grads(net, scale: dict[str, float]):
    for name, p in net.named_parameters():
        op = next((o for o in OPS if f".{o}." in name), None)
        p.grad = torch.full_like(p, scale.get(op, 1.0))


def test_reference_schedule_for_parameter_free_ops(bundle):
    strategy, net, space = _pada(bundle, epochs=4, param_free="zero")
    arch = space.make(["nor_conv_3x3", "nor_conv_1x1", "skip_connect", "none", "avg_pool_3x3", "nor_conv_3x3"])
    for epoch in range(4):
        strategy.epoch_order(epoch, len(bundle.train))
        _set_grads(net, {})
        strategy.after_backward(_ctx(strategy, arch, bundle))
        strategy.on_epoch_end(epoch)
        p = dict(zip(OPS, strategy.p_host[0]))
        tau = epoch / 4
        assert sum(p.values()) == pytest.approx(1.0, abs=1e-6)
        for op in ("none", "skip_connect", "avg_pool_3x3"):  # importance 0 -> only the uniform share is left
            assert p[op] == pytest.approx((1 - tau) / 5, abs=1e-6)
        assert strategy.q.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_floor_keeps_parameter_free_ops_trained(bundle):
    strategy, net, space = _pada(bundle, epochs=4)
    arch = space.make(["nor_conv_3x3"] * 6)
    for epoch in range(4):
        strategy.epoch_order(epoch, len(bundle.train))
        _set_grads(net, {})
        strategy.after_backward(_ctx(strategy, arch, bundle))
        strategy.on_epoch_end(epoch)
    p = dict(zip(OPS, strategy.p_host[0]))
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-6)
    assert min(p["none"], p["skip_connect"], p["avg_pool_3x3"]) == pytest.approx(0.1, abs=1e-6)  # half of uniform


def test_larger_gradient_norm_gets_larger_probability_and_g_follows_the_formula(bundle):
    strategy, net, space = _pada(bundle, epochs=2, param_free="zero")
    arch = space.make(["nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "none", "nor_conv_1x1", "skip_connect"])
    strategy.epoch_order(0, len(bundle.train))
    _set_grads(net, {"nor_conv_3x3": 3.0, "nor_conv_1x1": 0.5})
    strategy.after_backward(_ctx(strategy, arch, bundle))
    # G[o] = (0 + n_o) / 2, n_o = sum over 3 cells and the 2 edges choosing o of (|gW| + |gb|), / 2 edges
    params = net.choice_parameters()
    for op, scale in (("nor_conv_3x3", 3.0), ("nor_conv_1x1", 0.5)):
        norms = sum(float(torch.full_like(p, scale).norm()) for label in arch
                    if arch[label] == op for p in params[(label, op)])
        assert strategy.G[OPS.index(op)].item() == pytest.approx(norms / 2 / 2, rel=1e-5)
    strategy.on_epoch_end(1)  # tau = 1/2
    p = dict(zip(OPS, strategy.p_host[0]))
    assert p["nor_conv_3x3"] > p["nor_conv_1x1"] > p["none"]
    g = strategy.G.numpy()
    assert p["nor_conv_3x3"] == pytest.approx(0.5 * g[3] / g.sum() + 0.5 / 5, rel=1e-5)
    counts = {op: 0 for op in OPS}
    for _ in range(400):
        for op in strategy.sample().choices:
            counts[op] += 1
    assert counts["nor_conv_3x3"] > counts["nor_conv_1x1"] > counts["none"]


def test_edge_granularity_and_masks(bundle):
    space = searchspaces.get("nb201").restrict("1<-0", ["nor_conv_3x3", "skip_connect"])
    strategy, net, _ = _pada(bundle, space=space, granularity="edge_op")
    assert strategy.p_host.shape == (6, 5)
    assert strategy.p_host[0].tolist() == [0.0, 0.5, 0.0, 0.5, 0.0]
    strategy.on_epoch_end(2)
    assert strategy.p_host[0][[0, 2, 4]].sum() == 0 and np.allclose(strategy.p_host.sum(axis=1), 1)
    assert all(space.contains(strategy.sample()) for _ in range(100))


class _PairSpace(searchspaces.Space):
    """Two op decisions sharing one list and two input decisions that must differ (like a DARTS node)."""

    name = "pairs"

    def __init__(self, allowed=None):
        ops, inputs = ("conv", "pool", "skip"), (0, 1, 2)
        super().__init__([searchspaces.Decision("in0", inputs), searchspaces.Decision("op0", ops),
                          searchspaces.Decision("in1", inputs), searchspaces.Decision("op1", ops)], allowed)

    def make(self, choices):
        arch = super().make(choices)
        if arch["in0"] == arch["in1"]:
            raise searchspaces.SpaceError("the two inputs must differ")
        return arch


class _PairNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.ParameterDict({f"{label}_conv": torch.nn.Parameter(torch.ones(3))
                                         for label in ("op0", "op1")})

    def choice_parameters(self):
        out = {(label, c): [] for label in ("op0", "op1") for c in ("conv", "pool", "skip")}
        out.update({(label, c): [] for label in ("in0", "in1") for c in (0, 1, 2)})
        out[("op0", "conv")] = [self.w["op0_conv"]]
        out[("op1", "conv")] = [self.w["op1_conv"]]
        return out


def test_heterogeneous_decisions_share_a_distribution_per_candidate_list(bundle):
    space, net = _PairSpace(), _PairNet()
    strategy = strategies.get("pada")
    strategy.setup(net, space, seed=0, data=bundle, epochs=2)
    assert strategy.rows == 2 and strategy.row_values == [(0, 1, 2), ("conv", "pool", "skip")]
    archs = [strategy.sample() for _ in range(300)]
    assert all(a["in0"] != a["in1"] for a in archs)  # refused combinations are redrawn
    strategy.epoch_order(0, len(bundle.train))
    for p in net.parameters():
        p.grad = torch.full_like(p, 2.0)
    strategy.after_backward(_ctx(strategy, space.make([0, "conv", 1, "conv"]), bundle))
    stats = strategy.on_epoch_end(1)
    assert stats["p1_conv"] > stats["p1_pool"] == stats["p1_skip"]
    assert stats["p0_0"] == stats["p0_1"] == stats["p0_2"]  # inputs have no parameters: they stay uniform


def test_data_sampler_favours_high_loss_samples(bundle):
    strategy, net, space = _pada(bundle, epochs=2)
    arch = space.make(["skip_connect"] * 6)
    n = len(bundle.train)
    strategy.epoch_order(0, n)
    positions = torch.arange(n)
    y = bundle.train.labels
    logits = torch.nn.functional.one_hot(y, 4).float() * 20  # confidently right: score ~ 0
    hard = positions < 8
    logits[hard] = torch.nn.functional.one_hot((y[hard] + 1) % 4, 4).float() * 20  # confidently wrong: ~1.41
    strategy.after_backward(_ctx(strategy, arch, bundle, logits=logits, positions=positions))
    strategy.on_epoch_end(1)  # tau = 1/2: q = s/sum(s)/2 + 1/(2N)
    assert strategy.q[:8].min() > 5 * strategy.q[8:].max()  # 0.073 vs the floor 0.5 / 48
    order = strategy.epoch_order(2, n)
    assert len(order) == n and order.max() < n
    share = (order < 8).float().mean().item()
    assert share > 0.4  # 8 of 48 samples (17%) hold about 58% of the probability


def test_unbiased_weights_are_one_at_uniform(bundle):
    strategy, _, space = _pada(bundle, unbiased_weights=True)
    arch = space.make(["nor_conv_3x3"] * 6)
    weights = strategy.sample_weights(arch, bundle.train.indices[:5])
    assert torch.allclose(weights, torch.ones(5))
    plain, _, _ = _pada(bundle)
    assert plain.sample_weights(arch, bundle.train.indices[:5]) is None


def test_bad_options_are_refused(bundle):
    with pytest.raises(ValueError, match="accepted: op_type, edge_op"):
        strategies.get("pada", granularity="per_cell")
    assert main(["search", "--strategy", "pada", "--set", "strategy.unseen=forget"]) == 2


TINY = ["--strategy", "pada", "--dataset", "digits", "--set", "supernet.C=4", "--set", "supernet.N=1",
        "--set", "search.budget=4", "--set", "eval.monitor_archs=0", "--set", "train.batch_size=128", "--quiet"]


def test_resume_restores_pada_state_exactly(tmp_path, interrupt_after):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["search", *TINY, "--epochs", "3", "--out", str(full)]) == 0
    interrupt_after(2)
    assert main(["search", *TINY, "--epochs", "3", "--out", str(cut)]) == 130
    interrupt_after.disarm()
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0
    a = checkpoint.load(full / "checkpoints" / "last.pt")
    b = checkpoint.load(cut / "checkpoints" / "last.pt")
    for key in ("p", "G", "scores", "seen", "q"):
        assert torch.equal(a["strategy"][key], b["strategy"][key]), key
    assert a["strategy"]["rng"] == b["strategy"]["rng"] and a["strategy"]["tau"] == b["strategy"]["tau"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_pada_bookkeeping_needs_no_host_sync_per_step(tmp_path, item_calls):
    args = [a for a in TINY if a != "train.batch_size=128"]
    args = ["search", *args[:-1], "train.batch_size=16", "--quiet", "--set", "search.method=none", "--epochs", "2",
            "--out", str(tmp_path / "r")]
    assert main(args) == 0
    assert item_calls["n"] <= 8  # a few per epoch (epoch summary, q statistics), none per step (150 steps)

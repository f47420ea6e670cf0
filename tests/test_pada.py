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
    strategy, net, space = _pada(bundle, epochs=4, param_free="floor")
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

    def choice_slices(self):  # what `supernets.Supernet.choice_slices` gives for whole parameters
        return {key: [(p, ()) for p in params] for key, params in self.choice_parameters().items()}

    def active_choices(self, arch):  # every decision is part of the network, as `supernets.Supernet` says
        return list(arch.items())


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
        "--set", "search.budget=4", "--set", "eval.monitor_archs=0", "--set", "train.batch_size=128",
        "--set", "eval.sample_check=0", "--quiet"]


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
    args = ["train.batch_size=16" if a == "train.batch_size=128" else a for a in TINY]
    args = ["search", *args, "--set", "search.method=none", "--epochs", "2", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    assert item_calls["n"] <= 8  # a few per epoch (epoch summary, q statistics), none per step (150 steps)


# --- reference defaults, dead edges, gradients before clipping --------------------------------------------------

def test_defaults_are_the_reference_rules():
    opts = strategies.get("pada").opts
    assert (opts["param_free"], opts["grad_read"], opts["granularity"], opts["unseen"], opts["norm"]) == \
        ("zero", "after_clip", "op_type", "zero", "sum")
    with pytest.raises(ValueError, match="accepted: after_clip, after_backward"):
        strategies.get("pada", grad_read="before")


def _backward(net, arch, seed=0):
    torch.manual_seed(seed)
    net.zero_grad(set_to_none=True)
    net(torch.randn(4, 3, 8, 8), arch).square().mean().backward()


def test_a_step_whose_conv_edges_are_all_dead_leaves_g_unchanged(bundle):
    strategy, net, space = _pada(bundle)
    strategy.epoch_order(0, len(bundle.train))
    live = space.make(["nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"])
    _backward(net, live)
    strategy.after_backward(_ctx(strategy, live, bundle))
    before = strategy.G.clone()
    assert before[OPS.index("nor_conv_3x3")] > 0 and before[OPS.index("nor_conv_1x1")] > 0
    # 1<-0 and 2<-0 are convs, but nodes 1 and 2 reach nothing (2<-1, 3<-1, 3<-2 are none): only the skip 3<-0
    # feeds the output, so neither conv gets a gradient. The reference skips such ops; halving G would be wrong.
    dead = space.make(["nor_conv_3x3", "nor_conv_1x1", "none", "skip_connect", "none", "none"])
    _backward(net, dead)
    strategy.after_backward(_ctx(strategy, dead, bundle))
    assert torch.equal(strategy.G, before)
    _set_grads(net, {"nor_conv_3x3": 0.0, "nor_conv_1x1": 0.0})  # the same with zero (not None) gradients
    strategy.after_backward(_ctx(strategy, dead, bundle))
    assert torch.equal(strategy.G, before)


def _one_step_g(grad_clip: float, grad_read: str) -> torch.Tensor:
    """G after one engine step (one batch of 16 synthetic samples) from the same seed, weights and path."""
    from nas import config as cfg
    from nas.engine import Trainer
    from nas.progress import Reporter

    one_batch = datasets.load("synthetic", synthetic_size=16, synthetic_classes=4, valid_fraction=0.0)
    config = cfg.resolve([], {"strategy.name": "pada", "strategy.grad_read": grad_read, "train.epochs": 1,
                              "train.batch_size": 16, "train.grad_clip": grad_clip, "seed": 3, "supernet.C": 4,
                              "supernet.N": 1})
    space = searchspaces.get("nb201")
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=4, in_channels=one_batch.in_channels, **config["supernet"])
    strategy = strategies.get("pada", grad_read=grad_read)
    strategy.setup(net, space, seed=3, data=one_batch, epochs=1)
    Trainer(config, net, strategy, one_batch.train, torch.device("cpu"), Reporter(quiet=True)).fit()
    return strategy.G


def test_after_backward_reads_the_norms_before_clipping():
    unclipped = _one_step_g(0.0, "after_clip")
    assert unclipped.sum() > 0  # the path has a live conv
    torch.testing.assert_close(_one_step_g(0.0, "after_backward"), unclipped)  # factor 1 without clipping
    torch.testing.assert_close(_one_step_g(1e-3, "after_backward"), unclipped, rtol=1e-5, atol=0)
    clipped = _one_step_g(1e-3, "after_clip")
    live = unclipped > 0
    ratio = clipped[live] / unclipped[live]
    assert ratio.max() < 0.1 and torch.allclose(ratio, ratio[0].expand_as(ratio))  # one clip factor for all


# --- weight-entangled spaces: slices of shared tensors ----------------------------------------------------------

def test_whole_parameter_spaces_give_their_registry_parameters_whole():
    for name, opts in (("nb201", dict(C=4, N=1)), ("nasbench-macro", {})):
        net = supernets.build(searchspaces.get(name), num_classes=4, **opts)
        whole = {key: [(p, ()) for p in params] for key, params in net.choice_parameters().items()}
        slices = net.choice_slices()
        assert slices.keys() == whole.keys() and any(slices.values())
        assert all([(id(p), i) for p, i in slices[k]] == [(id(p), i) for p, i in whole[k]] for k in whole)
        assert supernets.entry(name).capabilities.choice_gradients


MOBILE_TASK = dict(num_classes=4, in_channels=3, width_mult=0.35, schedule="cifar")


@pytest.fixture(scope="module")
def mobile():
    space = searchspaces.get("mobilenet")
    torch.manual_seed(0)
    return space, supernets.build(space, **MOBILE_TASK)


def _mobile_pada(bundle, mobile):
    space, net = mobile
    strategy = strategies.get("pada")
    strategy.setup(net, space, seed=0, data=bundle, epochs=2)
    strategy.epoch_order(0, len(bundle.train))
    return strategy


def _row(strategy, values):
    row = strategy.row_values.index(tuple(values))
    return strategy.G.view(strategy.rows, strategy.width)[row, :len(values)]


def test_mobilenet_importances_are_norms_of_each_candidates_slice(bundle, mobile):
    from searchspaces.mobilenet import DEPTHS, EXPANDS, KERNELS, MobileNetLayout, make_divisible

    space, net = mobile
    strategy = _mobile_pada(bundle, mobile)
    depths = (4, 3, 2, 4, 2)  # stages 2, 3 and 5 leave blocks inactive: their placeholder k3/e3 must not count
    choices = {f"d{s + 1}": d for s, d in enumerate(depths)}
    for s in range(5):
        for b in range(4):
            choices[f"k{s + 1}_{b + 1}"] = KERNELS[(s + b) % 3]
            choices[f"e{s + 1}_{b + 1}"] = EXPANDS[(s + 2 * b) % 3]
    arch = space.make(choices)
    for p in net.parameters():  # gradient 1 everywhere, inactive blocks included: a norm is sqrt(#elements)
        p.grad = torch.ones_like(p)
    strategy.after_backward(_ctx(strategy, arch, bundle))

    # Expected norms from the layout alone (not from the supernet's slicing code).
    layout = MobileNetLayout(MOBILE_TASK["num_classes"], 3, 32, MOBILE_TASK["width_mult"], "cifar")
    stages = layout.stages()
    kernel_norms: dict[int, list[float]] = {k: [] for k in KERNELS}
    expand_norms: dict[int, list[float]] = {e: [] for e in EXPANDS}
    depth_norms: dict[int, list[float]] = {d: [] for d in DEPTHS}
    for s, stage in enumerate(stages):
        for b in range(depths[s]):
            c_in = (stages[s - 1].width if s else layout.first_block_width) if b == 0 else stage.width
            full = layout.hidden(c_in, max(EXPANDS))
            k, e = choices[f"k{s + 1}_{b + 1}"], choices[f"e{s + 1}_{b + 1}"]
            kernel_norms[k].append(float(np.sqrt(full * k * k)))  # all channels x the centre k x k taps
            h = layout.hidden(c_in, e)
            sizes = [h * c_in, h, h, h * 49, h, h, stage.width * h]  # expand conv + BN, depthwise + BN, project
            if stage.se:
                q = make_divisible(h // 4, 8)
                sizes += [q * h, q, h * q, h]
            expand_norms[e].append(float(sum(np.sqrt(sizes))))
        depth_norms[depths[s]].append(sum(float(p.numel()) ** 0.5 for block in net.stages[s][:depths[s]]
                                          for p in block.parameters()))
    for values, norms in ((KERNELS, kernel_norms), (EXPANDS, expand_norms), (DEPTHS, depth_norms)):
        expected = torch.tensor([0.5 * np.mean(norms[v]) if norms[v] else 0.0 for v in values], dtype=torch.float32)
        torch.testing.assert_close(_row(strategy, values), expected, rtol=1e-5, atol=0)
    kernels = _row(strategy, KERNELS)
    assert kernels[0] < kernels[1] < kernels[2]  # candidates differ: a larger kernel's slice holds more taps
    assert len(set(_row(strategy, EXPANDS).tolist())) == 3


def test_pada_on_mobilenet_learns_non_uniform_kernel_and_expand_distributions(bundle, mobile):
    space, net = mobile
    strategy = _mobile_pada(bundle, mobile)
    for step in range(3):
        arch = strategy.sample()
        net.zero_grad(set_to_none=True)
        torch.manual_seed(step)
        torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 8, 8), arch), torch.arange(4)).backward()
        strategy.after_backward(_ctx(strategy, arch, bundle))
    net.zero_grad(set_to_none=True)
    stats = strategy.on_epoch_end(1)  # tau = 1/2
    kernel_row = strategy.row_values.index((3, 5, 7))
    expand_row = strategy.row_values.index((3, 4, 6))
    for row in (kernel_row, expand_row):
        p = strategy.p_host[row, :3]
        assert p.sum() == pytest.approx(1.0) and p.max() - p.min() > 1e-3  # no longer uniform path sampling
        assert p.min() >= 0.5 / 3 - 1e-9  # tau = 1/2: at least half of uniform
    assert f"p{kernel_row}_7" in stats


def test_a_space_without_per_candidate_gradients_is_refused_before_anything_runs(bundle, monkeypatch, capsys):
    import dataclasses

    from nas import config as cfg
    from nas.errors import UserError
    from supernets import registry

    mobilenet = supernets.entry("mobilenet")  # as if its supernet declared choice_gradients = False
    monkeypatch.setitem(registry._ENTRIES, "mobilenet", dataclasses.replace(
        mobilenet, capabilities=dataclasses.replace(mobilenet.capabilities, choice_gradients=False)))
    with pytest.raises(UserError, match="per-candidate gradient norms") as info:
        cfg.resolve([], {"space.name": "mobilenet", "strategy.name": "pada"})
    assert "\n" not in str(info.value) and "sample_paths=false" in str(info.value)
    cfg.resolve([], {"space.name": "mobilenet", "strategy.name": "pada", "strategy.sample_paths": False})
    assert main(["search", "--space", "mobilenet", "--strategy", "pada", "--quiet"]) == 2
    assert "per-candidate gradient norms" in capsys.readouterr().err

    class _Anonymous(torch.nn.Module):  # a model naming nothing per candidate is refused in setup too
        def choice_slices(self):
            return {}

    model = _Anonymous()
    model.w = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="per-candidate gradient norms"):
        strategies.get("pada").setup(model, searchspaces.get("nb201"), seed=0, data=bundle)

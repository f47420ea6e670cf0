"""Gradient-based strategies on NB201: the mix relaxation, DARTS (first/second order) and GDAS."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import searchspaces
import strategies
import supernets
from nas import data as datasets
from nas.cli import main
from supernets import ArchWeights


@pytest.fixture(scope="module")
def space():
    return searchspaces.get("nb201")


def test_mix_of_one_hot_equals_the_single_path(space):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=10, C=4, N=1).eval()
    x = torch.randn(4, 3, 8, 8)
    rng = np.random.default_rng(0)
    for _ in range(10):
        arch = space.sample(rng)
        onehot = F.one_hot(torch.tensor(arch.codes()), 5).float()
        single = net(x, arch)
        torch.testing.assert_close(net(x, ArchWeights(onehot)), single, rtol=0, atol=1e-6)
        torch.testing.assert_close(net(x, ArchWeights(onehot, hard=arch.codes())), single, rtol=0, atol=1e-6)


def test_hard_weights_run_one_candidate_and_pass_gradients_to_every_weight(space):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=3, C=4, N=1)
    logits = torch.zeros(6, 5, requires_grad=True)
    y = torch.softmax(logits, dim=1)
    index = torch.tensor([3, 2, 1, 4, 0, 3])
    hard = F.one_hot(index, 5).float() - y.detach() + y
    loss = F.cross_entropy(net(torch.randn(4, 3, 8, 8), ArchWeights(hard, hard=tuple(index.tolist()))),
                           torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 6
    unused = net.cells[0].edges["1<-0"]["nor_conv_1x1"][1].weight  # edge 1<-0 chose nor_conv_3x3
    assert unused.grad is None


def test_masked_relaxation_gives_disallowed_candidates_zero_weight(space):
    sub = space.restrict("1<-0", ["nor_conv_3x3", "skip_connect"])
    bundle = datasets.load("synthetic", synthetic_size=32, valid_fraction=0.25)
    net = supernets.build(sub, num_classes=10, C=2, N=1)
    strategy = strategies.get("darts")
    strategy.setup(net, sub, seed=0, data=bundle, epochs=2)
    weights = strategy.weights()
    assert weights[0, [0, 2, 4]].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(weights.sum(dim=1), torch.ones(6))
    assert sub.contains(strategy.derive())


def test_second_order_gradient_matches_the_exact_hypergradient(space):
    """The finite-difference unrolled gradient equals d/dalpha L_val(w - xi * grad_w L_train(w, alpha), alpha)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        net = supernets.build(space, num_classes=3, C=2, N=1)
        bundle = datasets.load("synthetic", synthetic_size=32, synthetic_classes=3, valid_fraction=0.25)
        strategy = strategies.get("darts", order=2, unrolled_eps=1e-4)
        strategy.setup(net, space, seed=0, data=bundle, epochs=1)
        with torch.no_grad():
            strategy.alpha.normal_(0, 0.5)
        train = next(bundle.train.batches(8, augment=False))
        valid = next(bundle.valid.batches(8, augment=False))
        train = type(train)(train.x.double(), train.y, train.index)
        valid = type(valid)(valid.x.double(), valid.y, valid.index)
        xi = 0.1
        sgd = torch.optim.SGD(net.parameters(), lr=xi)
        ours = strategy._unrolled_gradient(valid, strategies.ArchStepContext(0, 0, train, xi, sgd))

        names, params = zip(*[(n, p) for n, p in net.named_parameters()])
        alpha = strategy.alpha
        train_loss = F.cross_entropy(net(train.x, ArchWeights(torch.softmax(alpha, 1))), train.y)
        grads = torch.autograd.grad(train_loss, params, create_graph=True, allow_unused=True)
        unrolled = {n: p - xi * g if g is not None else p for n, p, g in zip(names, params, grads)}
        logits = torch.func.functional_call(net, unrolled, (valid.x, ArchWeights(torch.softmax(alpha, 1))))
        exact = torch.autograd.grad(F.cross_entropy(logits, valid.y), alpha)[0]
        torch.testing.assert_close(ours, exact, rtol=1e-4, atol=1e-7)
        first = torch.autograd.grad(F.cross_entropy(net(valid.x, strategy.relaxed()), valid.y), alpha)[0]
        assert not torch.allclose(first, exact, rtol=1e-3)  # the implicit term matters
    finally:
        torch.set_default_dtype(previous)


TINY = ["--dataset", "digits", "--set", "supernet.C=4", "--set", "supernet.N=1", "--set", "train.batch_size=128",
        "--set", "eval.monitor_archs=0", "--set", "eval.sample_check=0", "--quiet"]


@pytest.mark.parametrize("name", ["darts", "gdas"])
def test_search_ends_with_the_derived_arch_alpha_history_and_plot(name, tmp_path):
    out = tmp_path / name
    assert main(["search", "--strategy", name, "--epochs", "3", "--out", str(out), *TINY,
                 "--set", "strategy.arch_lr=0.05"]) == 0
    report = json.loads((out / "strategy.json").read_text())
    assert len(report["alpha_history"]) == 3 and len(report["alpha_history"][0]) == 6
    assert report["alpha_history"][0] != report["alpha_history"][-1]  # the architecture weights moved
    final = np.array(report["alpha"])
    space = searchspaces.get("nb201")
    derived = space.decode(final.argmax(axis=1))
    arch = json.loads((out / "arch.json").read_text())
    assert arch["arch"] == derived.to_string() == report["derived"] and arch["method"] == f"{name}.derive"
    assert (out / "plots" / "alphas.png").read_bytes()[:4] == b"\x89PNG"
    if name == "gdas":
        import csv

        with open(out / "metrics.csv", newline="") as fh:
            taus = [float(r["gdas_tau"]) for r in csv.DictReader(fh)]
        assert taus == pytest.approx([10.0, 5.05, 0.1])


def test_darts_resume_restores_alpha_and_its_optimizer(interrupted_and_resumed):
    a, b = interrupted_and_resumed(["search", "--strategy", "darts", "--epochs", "2", *TINY,
                                    "--set", "search.method=none"])
    assert torch.equal(a["strategy"]["alpha"], b["strategy"]["alpha"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_gradient_strategies_need_a_validation_split(capsys):
    assert main(["search", "--strategy", "darts", "--set", "data.valid_fraction=0", "--set", "search.split=test",
                 "--set", "eval.monitor_archs=0"]) == 2
    assert "updates its architecture on a validation split" in capsys.readouterr().err
    with pytest.raises(ValueError, match="accepted: 1, 2"):
        strategies.get("darts", order=3)


def test_darts_discretisation_keeps_the_top_two_non_none_edges_per_node():
    from searchspaces.darts import DARTS_V2, EDGES, PRIMITIVES

    space = searchspaces.get("darts")
    target = space.parse(DARTS_V2) if isinstance(DARTS_V2, str) else DARTS_V2
    weights = np.zeros((28, 8))
    weights[:, 0] = 5.0  # `none` dominates every edge: DARTS ignores it when ranking edges and ops
    rng = np.random.default_rng(0)
    weights[:, 1:] = rng.random((28, 7)) * 0.1
    for c, cell in enumerate(("normal", "reduce")):
        for op, source, node in [(op, s, 2 + k // 2) for k, (op, s) in enumerate(space.genotype(target)[cell])]:
            weights[c * 14 + EDGES.index((node, source)), PRIMITIVES.index(op)] = 1.0
    assert space.discretize(weights) == target
    assert [label for label, _ in space.relaxation()][:2] == ["normal:2<-0", "normal:2<-1"]


# --- DrNAS ---------------------------------------------------------------------------------------------------
def _drnas(space, **opts):
    torch.manual_seed(0)
    net = supernets.build(space, num_classes=3, C=2, N=1)
    strategy = strategies.get("drnas", **opts)
    strategy.setup(net, space, seed=0, data=None, epochs=1)
    return net, strategy


def test_drnas_samples_lie_on_the_simplex_differ_per_step_and_pass_gradients_to_alpha(space):
    net, strategy = _drnas(space)
    first, second = strategy.relaxed().weights, strategy.relaxed().weights
    for w in (first, second):
        assert w.shape == (6, 5) and (w >= 0).all()
        torch.testing.assert_close(w.sum(dim=1), torch.ones(6))
    assert not torch.allclose(first, second)  # a fresh draw every call
    assert strategy.sample().weights.grad_fn is None  # the weight step gets it detached
    # pathwise gradients: the loss of a sample reaches every alpha entry
    (first * torch.arange(5.0)).sum().backward()
    assert strategy.alpha.grad is not None and torch.count_nonzero(strategy.alpha.grad) == 30
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    batch = type("Batch", (), {"x": x, "y": y})()
    strategy.alpha.grad = None
    before = strategy.alpha.detach().clone()
    strategy.arch_step(batch, strategies.ArchStepContext(0, 0, batch, 0.1, torch.optim.SGD(net.parameters(), 0.1)))
    assert not torch.equal(before, strategy.alpha.detach())


def test_drnas_kl_is_zero_at_the_uniform_concentration_and_positive_elsewhere(space):
    _, strategy = _drnas(space, reg_type="kl")
    with torch.no_grad():
        strategy.alpha.zero_()  # elu(0) + 1 = 1: Dir(1) itself
    assert torch.equal(strategy.kl(), torch.zeros(6))
    with torch.no_grad():
        strategy.alpha.copy_(torch.randn(6, 5))
    kl = strategy.kl()
    assert (kl > 0).all()
    reference = torch.distributions.kl_divergence(torch.distributions.Dirichlet(F.elu(strategy.alpha) + 1),
                                                  torch.distributions.Dirichlet(torch.ones(6, 5)))
    torch.testing.assert_close(kl, reference)
    # the regulariser replaces Adam's weight decay: kl -> no decay, l2 (default) -> decay reg_scale
    assert strategy.optimizer.param_groups[0]["weight_decay"] == 0.0
    _, l2 = _drnas(space, reg_scale=0.01)
    assert l2.optimizer.param_groups[0]["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="accepted: l2, kl"):
        strategies.get("drnas", reg_type="entropy")


def test_drnas_masks_and_derives_the_arg_max_of_the_expected_weights(space):
    sub = space.restrict("1<-0", ["nor_conv_3x3", "skip_connect"])
    torch.manual_seed(0)
    net = supernets.build(sub, num_classes=3, C=2, N=1)
    strategy = strategies.get("drnas", reg_type="kl")
    strategy.setup(net, sub, seed=0, data=None, epochs=1)
    w = strategy.relaxed().weights
    assert w[0, [0, 2, 4]].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(w.sum(dim=1), torch.ones(6))
    with torch.no_grad():
        strategy.alpha.copy_(torch.randn(6, 5))
    kl = strategy.kl()  # over the allowed entries only: row 0 is a 2-candidate Dirichlet
    assert (kl > 0).all()
    dirichlet = torch.distributions.Dirichlet
    reference = torch.distributions.kl_divergence(dirichlet(F.elu(strategy.alpha[0, [1, 3]]) + 1),
                                                  dirichlet(torch.ones(2)))
    torch.testing.assert_close(kl[0], reference)
    expected = strategy.weights()
    concentration = (F.elu(strategy.alpha) + 1).detach() * strategy.mask
    torch.testing.assert_close(expected, concentration / concentration.sum(dim=1, keepdim=True))
    assert strategy.derive() == sub.decode(np.where(strategy.mask.numpy(), expected.detach().numpy(), -1).argmax(1))


DRNAS = ["search", "--strategy", "drnas", "--space", "nb201", "--dataset", "digits", "--set", "supernet.C=4",
         "--set", "supernet.N=1", "--set", "train.batch_size=128", "--set", "eval.monitor_archs=0",
         "--set", "eval.sample_check=0", "--quiet"]


def test_drnas_search_runs_end_to_end(tmp_path):
    out = tmp_path / "drnas"
    assert main([*DRNAS, "--epochs", "1", "--out", str(out)]) == 0
    report = json.loads((out / "strategy.json").read_text())
    arch = json.loads((out / "arch.json").read_text())
    assert report["strategy"] == "drnas" and len(report["alpha_history"]) == 1
    assert arch["arch"] == report["derived"] and arch["method"] == "drnas.derive"


def test_drnas_resume_is_bit_exact(interrupted_and_resumed):
    a, b = interrupted_and_resumed([*DRNAS, "--epochs", "2", "--set", "search.method=none",
                                    "--set", "strategy.reg_type=kl"])
    assert torch.equal(a["strategy"]["alpha"], b["strategy"]["alpha"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

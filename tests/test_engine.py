"""Training engine: schedule, resume equals an uninterrupted run, AMP, no per-step host sync by design."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch

from nas import checkpoint
from nas.cli import main
from nas.engine import Schedule

TINY = ["--dataset", "digits", "--set", "supernet.C=4", "--set", "supernet.N=1", "--set", "search.budget=5",
        "--set", "eval.monitor_archs=1", "--set", "train.batch_size=128", "--set", "eval.sample_check=0", "--quiet"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(fh)]


def test_cosine_per_epoch_matches_torch_cosine_annealing():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.05)
    torch_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    ours = Schedule(lr=0.05, lr_min=0.001, epochs=10, steps_per_epoch=7, per_step=False)
    for epoch in range(10):
        for step in (0, 6):
            assert math.isclose(ours(epoch, step), opt.param_groups[0]["lr"], rel_tol=1e-9)
        opt.step()
        torch_sched.step()
    per_step = Schedule(lr=0.1, lr_min=0.0, epochs=2, steps_per_epoch=5, per_step=True, warmup_epochs=0)
    lrs = [per_step(e, s) for e in range(2) for s in range(5)]
    assert lrs[0] == 0.1 and all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] > 0
    warm = Schedule(lr=0.1, lr_min=0.0, epochs=4, steps_per_epoch=5, per_step=True, warmup_epochs=1)
    assert [round(warm(0, s), 6) for s in range(5)] == [0.02, 0.04, 0.06, 0.08, 0.1] and warm(1, 0) == 0.1


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path, interrupt_after):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["search", *TINY, "--epochs", "3", "--out", str(full)]) == 0

    interrupt_after(2)
    assert main(["search", *TINY, "--epochs", "3", "--out", str(cut)]) == 130
    assert checkpoint.load(cut / "checkpoints" / "last.pt")["epoch"] == 2
    assert not (cut / "summary.json").exists()
    interrupt_after.disarm()
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0

    a = checkpoint.load(full / "checkpoints" / "last.pt")
    b = checkpoint.load(cut / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["strategy"] == b["strategy"]
    assert _rows(full) == _rows(cut)
    assert json.loads((full / "arch.json").read_text()) == json.loads((cut / "arch.json").read_text())
    history = json.loads((cut / "environment.json").read_text())
    assert len(history) == 2 and history[1]["command"][1:3] == ["search", "--resume"]


def test_different_seeds_give_different_runs(tmp_path):
    for seed in (0, 1):
        assert main(["search", *TINY, "--epochs", "1", "--seed", str(seed), "--out", str(tmp_path / str(seed))]) == 0
    a = checkpoint.load(tmp_path / "0" / "checkpoints" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "1" / "checkpoints" / "last.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_amp_on_cpu_trains(tmp_path):
    out = tmp_path / "amp"
    assert main(["search", *TINY, "--epochs", "1", "--set", "train.amp=true", "--out", str(out)]) == 0
    rows = _rows(out)
    assert math.isfinite(float(rows[0]["train_loss"]))


def test_engine_syncs_with_the_host_only_outside_the_step(tmp_path, item_calls):
    """`.item()` is called a bounded number of times per epoch, not once per step."""
    out = tmp_path / "sync"
    args = ["search", "--dataset", "digits", "--set", "supernet.C=4", "--set", "supernet.N=1",
            "--set", "search.method=none", "--set", "eval.monitor_archs=0", "--set", "eval.sample_check=0",
            "--set", "train.batch_size=16",
            "--epochs", "1", "--quiet", "--out", str(out)]
    assert main(args) == 0
    steps = int(_rows(out)[0]["steps"])
    assert steps >= 70 and item_calls["n"] <= 4


def test_strategies_see_the_clip_factor_that_torch_applied():
    """`StepContext.clip_factor` is the factor clipping multiplied the gradients by: clipped = unclipped * factor,
    factor = min(1, max_norm / (||unclipped|| + 1e-6)); 1.0 without clipping."""
    import searchspaces
    import strategies
    import supernets
    from nas import config as cfg
    from nas import data
    from nas.engine import Trainer
    from nas.progress import Reporter

    class Recording(strategies.UniformStrategy):
        def after_backward(self, ctx):
            self.factor = ctx.clip_factor
            self.grads = [p.grad.clone() for p in self.supernet.parameters() if p.grad is not None]

    one_batch = data.load("synthetic", synthetic_size=16, synthetic_classes=4, valid_fraction=0.0)
    seen = {}
    for clip in (0.0, 0.05):
        config = cfg.resolve([], {"train.epochs": 1, "train.batch_size": 16, "train.grad_clip": clip, "seed": 0,
                                  "supernet.C": 4, "supernet.N": 1})
        space = searchspaces.get("nb201")
        torch.manual_seed(0)
        net = supernets.build(space, num_classes=4, in_channels=one_batch.in_channels, **config["supernet"])
        strategy = Recording()
        strategy.setup(net, space, seed=0, data=one_batch, epochs=1)
        Trainer(config, net, strategy, one_batch.train, torch.device("cpu"), Reporter(quiet=True)).fit()
        seen[clip] = strategy
    plain, clipped = seen[0.0], seen[0.05]
    assert plain.factor == 1.0 and isinstance(clipped.factor, torch.Tensor)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in plain.grads]))
    assert 0 < clipped.factor.item() < 1
    assert math.isclose(clipped.factor.item(), min(1.0, 0.05 / (total.item() + 1e-6)), rel_tol=1e-5)
    for a, b in zip(plain.grads, clipped.grads):
        torch.testing.assert_close(b, a * clipped.factor)


def test_engine_trains_on_the_strategys_loss():
    """The engine back-propagates whatever `strategy.loss` returns for each path and hands it the path's logits,
    its label cross-entropy and the batch indices: a loss of 3 x the mean cross-entropy gives 3 x the gradients."""
    import searchspaces
    import strategies
    import supernets
    from nas import config as cfg
    from nas import data
    from nas.engine import Trainer
    from nas.progress import Reporter

    class Recording(strategies.UniformStrategy):
        scale = 1.0

        def loss(self, ctx):
            self.ctx = getattr(self, "ctx", ctx)
            return self.scale * super().loss(ctx)

        def after_backward(self, ctx):  # the first step's: later ones start from weights the scale has moved
            if not hasattr(self, "grads"):
                self.grads = [p.grad.clone() for p in self.supernet.parameters() if p.grad is not None]

    one_batch = data.load("synthetic", synthetic_size=16, synthetic_classes=4, valid_fraction=0.0)
    config = cfg.resolve([], {"train.epochs": 1, "train.batch_size": 16, "train.grad_clip": 0.0, "seed": 0,
                              "supernet.C": 4, "supernet.N": 1})
    space = searchspaces.get("nb201")
    seen = {}
    for scale in (1.0, 3.0):
        torch.manual_seed(0)
        net = supernets.build(space, num_classes=4, in_channels=one_batch.in_channels, **config["supernet"])
        strategy = Recording()
        strategy.scale = scale
        strategy.setup(net, space, seed=0, data=one_batch, epochs=1)
        Trainer(config, net, strategy, one_batch.train, torch.device("cpu"), Reporter(quiet=True)).fit()
        seen[scale] = strategy
    ctx = seen[3.0].ctx
    assert ctx.position == 0 and ctx.lead_logits is None and ctx.logits.requires_grad
    assert ctx.per_sample_loss.shape == ctx.y.shape == ctx.index.shape and ctx.logits.shape[1] == 4
    # as vectors: the biases of convolutions before batch-statistics BN have true gradient 0 (only noise each)
    plain, scaled = (torch.cat([g.flatten() for g in seen[k].grads]) for k in (1.0, 3.0))
    assert plain.numel() > 0 and torch.linalg.vector_norm(scaled - 3.0 * plain) < 1e-4 * torch.linalg.vector_norm(
        3.0 * plain)


def test_sample_check_scores_the_same_seeded_archs_for_every_strategy(tmp_path, monkeypatch):
    """eval.sample_check=N scores N uniformly sampled archs after training, the same ones for any strategy at one
    seed (so medians compare across strategies), and summary.json holds their median and percentiles."""
    from nas.evaluate import ArchEvaluator

    scored: list[tuple[str, float]] = []
    real_call = ArchEvaluator.__call__

    def spy(self, arch):
        score = real_call(self, arch)
        scored.append((str(arch), score))
        return score

    monkeypatch.setattr(ArchEvaluator, "__call__", spy)
    summaries, archs = [], []
    for strategy in ("uniform", "sandwich"):
        scored.clear()
        out = tmp_path / strategy
        assert main(["search", *TINY, "--strategy", strategy, "--epochs", "1", "--set", "search.method=none",
                     "--set", "eval.monitor_archs=0", "--set", "eval.sample_check=6", "--out", str(out)]) == 0
        summaries.append(json.loads((out / "summary.json").read_text())["sampled_archs_valid_acc"])
        archs.append([a for a, _ in scored])
        scores = sorted(s for _, s in scored)
        assert summaries[-1]["archs"] == 6 and len(scored) == 6
        assert summaries[-1]["median"] == (scores[2] + scores[3]) / 2
        assert summaries[-1]["p10"] <= summaries[-1]["median"] <= summaries[-1]["p90"]
    assert archs[0] == archs[1] and len(set(archs[0])) > 1

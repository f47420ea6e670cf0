"""Sandwich rule: largest + smallest + n uniform paths per step, gradients summed, in-place distillation; the
engine's multi-path step equals the hand-computed sum of the paths' losses, and resumes bit-for-bit."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F

import searchspaces
import strategies
from nas import checkpoint
from nas import config as cfg
from nas.cli import main
from nas.components import build_components
from nas.engine import Trainer
from nas.errors import UserError
from nas.progress import Reporter

TASK = dict(num_classes=10, in_channels=1, image_size=8, C=4, N=1)


def _sandwich(seed=0, **opts):
    strategy = strategies.get("sandwich", **opts)
    strategy.setup(None, searchspaces.get("nb201"), seed, cost_task=TASK)
    return strategy


def test_step_is_largest_then_smallest_then_n_uniform_paths():
    space = searchspaces.get("nb201")
    strategy = _sandwich(n=3)
    assert strategy.largest == space.largest(**TASK) and strategy.smallest == space.smallest(**TASK)
    assert space.params(strategy.largest, **TASK) > space.params(strategy.smallest, **TASK)
    steps = [strategy.sample_step() for _ in range(50)]
    assert all(len(s) == 5 and s[0] == strategy.largest and s[1] == strategy.smallest for s in steps)
    middle = {arch for s in steps for arch in s[2:]}
    assert len(middle) > 100  # fresh uniform draws, not a fixed set
    assert len(_sandwich(n=0).sample_step()) == 2
    # the generator state is all a resumed run needs
    state = strategy.state_dict()
    expected = [strategy.sample_step() for _ in range(5)]
    other = _sandwich(seed=7, n=3)
    other.load_state_dict(state)
    assert [other.sample_step() for _ in range(5)] == expected


def test_restricted_space_gives_its_own_extremes():
    space = searchspaces.get("nb201").restrict("1<-0", ["skip_connect", "nor_conv_1x1"])
    strategy = strategies.get("sandwich")
    strategy.setup(None, space, 0)
    largest, smallest, *middle = strategy.sample_step()
    assert largest["1<-0"] == "nor_conv_1x1" and smallest["1<-0"] == "skip_connect"
    assert all(space.contains(arch) for arch in middle)


@pytest.mark.parametrize("opts, message, config_message", [
    ({"n": -1}, "strategy.n=-1", "strategy.n=-1 is not valid"),
    ({"distill_weight": 1.5}, "strategy.distill_weight=1.5", "strategy.distill_weight=1.5 is not valid"),
    ({"teacher": "big"}, "accepted: distill_weight, inplace_distill, n, reject_disconnected",
     "unknown config key 'strategy.teacher'"),
])
def test_bad_options_are_refused(opts, message, config_message):
    with pytest.raises(ValueError, match=message):
        strategies.get("sandwich", **opts)
    with pytest.raises(UserError, match=config_message):
        cfg.resolve([], {"strategy.name": "sandwich"}, [f"strategy.{k}={v}" for k, v in opts.items()])


def test_preset_defaults_are_the_bignas_setting():
    config = cfg.resolve([], {"strategy.name": "sandwich"})
    assert config["strategy"] == {"name": "sandwich", "n": 2, "inplace_distill": True, "distill_weight": 1.0,
                                  "reject_disconnected": False}
    assert strategies.get("sandwich").distill_weight == 1.0
    assert strategies.get("sandwich", inplace_distill=False).distill_weight == 0.0


class _Stop(Exception):
    pass


@pytest.mark.parametrize("name, overrides, paths, weight", [
    ("sandwich", [], 4, 1.0),
    ("sandwich", ["strategy.distill_weight=0.5", "strategy.n=1"], 3, 0.5),
    ("sandwich", ["strategy.inplace_distill=false"], 4, 0.0),
    ("uniform", [], 1, 0.0),
])
def test_engine_step_sums_the_paths_losses_with_inplace_distillation(name, overrides, paths, weight):
    """The gradients `after_backward` sees are those of sum_i loss_i: path 0 on the labels, paths i >= 1 on
    (1 - w) CE + w soft-CE(path 0's detached softmax); the logged loss is path 0's label CE."""
    config = cfg.resolve([], {"strategy.name": name, "data.name": "digits"}, [
        "supernet.C=4", "supernet.N=1", "train.batch_size=32", "train.grad_clip=0", *overrides])
    device = torch.device("cpu")
    space, bundle, net, strategy = build_components(config, device)
    assert strategy.cost_task["C"] == 4 and strategy.cost_task["image_size"] == bundle.image_size
    trainer = Trainer(config, net, strategy, bundle.train, device, Reporter(None, quiet=True))
    seen = {}

    def after_backward(ctx):
        seen["ctx"] = ctx
        seen["grads"] = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in trainer.params]
        raise _Stop

    strategy.after_backward = after_backward
    with pytest.raises(_Stop):
        trainer.fit()
    ctx = seen["ctx"]
    assert len(ctx.paths) == paths and ctx.arch == ctx.paths[0]
    if name == "sandwich":
        assert ctx.paths[:2] == (strategy.largest, strategy.smallest)

    total, teacher = 0.0, None
    for i, arch in enumerate(ctx.paths):  # batch-statistics BN: the same forward as in the step
        logits = net(ctx.x, arch)
        ce = F.cross_entropy(logits, ctx.y, reduction="none")
        if i == 0:
            torch.testing.assert_close(ce.detach(), ctx.per_sample_loss)
            torch.testing.assert_close(logits.detach(), ctx.logits)
            teacher = logits.detach().softmax(1)
            loss = ce.mean()
        else:
            soft = -(teacher * F.log_softmax(logits, 1)).sum(1)
            loss = ((1 - weight) * ce + weight * soft).mean()
        total = total + loss
    expected = torch.autograd.grad(total, trainer.params, allow_unused=True)
    for got, want in zip(seen["grads"], expected):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want, rtol=1e-5, atol=1e-6)


TINY = ["--strategy", "sandwich", "--dataset", "digits", "--set", "supernet.C=4", "--set", "supernet.N=1",
        "--set", "search.budget=3", "--set", "eval.monitor_archs=0", "--set", "train.batch_size=128",
        "--set", "eval.sample_check=0", "--quiet"]


def _flops_rows(path):
    with open(path / "sampled_flops.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_sandwich_run_resumes_bit_for_bit_and_records_every_path(tmp_path, interrupt_after):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["search", *TINY, "--epochs", "2", "--out", str(full)]) == 0
    interrupt_after(1)
    assert main(["search", *TINY, "--epochs", "2", "--out", str(cut)]) == 130
    interrupt_after.disarm()
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0

    a, b = (checkpoint.load(d / "checkpoints" / "last.pt") for d in (full, cut))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["strategy"] == b["strategy"]
    assert all(torch.equal(a["path_costs"][k], b["path_costs"][k]) for k in a["path_costs"])
    assert _flops_rows(full) == _flops_rows(cut)
    assert json.loads((full / "arch.json").read_text())["arch"] == json.loads((cut / "arch.json").read_text())["arch"]

    # every step trained 4 paths; path 0 is the largest arch and path 1 the smallest
    rows = _flops_rows(full)
    steps = json.loads((full / "summary.json").read_text())["steps"]
    assert len(rows) == 4 * steps and [r["path"] for r in rows[:4]] == ["0", "1", "2", "3"]
    space = searchspaces.get("nb201")
    task = json.loads((full / "arch.json").read_text())["cost_model"]
    report = json.loads((full / "strategy.json").read_text())
    largest, smallest = space.parse(report["largest"]), space.parse(report["smallest"])
    assert largest == space.largest(**task) and smallest == space.smallest(**task)
    assert {int(r["flops"]) for r in rows if r["path"] == "0"} == {space.flops(largest, **task)}
    assert {int(r["flops"]) for r in rows if r["path"] == "1"} == {space.flops(smallest, **task)}
    assert (full / "plots" / "sampled_flops.png").read_bytes()[:4] == b"\x89PNG"

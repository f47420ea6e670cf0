"""`nas search --space mobilenet --strategy shiftnas --max-flops ...` end to end, and its resume."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import searchspaces
from nas import checkpoint
from nas.cli import main

TINY = ["--dataset", "digits", "--epochs", "2", "--seed", "1", "--set", "supernet.width_mult=0.35",
        "--set", "train.batch_size=128", "--set", "search.budget=4", "--set", "eval.monitor_archs=0",
        "--set", "eval.calib_batches=1", "--set", "strategy.pool=1000", "--set", "strategy.generator_warmup=60",
        "--set", "strategy.window=3", "--set", "strategy.derive_samples=16", "--set", "eval.sample_check=0"]
TASK = dict(num_classes=10, in_channels=1, image_size=8, width_mult=0.35, schedule="cifar")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_shiftnas_search_under_a_flops_budget_and_resume(tmp_path, interrupt_after, capsys):
    space = searchspaces.get("mobilenet")
    lo, hi = space.flops(space.smallest(), **TASK), space.flops(space.largest(), **TASK)
    budget = int(lo + 0.6 * (hi - lo))
    out = tmp_path / "run"
    args = ["search", "--space", "mobilenet", "--strategy", "shiftnas", "--max-flops", str(budget), "--out", str(out),
            *TINY]
    interrupt_after(1)
    assert main(args) == 130
    interrupt_after.disarm()
    assert main(["search", "--resume", str(out)]) == 0
    arch = json.loads((out / "arch.json").read_text())
    assert arch["method"] == "shiftnas.derive" and arch["flops"] <= budget
    assert arch["flops"] == space.flops(space.parse(arch["arch"]), **TASK)
    assert arch["bn_mode"] == "recalibrate"
    report = json.loads((out / "strategy.json").read_text())
    assert len(report["generator_by_bin"]) == 6 and report["shifts"]
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert abs(sum(float(rows[-1][f"shift_p{k}"]) for k in range(6)) - 1.0) < 1e-4  # metrics.csv rounds
    assert (out / "plots" / "sampled_flops.png").is_file()

    # the resumed run ends where an uninterrupted one does
    again = tmp_path / "again"
    assert main(["search", "--space", "mobilenet", "--strategy", "shiftnas", "--max-flops", str(budget),
                 "--out", str(again), *TINY]) == 0
    a = checkpoint.load(out / "checkpoints" / "last.pt")
    b = checkpoint.load(again / "checkpoints" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["strategy"]["generator"]:
        assert torch.equal(a["strategy"]["generator"][key], b["strategy"]["generator"][key]), key
    assert json.loads((again / "arch.json").read_text())["arch"] == arch["arch"]
    capsys.readouterr()


def test_mobilenet_arch_info_and_bad_arch(capsys):
    text = "k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3"
    assert main(["arch", "info", "--space", "mobilenet", "--arch", text, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == text
    assert main(["arch", "info", "--space", "mobilenet", "--arch", "k3e3"]) == 2
    err = capsys.readouterr().err
    assert "5 stages" in err and "Traceback" not in err


def test_bench_build_trains_sampled_mobilenet_archs(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "build", "--space", "mobilenet", "--archs", "2", "--epochs", "1", "--out", str(out),
                 "--set", "width_mult=0.35", "--quiet"]) == 0
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    space = searchspaces.get("mobilenet")
    assert len(rows) == 2 and len({r["arch"] for r in rows}) == 2
    for row in rows:
        assert float(row["digits:params"]) == space.params(space.parse(row["arch"]), **TASK)
    assert main(["bench", "build", "--space", "mobilenet", "--archs", "all", "--out", str(tmp_path / "b2")]) == 2
    assert main(["bench", "build", "--space", "darts", "--archs", "2", "--out", str(tmp_path / "b3")]) == 2
    err = capsys.readouterr().err
    assert "too large for --archs all" in err and "not 'darts'" in err


def test_export_without_inheritance_is_freshly_initialised():
    import supernets

    space = searchspaces.get("mobilenet")
    net = supernets.build(space, num_classes=10, width_mult=0.35)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.5)
    arch = space.smallest()
    inherited, fresh = net.export(arch), net.export(arch, inherit=False)
    assert all((p == 0.5).all() for p in inherited.parameters())
    convs = [m for m in fresh.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(not (m.weight == 0.5).all() for m in convs)
    assert sum(p.numel() for p in fresh.parameters()) == sum(p.numel() for p in inherited.parameters())

"""`nas train`: final architectures trained from scratch with their space's recipe."""

from __future__ import annotations

import json

import pytest
import torch

import searchspaces
from nas import checkpoint, final
from nas.cli import main
from searchspaces.darts import DARTS_V2

NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
TINY_NB201 = ["--dataset", "digits", "--set", "C=4", "--set", "layers=1", "--set", "batch_size=128", "--quiet"]


def test_cutout_zeroes_one_clipped_square_per_image():
    x = torch.ones(64, 3, 8, 8)
    out = final.cutout(x, 4, torch.Generator().manual_seed(0))
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert torch.all(zeros >= 4) and torch.all(zeros <= 16) and zeros.float().mean() > 8  # clipped at borders
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)  # the same square in every channel
    rows = (out[:, 0] == 0).any(dim=2)
    assert torch.all(rows.sum(dim=1) <= 4)  # a square, not scattered pixels


def test_recipes_follow_the_papers():
    darts = final.FinalSettings.for_space("darts", "x")
    assert (darts.C, darts.layers, darts.auxiliary_weight, darts.drop_path, darts.cutout) == (36, 20, 0.4, 0.2, 16)
    assert (darts.epochs, darts.lr, darts.batch_size, darts.weight_decay) == (600, 0.025, 96, 3e-4)
    nb201 = final.FinalSettings.for_space("nb201", "x")
    assert (nb201.C, nb201.layers, nb201.epochs, nb201.lr, nb201.nesterov) == (16, 5, 200, 0.1, True)


def test_nb201_arch_trains_and_resumes_exactly(tmp_path, interrupt_after):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ["train", "--space", "nb201", "--arch", NB201_ARCH, "--epochs", "2", *TINY_NB201]
    assert main([*args, "--out", str(full)]) == 0
    summary = json.loads((full / "summary.json").read_text())
    space = searchspaces.get("nb201")
    assert summary["params"] == space.params(space.parse(NB201_ARCH), C=4, N=1, in_channels=1)
    assert 0 <= summary["final_test_acc"] <= 100 and summary["status"] == "complete"

    interrupt_after(1)
    assert main([*args, "--out", str(cut)]) == 130
    interrupt_after.disarm()
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    a, b = (checkpoint.load(d / "checkpoints" / "last.pt")["model"] for d in (full, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_darts_arch_with_auxiliary_drop_path_and_cutout_on_digits(tmp_path):
    out = tmp_path / "darts"
    assert main(["train", "--space", "darts", "--arch", DARTS_V2, "--dataset", "digits", "--epochs", "1",
                 "--set", "C=4", "--set", "layers=5", "--set", "batch_size=128", "--set", "cutout=4",
                 "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params_with_auxiliary"] > summary["params"] > 0  # the tower is trained, not counted


def test_arch_comes_from_a_search_run(tmp_path):
    run = tmp_path / "search"
    assert main(["search", "--dataset", "digits", "--epochs", "1", "--set", "supernet.C=4", "--set", "supernet.N=1",
                 "--set", "search.budget=3", "--set", "eval.monitor_archs=0", "--set", "eval.sample_check=0",
                 "--quiet", "--out", str(run)]) == 0
    out = tmp_path / "train"
    assert main(["train", "--arch", str(run), "--epochs", "1", *TINY_NB201, "--out", str(out)]) == 0
    arch = json.loads((run / "arch.json").read_text())["arch"]
    assert json.loads((out / "summary.json").read_text())["arch"] == arch


@pytest.mark.parametrize("args, fragment", [
    (["train", "--arch", NB201_ARCH], "--space is needed"),
    (["train", "--space", "nb201"], "needs --arch"),
    (["train", "--space", "nb201", "--arch", NB201_ARCH, "--set", "width=3"], "--set width is not a training"),
    (["train", "--space", "nb201", "--arch", NB201_ARCH, "--set", "C=wide"], "C='wide' is not valid"),
    (["train", "--space", "nb201", "--arch", "|bad|"], "not an NB201 arch string"),
    (["train", "--space", "nb201", "--arch", NB201_ARCH, "--set", "drop_path=0.1"], "has no drop-path"),
])
def test_train_user_errors(args, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert not (tmp_path / "runs").exists()  # refused before a run directory was written
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]

"""The `nas` command as a user meets it: run directories, one-line errors, list, arch info, kill and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import searchspaces
from nas import checkpoint
from nas.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--set", "supernet.C=4", "--set", "supernet.N=1", "--set", "search.budget=8", "--set", "train.batch_size=128",
        "--set", "eval.sample_check=0"]


def _nas(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_bad_space_prints_one_line_and_exits_2(tmp_path):
    result = _nas("search", "--space", "nb999", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    accepted = ", ".join(searchspaces.names())  # nb201, darts, then every space registered since
    assert lines == [f"nas: error: unknown search space 'nb999' (space.name); accepted: {accepted}"]
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_a_build_option_out_of_its_range_prints_one_line_and_exits_2(tmp_path):
    """The range comes from the supernet constructor's annotation; torch never sees the value."""
    result = _nas("search", "--space", "mobilenet", "--set", "supernet.dropout=-0.5", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nas: error: supernet.dropout=-0.5 is not valid; accepted: a number from 0.0 to 1.0 (exclusive)"]
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, fragment", [
    (["search", "--strategy", "magic"], "unknown strategy 'magic'"),
    (["search", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["search", "--set", "train.lr=fast"], "train.lr='fast' is not valid"),
    (["search", "--config", "no-such-experiment"], "neither a file nor a preset"),
    (["search", "--epochs", "0"], "train.epochs=0 is not valid"),
    (["search", "--epochs", "two"], "invalid int value"),
    (["arch", "info", "--space", "nb201", "--arch", "|conv~0|"], "not an NB201 arch string"),
    (["arch", "info", "--space", "nb201", "--arch", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
      "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_are_one_line_with_exit_2(args, fragment, capsys):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(args))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("nas")


def test_list_and_arch_info(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("nb201", "uniform", "digits", "cifar10", "imagenet16-120", "evolution", "digits_quick"):
        assert name in out
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert main(["arch", "info", "--space", "nb201", "--arch", arch, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 1_531_546 and info["codes"] == "333333" and info["valid"] is True
    # NAS-Bench-201's published FLOPs of this arch (the space's largest, 220.11969 M), our MACs beside them
    assert info["flops"] == 220_119_690 and info["flops_macs"] > info["flops"] and "flops_tensorwatch" in info
    assert main(["arch", "info", "--space", "nb201", "--arch", arch, "--dataset", "cifar100"]) == 0
    out = capsys.readouterr().out
    assert "1,537,396" in out and "220.125540 M per image, counter benchmark" in out and "\nFLOPs (macs) " in out


def test_search_writes_a_complete_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--space", "nb201", "--strategy", "uniform", "--dataset", "digits", "--epochs", "2",
                 "--seed", "3", "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "next: nas arch info --space nb201 --arch" in err
    for name in ("config.yaml", "metrics.csv", "arch.json", "summary.json", "log.txt", "environment.json",
                 "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seed"] == 3 and config["train"]["epochs"] == 2 and config["supernet"]["C"] == 4
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"lr", "train_loss", "train_acc"} <= set(rows[0])
    arch = json.loads((out / "arch.json").read_text())
    parsed = searchspaces.get("nb201").parse(arch["arch"])
    assert parsed.to_string() == arch["arch"] and arch["bn_mode"] == "batch" and arch["eval_batch_size"] == 512
    assert arch["evaluated"] == 8 and 0 <= arch["score"] <= 100
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["epochs"] == 2 and summary["best_arch"] == arch["arch"]
    env = json.loads((out / "environment.json").read_text())[0]
    assert env["torch"] == torch.__version__ and "git_sha" in env and env["command"][:2] == ["nas", "search"]
    assert "epoch 1/2" in (out / "log.txt").read_text()
    # a finished run resumes to nothing, an occupied --out is refused, --resume takes no other flags
    assert main(["search", "--resume", str(out)]) == 0
    assert main(["search", "--out", str(out), *TINY]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["search", "--resume", str(out), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err


def test_quiet_prints_nothing(tmp_path):
    result = _nas("search", "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(tmp_path / "q"), *TINY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert "epoch 1/1" in (tmp_path / "q" / "log.txt").read_text()


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL a real search process in the middle of an epoch; --resume finishes with the same weights."""
    args = ["--dataset", "digits", "--epochs", "3", "--quiet", "--set", "supernet.C=8", "--set", "supernet.N=2",
            "--set", "train.batch_size=16", "--set", "search.budget=4", "--set", "eval.monitor_archs=0"]
    full = tmp_path / "full"
    assert _nas("search", *args, "--out", str(full)).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nas", "search", *args, "--out", str(killed)], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    last, metrics = killed / "checkpoints" / "last.pt", killed / "metrics.csv"
    deadline = time.time() + 240
    while not metrics.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    with open(metrics, newline="") as fh:
        epoch_s = float(next(csv.DictReader(fh))["epoch_time_s"])
    time.sleep(epoch_s / 3)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = checkpoint.load(last)
    assert state["epoch"] == 1, "the kill should land in epoch 2"
    assert not (killed / "summary.json").exists()

    resumed = _nas("search", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    a = checkpoint.load(full / "checkpoints" / "last.pt")["model"]
    b = checkpoint.load(last)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((killed / "summary.json").read_text())["status"] == "complete"
    arch_full, arch_killed = (json.loads((d / "arch.json").read_text())["arch"] for d in (full, killed))
    assert arch_full == arch_killed

"""Constrained search from the command line (--max-flops / --max-params), the cost task of every space, and the
sampled-FLOPs record and histogram of a run."""

from __future__ import annotations

import csv
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import searchspaces
import strategies
import supernets
from nas import config as cfg
from nas.cli import _cost_limit, main
from nas.components import cost_task
from nas.engine import PathCosts
from nas.evaluate import ArchEvaluator

DIGITS_TASK = dict(num_classes=10, in_channels=1, image_size=8, C=4, N=1)
TINY = ["search", "--dataset", "digits", "--set", "supernet.C=4", "--set", "supernet.N=1", "--set",
        "eval.monitor_archs=0", "--set", "train.batch_size=128", "--set", "eval.sample_check=0", "--quiet"]


@pytest.mark.parametrize("text, value", [
    ("300M", 300_000_000), ("1.5G", 1_500_000_000), ("5e6", 5_000_000), ("250000", 250_000), ("2.5k", 2_500),
    ("1T", 10**12),
])
def test_limits_accept_plain_counts_and_suffixes(text, value):
    assert _cost_limit(text) == value


@pytest.mark.parametrize("text", ["abc", "0", "-5", "1.5", "M", "inf", "3MM", "1e-3"])
def test_bad_limit_is_one_line_with_exit_2(text, capsys):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(["search", "--max-flops", text]))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-flops" in err[0] and f"{text!r} is not a count" in err[0]


def test_search_keeps_only_archs_within_the_limits(tmp_path, monkeypatch):
    """Every arch the post-training search scores, hence the picked one, is within both limits; arch.json
    records them. The limits sit at the 30th percentile of the space, so an ignored limit shows."""
    space = searchspaces.get("nb201")
    rng = np.random.default_rng(0)
    sample = [space.sample(rng) for _ in range(500)]
    max_params = int(np.percentile([space.params(a, **DIGITS_TASK) for a in sample], 30))
    max_flops = int(np.percentile([space.flops(a, **DIGITS_TASK) for a in sample], 30))
    scored = []
    real_call = ArchEvaluator.__call__

    def spy(self, arch):
        scored.append(arch)
        return real_call(self, arch)

    monkeypatch.setattr(ArchEvaluator, "__call__", spy)
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "1", "--set", "search.method=random", "--set", "search.budget=12",
                 "--max-params", str(max_params), "--max-flops", f"{max_flops / 1e3}K", "--out", str(out)]) == 0
    info = json.loads((out / "arch.json").read_text())
    assert info["limits"] == {"max_params": max_params, "max_flops": max_flops, "max_latency": None}
    assert info["params"] <= max_params and info["flops"] <= max_flops
    assert len(set(scored)) == 12
    assert all(space.params(a, **DIGITS_TASK) <= max_params and space.flops(a, **DIGITS_TASK) <= max_flops
               for a in scored)
    config = json.loads(json.dumps(cfg.load_yaml(out / "config.yaml")))
    assert config["search"]["max_params"] == max_params and config["search"]["max_flops"] == max_flops


def test_impossible_limit_stops_before_training_in_one_sentence(tmp_path, capsys):
    smallest = searchspaces.get("nb201").smallest(**DIGITS_TASK)
    floor = searchspaces.get("nb201").flops(smallest, **DIGITS_TASK)
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "1", "--max-flops", "1000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nas: error: search.max_flops=1,000 (--max-flops) excludes every arch")
    assert f"--max-flops >= {floor:,}" in err[0]
    assert not (out / "checkpoints" / "last.pt").exists()  # refused before any training


def test_uniform_run_records_the_flops_of_every_trained_path(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "2", "--seed", "5", "--set", "search.method=none", "--out", str(out)]) == 0
    with open(out / "sampled_flops.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert len(rows) == steps * 1 and [int(r["step"]) for r in rows] == list(range(steps))
    assert {r["epoch"] for r in rows} == {"1", "2"} and {r["path"] for r in rows} == {"0"}
    # the recorded FLOPs are those of the archs uniform drew, in order (its generator replayed)
    space = searchspaces.get("nb201")
    replay = strategies.get("uniform")
    replay.setup(None, space, 5)
    assert [int(r["flops"]) for r in rows] == [space.flops(replay.sample(), **DIGITS_TASK) for _ in rows]
    png = (out / "plots" / "sampled_flops.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10_000


def test_path_costs_decode_hard_samples_and_skip_relaxed_ones():
    space = searchspaces.get("nb201")
    calls = []

    def flops(arch):
        calls.append(arch)
        return space.flops(arch, **DIGITS_TASK)

    record = PathCosts(flops, space.decode)
    arch = space.sample(np.random.default_rng(1))
    weights = torch.zeros(6, 5)
    record.record(0, 0, [supernets.ArchWeights(weights, hard=arch.codes()), supernets.ArchWeights(weights)])
    record.record(0, 1, [arch, arch])
    assert record.values == [space.flops(arch, **DIGITS_TASK)] * 3 and record.paths == [0, 0, 1]
    assert len(calls) == 1  # cached by arch
    no_arch = PathCosts(flops, lambda hard: None)  # e.g. GDAS on DARTS: one op per edge is no genotype
    no_arch.record(0, 0, [supernets.ArchWeights(weights, hard=arch.codes())])
    assert len(no_arch) == 0
    other = PathCosts(flops, space.decode)
    other.load_state_dict(record.state_dict())
    assert (other.epochs, other.steps, other.paths, other.values) == (
        record.epochs, record.steps, record.paths, record.values)


def test_cost_task_carries_the_supernet_options_the_costs_need():
    bundle = SimpleNamespace(num_classes=10, in_channels=3, image_size=32)
    nb201 = cfg.resolve([], {"space.name": "nb201"}, ["supernet.C=12", "supernet.N=3"])
    assert cost_task(nb201, bundle) == dict(num_classes=10, in_channels=3, image_size=32, C=12, N=3)
    darts = cfg.resolve([], {"space.name": "darts"})
    assert cost_task(darts, bundle) == dict(num_classes=10, in_channels=3, image_size=32)
    mobilenet = cfg.resolve([], {"space.name": "mobilenet"}, ["supernet.width_mult=0.75"])
    task = cost_task(mobilenet, bundle)
    space = searchspaces.get("mobilenet")
    assert task["width_mult"] == 0.75 and task["schedule"] == mobilenet["supernet"].get(
        "schedule", supernets.entry("mobilenet").defaults()["schedule"])
    arch = space.largest()
    assert space.flops(arch, **task) == space.flops(arch, num_classes=10, in_channels=3, image_size=32,
                                                    width_mult=0.75, schedule=task["schedule"])
    assert space.flops(arch, **task) != space.flops(arch, num_classes=10, in_channels=3, image_size=32)

"""`nas search --space darts` with every strategy on digits, end to end."""

from __future__ import annotations

import csv
import json

import pytest

import searchspaces
from nas.cli import main

TINY = ["--space", "darts", "--dataset", "digits", "--epochs", "1", "--set", "supernet.C=2", "--set",
        "supernet.layers=3", "--set", "train.batch_size=256", "--set", "search.budget=4", "--set",
        "eval.monitor_archs=0", "--set", "eval.sample_check=0", "--quiet"]


@pytest.mark.parametrize("strategy", ["uniform", "pada", "darts", "gdas", "drnas"])
def test_darts_space_search_ends_with_a_valid_genotype(strategy, tmp_path):
    out = tmp_path / strategy
    assert main(["search", "--strategy", strategy, *TINY, "--out", str(out)]) == 0
    arch = json.loads((out / "arch.json").read_text())
    space = searchspaces.get("darts")
    parsed = space.parse(arch["arch"])
    assert space.is_valid(parsed) and parsed.to_string() == arch["arch"] and arch["arch"].startswith("Genotype(")
    assert arch["params"] == space.params(parsed, in_channels=1, num_classes=10)  # the C=36 evaluation network
    if strategy == "pada":
        with open(out / "metrics.csv", newline="") as fh:
            row = next(csv.DictReader(fh))
        ops = [k for k in row if k.startswith("p") and "sep_conv_3x3" in k]
        assert ops, "PA&DA logs its op distribution, shared by all op decisions of the DARTS space"
    if strategy in ("darts", "gdas", "drnas"):
        report = json.loads((out / "strategy.json").read_text())
        assert len(report["labels"]) == 28 and len(report["alpha_history"]) == 1


def test_relaxed_strategies_search_the_entangled_darts_supernet(tmp_path):
    """TangleNAS on the DARTS space: sep/dil 3x3 are the centre taps of the 5x5 kernels, one superposed op each.
    One strategy end to end (DrNAS: sampled weights through the superposed ops); the relaxation itself is checked
    for every strategy and mode in test_mixed_ops.py and test_differentiable.py."""
    out = tmp_path / "drnas"
    assert main(["search", "--strategy", "drnas", *TINY, "--epochs", "2", "--set", "supernet.mode=entangle",
                 "--out", str(out)]) == 0
    space = searchspaces.get("darts")
    assert space.is_valid(space.parse(json.loads((out / "arch.json").read_text())["arch"]))
    report = json.loads((out / "strategy.json").read_text())
    assert report["alpha_history"][0] != report["alpha_history"][-1]

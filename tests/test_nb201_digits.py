"""The shipped `nb201-digits` benchmark: it loads offline, is internally consistent (every arch carries its class
representative's accuracies, means equal their seeds, the stated noise ceiling is what the columns give), uses the
same macro setting as the NB201 digits supernet preset, and the README's result tables equal what results/
generates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nasbench
import searchspaces
from nas import config as cfg
from nas import report
from searchspaces import cellgraph

ROOT = Path(__file__).resolve().parent.parent
TABLE_DIR = ROOT / "nasbench" / "tables" / "nb201-digits"


@pytest.fixture(scope="module")
def bench() -> nasbench.Benchmark:
    return nasbench.load("nb201-digits")


@pytest.fixture(scope="module")
def representatives(bench) -> list[str]:
    space = searchspaces.get("nb201")
    return [a for a in bench.archs if space.canonical(space.parse(a)).to_string() == a]


def test_it_ships_small_and_loads_offline(bench):
    assert bench.space == "nb201" and bench.datasets == ("digits",)
    files = sorted(p.name for p in TABLE_DIR.iterdir())
    assert files == ["meta.json", "table.csv.gz"]
    assert sum(p.stat().st_size for p in TABLE_DIR.iterdir()) < 3 * 2**20


def test_meta_records_how_it_was_built(bench):
    meta = bench.meta
    assert meta["command"].startswith("nas bench build --space nb201 --dataset digits --unique")
    assert meta["plan"]["unique"] and meta["plan"]["archs_trained"] >= 1000
    assert meta["plan"]["seeds"] == [0, 1] and meta["plan"]["multi_seed_archs"] >= 300
    assert meta["training"]["epochs"] >= 1 and meta["cost"]["seconds_per_training_median"] > 0
    assert meta["environment"]["torch"].startswith("2.")


def test_macro_setting_equals_the_digits_supernet_preset(bench):
    config = cfg.resolve([], {"space.name": "nb201", "data.name": "digits"})
    training = bench.meta["training"]
    assert (config["supernet"]["C"], config["supernet"]["N"]) == (training["C"], training["N"])
    assert bench.meta["macro"] == {"C": training["C"], "N": training["N"]}


def test_every_arch_carries_its_representatives_accuracies(bench, representatives):
    space = searchspaces.get("nb201")
    assert len(representatives) == bench.meta["plan"]["archs_trained"]
    table = {m: dict(zip(bench.archs, bench.values("digits", m))) for m in ("test_acc", "valid_acc", "test_loss")}
    for arch in bench.archs:
        rep = space.canonical(space.parse(arch)).to_string()
        for values in table.values():
            assert values[arch] == values[rep]
    # every member of every trained class is a row, and nothing else
    members = {m for rep in representatives for m in cellgraph.class_members(space.parse(rep).codes())}
    assert {space.decode(m).to_string() for m in members} == set(bench.archs)


def test_columns_are_consistent(bench, representatives):
    s0, s1, mean = (bench.query_many(representatives, "digits", m) for m in ("test_acc_s0", "test_acc_s1", "test_acc"))
    both = ~np.isnan(s1)
    assert both.sum() == bench.meta["plan"]["multi_seed_archs"] and not np.isnan(s0).any()
    np.testing.assert_allclose(mean[both], (s0[both] + s1[both]) / 2)
    np.testing.assert_array_equal(mean[~both], s0[~both])
    assert np.all((mean >= 0) & (mean <= 100))
    space = searchspaces.get("nb201")
    task = dict(num_classes=10, in_channels=1, image_size=8, C=bench.meta["training"]["C"],
                N=bench.meta["training"]["N"])
    params = bench.query_many(bench.archs[:200], "digits", "params")
    assert params.tolist() == [space.params(space.parse(a), **task) for a in bench.archs[:200]]


def test_the_stated_noise_ceiling_is_what_the_columns_give(bench, representatives):
    s0 = bench.query_many(representatives, "digits", "test_acc_s0")
    s1 = bench.query_many(representatives, "digits", "test_acc_s1")
    noise = bench.meta["noise_ceiling"]
    assert noise["archs"] == int((~np.isnan(s1)).sum())
    assert noise["kendall_tau"] == pytest.approx(nasbench.kendall_tau(s0, s1), abs=1e-4)


def test_readme_tables_match_results():
    assert report.main(["--check"]) == 0, "README.md differs from results/: run python -m nas.report"

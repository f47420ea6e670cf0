"""`nas bench build --unique --seeds`: one network per class, every member mapped to it, several seeds for a prefix
of the plan (the noise ceiling), builds that grow, and `nas bench pack` to the compressed shipped form."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

import nasbench
import searchspaces
from nas import benchbuild, standalone
from nas.cli import main
from searchspaces import cellgraph

TINY = ["--epochs", "1", "--set", "C=4", "--set", "N=1", "--set", "batch_size=128", "--quiet"]


@pytest.fixture(scope="module")
def unique_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "unique"
    args = ["bench", "build", "--archs", "5", "--unique", "--seeds", "0,1", "--multi-seed-archs", "3",
            "--out", str(out)]
    assert main([*args, *TINY]) == 0
    return out


def test_plan_order_is_prefix_stable_and_unique_plans_hold_representatives():
    assert benchbuild.plan_order("nb201", 0, count=10)[:5] == benchbuild.plan_order("nb201", 0, count=5)
    plan = benchbuild.plan_order("nb201", 3, unique=True, count=200)
    space = searchspaces.get("nb201")
    assert len(set(plan)) == 200
    assert all(space.canonical(space.parse(a)).to_string() == a for a in plan)
    assert len(benchbuild.plan_order("nb201", 0, unique=True)) == cellgraph.num_classes()


def test_unique_build_gives_every_member_its_representatives_accuracies(unique_build):
    space = searchspaces.get("nb201")
    plan = json.loads((unique_build / benchbuild.BUILD_FILE).read_text())["archs"]
    bench = nasbench.load(str(unique_build))
    expected = {space.decode(m).to_string() for rep in plan for m in cellgraph.class_members(space.parse(rep).codes())}
    assert set(bench.archs) == expected and len(bench) >= len(plan)
    test = dict(zip(bench.archs, bench.values("digits", "test_acc")))
    for arch in bench.archs:
        assert test[arch] == test[space.canonical(space.parse(arch)).to_string()]
    # params are each member's own network (a dead conv still has weights), not the representative's
    params = bench.query_many(bench.archs, "digits", "params")
    assert params.tolist() == [space.params(space.parse(a), num_classes=10, in_channels=1, C=4, N=1)
                               for a in bench.archs]


def test_first_archs_get_every_seed_and_the_mean(unique_build):
    plan = json.loads((unique_build / benchbuild.BUILD_FILE).read_text())["archs"]
    bench = nasbench.load(str(unique_build))
    s0, s1, mean = (bench.query_many(plan, "digits", m) for m in ("test_acc_s0", "test_acc_s1", "test_acc"))
    assert not np.isnan(s1[:3]).any() and np.isnan(s1[3:]).all()
    np.testing.assert_allclose(mean[:3], (s0[:3] + s1[:3]) / 2)
    np.testing.assert_array_equal(mean[3:], s0[3:])
    meta = bench.meta
    assert meta["noise_ceiling"]["archs"] == 3 and meta["noise_ceiling"]["seeds"] == [0, 1]
    assert meta["plan"] == {"unique": True, "archs_trained": 5, "rows": len(bench), "space_size": 15625,
                            "seeds": [0, 1], "multi_seed_archs": 3, "order_seed": 0}
    assert meta["command"].startswith("nas bench build --archs 5 --unique")
    assert meta["cost"]["trainings"] == 8 and meta["environment"]["torch"]
    assert len(list((unique_build / "results").glob("*.json"))) == 8


def test_a_build_grows_without_retraining(unique_build, tmp_path, monkeypatch):
    out = tmp_path / "grown"
    common = ["bench", "build", "--unique", "--seeds", "0,1", "--out", str(out), *TINY]
    real, calls = standalone.train_arch, []
    monkeypatch.setattr(benchbuild, "train_arch", lambda a, s: (calls.append((a, s.seed)), real(a, s))[1])
    assert main([*common, "--archs", "2", "--multi-seed-archs", "2"]) == 0
    assert len(calls) == 4
    calls.clear()
    assert main([*common, "--archs", "4", "--multi-seed-archs", "3"]) == 0
    plan = json.loads((out / benchbuild.BUILD_FILE).read_text())["archs"]
    assert sorted(calls) == sorted([(plan[2], 0), (plan[2], 1), (plan[3], 0)])
    assert main([*common[:-len(TINY)], "--archs", "4", "--epochs", "2", *TINY[2:]]) == 2  # other settings: refused
    assert main(["bench", "build", "--unique", "--seeds", "0,2", "--archs", "4", "--out", str(out), *TINY]) == 2


def test_bad_seed_flags_are_refused(tmp_path, capsys):
    assert main(["bench", "build", "--seeds", "0,x", "--out", str(tmp_path / "a"), *TINY]) == 2
    assert "--seeds takes distinct whole numbers" in capsys.readouterr().err
    assert main(["bench", "build", "--multi-seed-archs", "3", "--out", str(tmp_path / "b"), *TINY]) == 2
    assert main(["bench", "build", "--space", "nasbench-macro", "--unique", "--out", str(tmp_path / "c"), *TINY]) == 2
    assert "--unique needs a space" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_pack_writes_a_reproducible_compressed_table(unique_build, tmp_path):
    first, second = tmp_path / "one" / "digits-table", tmp_path / "two" / "digits-table"
    assert main(["bench", "pack", str(unique_build), "--out", str(first)]) == 0
    assert main(["bench", "pack", str(unique_build), "--out", str(second)]) == 0
    assert not (first / "table.csv").exists()
    assert (first / "table.csv.gz").read_bytes() == (second / "table.csv.gz").read_bytes()
    packed, built = nasbench.load(str(first)), nasbench.load(str(unique_build))
    assert packed.name == "digits-table" and packed.archs == built.archs
    np.testing.assert_array_equal(packed.values("digits", "test_acc_s0"), built.values("digits", "test_acc_s0"))
    assert packed.meta["noise_ceiling"] == built.meta["noise_ceiling"]
    text = gzip.decompress((first / "table.csv.gz").read_bytes()).decode()
    assert text.splitlines()[0].startswith("arch,digits:test_acc")
    assert main(["bench", "pack", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2

"""Benchmark tables: loaders checked against the shared source files (read independently here), the compact
format (round trip, atomic writes, malformed files), locating the data, and the NATS-Bench converter."""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_data_dir

import nasbench
import searchspaces
from nasbench import BenchmarkError

NB201_FILE = "nb201/nb201_acc.csv"
MACRO_FILE = "nasbench_macro/nas-bench-macro_cifar10.json"
NB301_FILE = "nb301/nb301_500_subset.json"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def data_file(relative: str) -> Path:
    """A shared source file, or skip the test when the shared data is not beside the project."""
    base = shared_data_dir()
    path = base / relative if base else None
    if path is None or not path.is_file():
        pytest.skip(f"shared data file {relative} not found: set SUPERNAS_SHARED_DATA or put shared/data beside "
                    f"the project")
    return path


@pytest.fixture(scope="module")
def nb201_csv() -> list[dict[str, str]]:
    with open(data_file(NB201_FILE), newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def nb201() -> nasbench.Benchmark:
    return nasbench.load("nb201", path=data_file(NB201_FILE).parent)


def one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --- registry and locating the data ---------------------------------------------------------------------
def test_registered_names():
    assert nasbench.names() == ("nb201", "nasbench-macro", "nb301-subset", "nb201-digits")


def test_nasbench_imports_no_torch_and_no_higher_package():
    code = ("import sys, nasbench; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'nas', 'supernets', 'strategies')]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_env_var_wins_over_the_default_data_dir(tmp_path, monkeypatch):
    (tmp_path / "nasbench_macro").mkdir()
    entry = {"test_acc": [90.0, 91.0, 92.0], "mean_acc": 91.0, "std": 0.8165, "params": 1000, "flops": 2000}
    (tmp_path / MACRO_FILE).write_text(json.dumps({"01201201": entry}))
    monkeypatch.setenv("SUPERNAS_SHARED_DATA", str(tmp_path))
    bench = nasbench.load("nasbench-macro")
    assert len(bench) == 1 and bench.query("01201201", "cifar10", "test_acc") == 91.0


def test_missing_data_says_where_it_looked_and_how_to_point(tmp_path):
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.load("nb201", path=tmp_path)
    one_line_error(excinfo, NB201_FILE, str(tmp_path), "path=", "SUPERNAS_SHARED_DATA")


def test_unknown_benchmark_name(tmp_path):
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.load("nb999")
    one_line_error(excinfo, "'nb999'", "nb201", "nasbench-macro", "nb301-subset", "table.csv")


def test_path_may_be_the_source_file_itself():
    bench = nasbench.load("nasbench-macro", path=data_file(MACRO_FILE))
    assert len(bench) == 6561


# --- NB201 against the source table -----------------------------------------------------------------------
def test_nb201_size_and_published_optima(nb201):
    assert len(nb201) == 15625
    assert nb201.space == "nb201"
    assert nb201.datasets == ("cifar10", "cifar100", "imagenet16-120")
    # NATS-Bench tss hp=200 optima as published (and stated in the shared data README).
    assert round(nb201.best("cifar10", "test_acc")[1], 2) == 94.37
    assert round(nb201.best("cifar100", "test_acc")[1], 2) == 73.51
    assert round(nb201.best("imagenet16-120")[1], 2) == 47.31


def test_nb201_index_mapping_matches_the_source(nb201, nb201_csv):
    assert nb201.archs == [row["arch_str"] for row in nb201_csv]
    for row in nb201_csv:
        i = int(row["index"])
        assert nb201.index_of(row["arch_str"]) == i
        assert nb201.arch_at(i) == row["arch_str"]


def test_nb201_values_come_from_the_right_source_columns(nb201, nb201_csv):
    assert nb201.query(nb201_csv[0]["arch_str"], "cifar10", "test_acc") == 85.8633
    mapping = {
        ("cifar10", "test_acc"): "cifar10_test",
        ("cifar10", "valid_acc"): "cifar10_valid_g",
        ("cifar10", "test_acc_v1"): "cifar10_test_g",
        ("cifar10", "valid_acc_naslib_1seed"): "cifar10_valid_naslib_1seed",
        ("cifar100", "test_acc"): "cifar100_test",
        ("cifar100", "valid_acc"): "cifar100_valid_g",
        ("cifar100", "test_acc_v1"): "cifar100_test_g",
        ("imagenet16-120", "test_acc"): "ImageNet16-120_test",
        ("imagenet16-120", "valid_acc"): "ImageNet16-120_valid_g",
        ("imagenet16-120", "test_acc_v1"): "ImageNet16-120_test_g",
    }
    for (dataset, metric), column in mapping.items():
        expected = np.array([float(row[column]) for row in nb201_csv])
        np.testing.assert_array_equal(nb201.values(dataset, metric), expected, err_msg=f"{dataset}:{metric}")


def test_nb201_params_equal_the_benchmark_counts(nb201, nb201_csv):
    assert nb201.query(nb201_csv[0]["arch_str"], "cifar10", "params") == 129306
    assert nb201.query(ALL_CONV3, "cifar10", "params") == 1531546
    # Only the classifier differs between datasets: 64 * (classes - 10) weights + (classes - 10) biases.
    assert nb201.query(ALL_CONV3, "cifar100", "params") - 1531546 == 64 * 90 + 90
    assert "published MFLOPs x 1e6" in nb201.meta["metric_notes"]["flops"]
    assert "NAS-Bench-201's convention" in nb201.meta["units"]["flops"]


def test_nb201_flops_equal_the_published_figures(nb201, nb201_csv):
    # Index 0 as NATS-Bench's get_cost_info returns it (D-X-Y/NATS-Bench issue #24), in MFLOPs.
    for dataset, mflops in (("cifar10", 15.64737), ("cifar100", 15.65322), ("imagenet16-120", 3.91948)):
        assert nb201.query(nb201_csv[0]["arch_str"], dataset, "flops") == round(mflops * 1e6)


def test_nb201_query_many_equals_a_loop_of_query(nb201):
    rng = np.random.default_rng(0)
    archs = [nb201.arch_at(int(i)) for i in rng.integers(0, len(nb201), 300)]
    for dataset in nb201.datasets:
        for metric in nb201.metrics(dataset):
            looped = np.array([nb201.query(a, dataset, metric) for a in archs])
            np.testing.assert_array_equal(nb201.query_many(archs, dataset, metric), looped)


def test_nb201_accepts_arch_objects_and_other_spellings(nb201):
    space = searchspaces.get("nb201")
    arch = space.parse(ALL_CONV3)
    assert nb201.query(arch, "cifar10", "test_acc") == nb201.query(ALL_CONV3, "cifar10", "test_acc")
    assert arch in nb201 and ALL_CONV3 in nb201 and "|bogus~0|" not in nb201
    assert nb201.query(" " + ALL_CONV3 + " ", "CIFAR10", "test_acc") == nb201.query(ALL_CONV3, "cifar10", "test_acc")
    many = nb201.query_many([arch, ALL_CONV3], "cifar10", "test_acc")
    assert many[0] == many[1]


def test_nb201_unknown_arch_dataset_metric_are_one_line_errors(nb201):
    with pytest.raises(BenchmarkError) as excinfo:
        nb201.query(ALL_CONV3, "mnist", "test_acc")
    one_line_error(excinfo, "'mnist'", "cifar10, cifar100, imagenet16-120")
    with pytest.raises(BenchmarkError) as excinfo:
        nb201.query(ALL_CONV3, "cifar10", "top5")
    one_line_error(excinfo, "'top5'", "test_acc", "valid_acc")
    with pytest.raises(BenchmarkError) as excinfo:
        nb201.query("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "cifar10", "test_acc")
    one_line_error(excinfo, "conv", "accepted")
    with pytest.raises(BenchmarkError) as excinfo:
        nb201.query_many([ALL_CONV3, "not an arch"], "cifar10", "test_acc")
    one_line_error(excinfo, "not an arch")
    with pytest.raises(BenchmarkError) as excinfo:
        nb201.arch_at(15625)
    one_line_error(excinfo, "15625", "0..15624")


# --- NAS-Bench-Macro and the NB301 subset, against their JSON ---------------------------------------------
def test_macro_against_the_source_json():
    source = json.loads(data_file(MACRO_FILE).read_text())
    bench = nasbench.load("nasbench-macro", path=data_file(MACRO_FILE).parent)
    assert len(bench) == 6561 and bench.space == "nasbench-macro" and bench.datasets == ("cifar10",)
    assert bench.archs == list(source)
    for code in ("02012100", "11111221", "22222222", "00000000"):
        entry = source[code]
        assert bench.query(code, "cifar10", "test_acc") == entry["mean_acc"]
        assert bench.query(code, "cifar10", "test_acc_std") == entry["std"]
        assert bench.query(code, "cifar10", "params") == entry["params"]
        assert bench.query(code, "cifar10", "flops") == entry["flops"]
    assert bench.best("cifar10")[1] == max(e["mean_acc"] for e in source.values())
    with pytest.raises(BenchmarkError) as excinfo:
        bench.query("0120", "cifar10", "test_acc")
    one_line_error(excinfo, "'0120'", "8 characters")


def test_nb301_against_the_source_json():
    source = json.loads(data_file(NB301_FILE).read_text())["nasbench301"]["cifar10"]
    bench = nasbench.load("nb301-subset", path=data_file(NB301_FILE).parent)
    assert len(bench) == 500 and bench.space == "darts"
    assert set(bench.metrics("cifar10")) == {"valid_acc", "params", "flops", "snip", "jacov", "grad_norm", "plain",
                                              "epe_nas", "fisher", "grasp", "l2_norm", "synflow"}
    darts = searchspaces.get("darts")
    # Rows are keyed by the DARTS space's Genotype string; the source keys stay in meta.
    assert bench.archs == [darts.from_nb301(key).to_string() for key in source]
    assert bench.archs[0].startswith("Genotype(normal=[(")
    assert list(bench.meta["nb301_keys"].values()) == list(source)
    for key in list(source)[::97]:
        entry = source[key]
        arch = darts.from_nb301(key)
        assert bench.meta["nb301_keys"][arch.to_string()] == key
        assert bench.query(arch, "cifar10", "valid_acc") == entry["val_accuracy"]
        assert bench.query(arch.to_string(), "cifar10", "params") == round(entry["params"] * 1e6)
        assert bench.query(key, "cifar10", "valid_acc") == entry["val_accuracy"]
        assert bench.query(key, "cifar10", "params") == round(entry["params"] * 1e6)
        assert bench.query(key, "cifar10", "flops") == round(entry["flops"] * 1e6)
        assert bench.query(key, "cifar10", "synflow") == entry["synflow"]
        # Another spelling of the same genotype (no spaces, lists for pairs) finds the same row.
        respelled = str([[list(p) for p in cell] for cell in ast.literal_eval(key)]).replace(" ", "")
        assert bench.index_of(respelled) == bench.index_of(key)


# --- the compact format -------------------------------------------------------------------------------------
def digits_table(tmp_path: Path, **meta) -> tuple[Path, list[str], dict]:
    space = searchspaces.get("nb201")
    archs = [space.decode(codes).to_string() for codes in ([3] * 6, [1] * 6, [0, 1, 2, 3, 4, 0])]
    columns = {
        ("digits", "test_acc"): [97.5, 91.25, float("nan")],
        ("digits", "valid_acc"): [96.0, 90.0, 50.125],
        ("digits", "params"): [space.params(space.parse(a)) for a in archs],
        ("digits", "flops"): [1.0e6, 2.0e6, 3.0e6],
    }
    path = nasbench.write_table(tmp_path / "digits", "nb201-digits", "nb201", archs, columns,
                                {"epochs": 3, "seeds": [0, 1], "description": "toy", **meta})
    return path, archs, columns


def test_write_table_and_load_round_trip(tmp_path):
    path, archs, columns = digits_table(tmp_path)
    assert path == tmp_path / "digits" and sorted(os.listdir(path)) == ["meta.json", "table.csv"]
    with open(path / "table.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["arch", "digits:test_acc", "digits:valid_acc", "digits:params", "digits:flops"]
    assert rows[3][1] == "" and rows[1][1] == "97.5"  # NaN is an empty cell, numbers plain floats
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == 1 and meta["space"] == "nb201" and meta["datasets"] == ["digits"]
    assert meta["epochs"] == 3 and meta["seeds"] == [0, 1] and meta["units"]["params"] == "parameter count"

    bench = nasbench.load(path)
    assert bench.name == "nb201-digits" and bench.archs == archs and bench.meta["seeds"] == [0, 1]
    for key, values in columns.items():
        np.testing.assert_array_equal(bench.values(*key), np.array(values, dtype=float))
    assert math.isnan(bench.query(archs[2], "digits", "test_acc"))
    assert bench.best("digits") == (archs[0], 97.5)
    assert nasbench.load("nb201", path=path) is bench  # a compact table given as path= stands in for the source


def test_save_then_load_is_identical_for_a_loaded_benchmark(tmp_path):
    bench = nasbench.load("nb301-subset", path=data_file(NB301_FILE).parent)
    again = nasbench.load(bench.save(tmp_path / "nb301"))
    assert again.archs == bench.archs and again.space == "darts" and again.meta["ops"] == bench.meta["ops"]
    for metric in bench.metrics("cifar10"):
        np.testing.assert_array_equal(again.values("cifar10", metric), bench.values("cifar10", metric))


def test_query_many_gives_nan_for_missing_values_and_optionally_for_unknown_archs(tmp_path):
    _, archs, _ = digits_table(tmp_path)
    bench = nasbench.load(tmp_path / "digits")
    got = bench.query_many([archs[2], archs[0]], "digits", "test_acc")
    assert math.isnan(got[0]) and got[1] == 97.5
    got = bench.query_many(iter([archs[0], ALL_CONV3.replace("3x3~2", "1x1~2")]), "digits", "valid_acc", missing="nan")
    assert got[0] == 96.0 and math.isnan(got[1])


def test_write_table_canonicalises_and_rejects_bad_input(tmp_path):
    space = searchspaces.get("nb201")
    arch = space.decode([3] * 6)
    path = nasbench.write_table(tmp_path / "t", "t", "nb201", [arch], {("digits", "test_acc"): [1.0]})
    assert nasbench.load(path).archs == [ALL_CONV3]
    bad_cases = [
        ({("digits", "test_acc"): [1.0, 2.0]}, "one per arch"),
        ({("digits:x", "test_acc"): [1.0]}, "invalid"),
        ({("digits", "test_acc"): ["high"]}, "not numeric"),
    ]
    for columns, fragment in bad_cases:
        with pytest.raises(BenchmarkError) as excinfo:
            nasbench.write_table(tmp_path / "bad", "t", "nb201", [ALL_CONV3], columns)
        one_line_error(excinfo, fragment)
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.write_table(tmp_path / "bad", "t", "nb201", [ALL_CONV3, arch], {("d", "m"): [1.0, 2.0]})
    one_line_error(excinfo, "more than once")
    assert not (tmp_path / "bad").exists()


def test_a_failing_write_leaves_no_partial_directory_and_keeps_the_old_table(tmp_path, monkeypatch):
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # table.csv is written; fail while writing meta.json
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    columns = {("digits", "test_acc"): [1.0]}
    with pytest.raises(OSError, match="disk full"):
        nasbench.write_table(tmp_path / "new", "t", "nb201", [ALL_CONV3], columns)
    assert os.listdir(tmp_path) == []

    monkeypatch.setattr(os, "fsync", real_fsync)
    nasbench.write_table(tmp_path / "new", "t", "nb201", [ALL_CONV3], columns)
    calls.clear()
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        nasbench.write_table(tmp_path / "new", "t", "nb201", [ALL_CONV3], {("digits", "test_acc"): [2.0]})
    assert os.listdir(tmp_path) == ["new"] and sorted(os.listdir(tmp_path / "new")) == ["meta.json", "table.csv"]
    assert nasbench.read_table(tmp_path / "new").query(ALL_CONV3, "digits", "test_acc") == 1.0


def test_saving_into_an_existing_directory_replaces_the_table_and_keeps_other_files(tmp_path):
    (tmp_path / "digits" / "results").mkdir(parents=True)  # e.g. the per-arch results of `nas bench build`
    (tmp_path / "digits" / "results" / "a.json").write_text("{}")
    digits_table(tmp_path)
    nasbench.write_table(tmp_path / "digits", "t", "nb201", [ALL_CONV3], {("digits", "test_acc"): [5.0]})
    bench = nasbench.load(tmp_path / "digits")
    assert len(bench) == 1 and bench.query(ALL_CONV3, "digits", "test_acc") == 5.0  # the cache sees the rewrite
    assert sorted(os.listdir(tmp_path / "digits")) == ["meta.json", "results", "table.csv"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.write_table(tmp_path / "file", "t", "nb201", [ALL_CONV3], {("digits", "test_acc"): [5.0]})
    one_line_error(excinfo, "not a directory")


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: (d / "table.csv").write_text((d / "table.csv").read_text().replace("97.5", "9x7")), "'9x7'"),
    (lambda d: (d / "table.csv").write_text((d / "table.csv").read_text().replace(",91.25", "")), "cells"),
    (lambda d: (d / "table.csv").write_text((d / "table.csv").read_text().replace("digits:flops", "flops")),
     "dataset:metric"),
    (lambda d: (d / "table.csv").write_text((d / "table.csv").read_text().replace("digits:flops", "digits:macs")),
     "do not match"),
    (lambda d: (d / "table.csv").unlink(), "table.csv is missing"),
    (lambda d: (d / "meta.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "meta.json").write_text(json.dumps({**json.loads((d / "meta.json").read_text()), "format": 2})),
     "format 2"),
    (lambda d: (d / "meta.json").write_text("[]"), "JSON object"),
])
def test_malformed_tables_raise_benchmark_error(tmp_path, damage, fragment):
    path, _, _ = digits_table(tmp_path)
    damage(path)
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.load(path)
    one_line_error(excinfo, fragment)


def test_loaded_tables_are_cached_and_immutable(nb201):
    assert nasbench.load("nb201", path=data_file(NB201_FILE).parent) is nb201
    with pytest.raises(ValueError):
        nb201.values("cifar10", "test_acc")[0] = 100.0
    archs = nb201.archs
    archs[0] = "changed"
    assert nb201.arch_at(0) != "changed"


# --- NATS-Bench converter -----------------------------------------------------------------------------------
class FakeNatsAPI:
    """Stands in for `nats_bench.create(...)`: two archs with known accuracies per NATS dataset name."""

    meta_archs = [ALL_CONV3, "|none~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"]

    def __len__(self):
        return len(self.meta_archs)

    def get_more_info(self, index, dataset, hp="12", is_random=True):
        assert is_random is False and hp == "200"
        base = {"cifar10": 90.0, "cifar10-valid": 80.0, "cifar100": 70.0, "ImageNet16-120": 40.0}[dataset]
        info = {"test-accuracy": base + index}
        if dataset != "cifar10":
            info["valid-accuracy"] = base - 1 + index
        return info


def test_convert_nats_with_a_stand_in_api(tmp_path, monkeypatch):
    opened = []

    def create(path, space, fast_mode=False, verbose=True):
        opened.append((path, space, fast_mode))
        return FakeNatsAPI()

    monkeypatch.setitem(sys.modules, "nats_bench", types.SimpleNamespace(create=create))
    (tmp_path / "NATS-tss-v1_0-3ffb9-simple").mkdir()
    out = nasbench.convert_nats(tmp_path / "NATS-tss-v1_0-3ffb9-simple", tmp_path / "nats")
    assert opened == [(str(tmp_path / "NATS-tss-v1_0-3ffb9-simple"), "tss", True)]
    bench = nasbench.load(out)
    assert bench.space == "nb201" and bench.archs == FakeNatsAPI.meta_archs
    assert bench.query(ALL_CONV3, "cifar10", "test_acc") == 90.0
    assert bench.query(ALL_CONV3, "cifar10", "valid_acc") == 79.0  # from cifar10-valid, not cifar10
    assert bench.query_many(bench.archs, "cifar100", "valid_acc").tolist() == [69.0, 70.0]
    assert bench.query(FakeNatsAPI.meta_archs[1], "imagenet16-120", "test_acc") == 41.0
    assert bench.query(ALL_CONV3, "cifar10", "params") == 1531546


def test_convert_nats_without_the_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # makes `import nats_bench` raise ImportError
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.convert_nats(tmp_path, tmp_path / "out")
    one_line_error(excinfo, "pip install nats_bench")
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.convert_nats(tmp_path, tmp_path / "out", hp="50")
    one_line_error(excinfo, "'50'", "12, 200")


def test_convert_nats_with_the_real_package_reports_a_bad_path(tmp_path):
    pytest.importorskip("nats_bench")
    with pytest.raises(BenchmarkError) as excinfo:
        nasbench.convert_nats(tmp_path / "missing", tmp_path / "out")
    one_line_error(excinfo, "does not exist")

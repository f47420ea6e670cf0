"""pandas views for notebooks: `Benchmark.to_pandas`, `query_many(as_frame=True)` and `nas.rank.read_ranking`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import nasbench
import searchspaces
from nas import rank
from nas.errors import UserError

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def bench() -> nasbench.Benchmark:
    return nasbench.load("nb201-digits")


def test_to_pandas_holds_every_cell_of_the_table(bench):
    frame = bench.to_pandas()
    assert frame.shape == (len(bench), sum(len(bench.metrics(d)) for d in bench.datasets))
    assert list(frame.index) == bench.archs and frame.index.name == "arch"
    assert frame.columns.names == ["dataset", "metric"]
    for metric in ("test_acc", "params", "flops"):
        np.testing.assert_array_equal(frame[("digits", metric)].to_numpy(), bench.values("digits", metric))
    assert frame["digits"].loc[bench.archs[5], "test_acc"] == bench.query(bench.archs[5], "digits", "test_acc")


def test_to_pandas_is_a_copy(bench):
    frame = bench.to_pandas()
    frame.iloc[0, 0] = -1.0
    assert bench.values(*frame.columns[0])[0] != -1.0


def test_query_many_as_frame_matches_the_array_and_keys_canonical_strings(bench):
    archs = bench.archs[:7]
    series = bench.query_many(archs, "DIGITS", "test_acc", as_frame=True)
    assert isinstance(series, pd.Series) and series.name == "digits:test_acc"
    assert list(series.index) == archs
    np.testing.assert_array_equal(series.to_numpy(), bench.query_many(archs, "digits", "test_acc"))


def test_query_many_as_frame_keeps_missing_archs_as_nan(bench):
    space_archs = set(bench.archs)
    space = searchspaces.get("nb201")
    absent = next(a.to_string() for a in space.enumerate() if a.to_string() not in space_archs)
    series = bench.query_many([bench.archs[0], absent], "digits", "test_acc", missing="nan", as_frame=True)
    assert list(series.index) == [bench.archs[0], absent]
    assert np.isnan(series.iloc[1]) and not np.isnan(series.iloc[0])
    with pytest.raises(nasbench.BenchmarkError):
        bench.query_many([absent], "digits", "test_acc", as_frame=True)


def test_read_ranking_gives_the_csv_and_the_metrics(tmp_path):
    archs = [ARCH, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]
    rank._write_csv(tmp_path / "ranking.csv", archs, np.array([0.75, 0.1]), np.array([91.5, np.nan]))
    (tmp_path / "ranking.json").write_text(json.dumps({"benchmark": "nb201", "metrics": {"n": 1}}))
    for where in (tmp_path, tmp_path / "ranking.csv"):
        frame = rank.read_ranking(where)
        assert list(frame.index) == archs
        assert frame.loc[ARCH, "supernet_score"] == 0.75 and frame.loc[ARCH, "true_acc"] == 91.5
        assert np.isnan(frame.iloc[1]["true_acc"])
        assert frame.attrs["benchmark"] == "nb201"


def test_read_ranking_keeps_few_shot_owners_as_text(tmp_path):
    rank._write_csv(tmp_path / "ranking.csv", [ARCH], np.array([0.5]), np.array([90.0]), owners=["0"])
    frame = rank.read_ranking(tmp_path)
    assert frame.loc[ARCH, "sub_supernet"] == "0" and frame.attrs == {}


def test_read_ranking_refuses_a_directory_without_a_ranking(tmp_path):
    with pytest.raises(UserError, match="ranking.csv does not exist"):
        rank.read_ranking(tmp_path)

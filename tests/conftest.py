"""Shared fixtures: where the ground-truth tables are, and small helpers."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

# Small CPU models train faster on one thread, and OpenMP threads spinning against another busy process can
# slow a step down a hundredfold; subprocesses started by the tests inherit the same setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """`$SUPERNAS_SHARED_DATA`, else `../shared/data` beside the project root (as in CI)."""
    env = os.environ.get("SUPERNAS_SHARED_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture()
def fresh_data_cache():
    """Tests that load data from files they write must not see another test's cached arrays."""
    from nas import data

    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture()
def interrupt_after(monkeypatch):
    """`interrupt_after(n)` makes runs stop with KeyboardInterrupt (as Ctrl-C would) right after the metrics of
    epoch n are written; `interrupt_after.disarm()` restores normal runs, e.g. before `--resume`."""
    from nas import rundir

    real = rundir.write_metrics

    def arm(epochs: int) -> None:
        def write(path, rows):
            real(path, rows)
            if len(rows) >= epochs:
                raise KeyboardInterrupt

        monkeypatch.setattr(rundir, "write_metrics", write)

    arm.disarm = lambda: monkeypatch.setattr(rundir, "write_metrics", real)
    return arm


@pytest.fixture()
def interrupted_and_resumed(tmp_path, interrupt_after):
    """`interrupted_and_resumed(args)` runs `nas <args>` (a search of 2 or more epochs) once through and once
    interrupted after epoch 1 and resumed (`--resume`); returns the last checkpoints of both, uninterrupted first, for
    a test to compare bit for bit."""
    from nas import checkpoint
    from nas.cli import main

    def run(args: list[str]) -> tuple[dict, dict]:
        full, cut = tmp_path / "full", tmp_path / "cut"
        assert main([*args, "--out", str(full)]) == 0
        interrupt_after(1)
        assert main([*args, "--out", str(cut)]) == 130
        interrupt_after.disarm()
        assert main(["search", "--resume", str(cut), "--quiet"]) == 0
        return checkpoint.load(full / "checkpoints" / "last.pt"), checkpoint.load(cut / "checkpoints" / "last.pt")

    return run


@pytest.fixture()
def item_calls(monkeypatch) -> dict[str, int]:
    """Counts `Tensor.item()` calls (host syncs) from here on: `item_calls["n"]`."""
    calls = {"n": 0}
    real_item = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    return calls


@pytest.fixture(scope="session")
def nb201_rows() -> list[dict[str, str]]:
    """All rows of the shared NB201 table (skips when the shared data is not beside the project)."""
    base = shared_data_dir()
    path = base / "nb201" / "nb201_acc.csv" if base else None
    if path is None or not path.is_file():
        pytest.skip("shared data not found: set SUPERNAS_SHARED_DATA or put shared/data beside the project")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))

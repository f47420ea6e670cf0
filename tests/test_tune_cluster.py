"""`nas tune --address` on a simulated 2-node Ray cluster on this machine: trials that ask for a custom resource
each node has once run on both nodes.

Kept apart from test_tune.py, whose module-wide local Ray would otherwise be the Ray this driver talks to.
"""

from __future__ import annotations

import csv
import json

import pytest
from test_tune import RAY_ENV, write_sweep

from nas.cli import main

# One local Ray cluster at a time: under pytest-xdist these tests share one worker.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture()
def two_node_cluster(monkeypatch):
    """A head and a worker node, 1 CPU and one `nas_slot` each; shut down by this fixture."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    for key, value in RAY_ENV.items():  # every node process inherits the same auth mode and thread pins
        monkeypatch.setenv(key, value)
    node = {"num_cpus": 1, "resources": {"nas_slot": 1}, "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.mark.slow
def test_trials_asking_for_a_per_node_resource_run_on_both_nodes(two_node_cluster, tmp_path, monkeypatch, capsys):
    node_ids = {n.node_id for n in two_node_cluster.list_all_nodes()}
    assert len(node_ids) == 2
    # storage given as a URI, as shared storage is on a real cluster (file:// is pyarrow's local filesystem)
    storage = tmp_path / "store"
    sweep = write_sweep(tmp_path / "cluster.yaml", tmp_path, name="cluster", epochs=3, params={"seed": [0, 1]},
                        resources={"cpus": 1, "custom": {"nas_slot": 1}})
    text = sweep.read_text().replace(f"storage_path: {tmp_path}", f"storage_path: file://{storage}")
    sweep.write_text(text)
    monkeypatch.chdir(tmp_path)  # the driver's local copy of the results goes to runs/tune/<name>
    assert main(["tune", str(sweep), "--address", two_node_cluster.address]) == 0
    assert "on the Ray cluster at" in capsys.readouterr().err
    out = storage / "cluster"
    assert (out / "results.csv").read_text() == (tmp_path / "runs" / "tune" / "cluster" / "results.csv").read_text()
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(r["status"] == "complete" for r in rows)
    # one slot per node and both trials pending at the start: each node runs one of them
    assert {r["node_id"] for r in rows} == node_ids
    for row in rows:  # every report of a trial came from the node it was placed on
        assert row["run_dir"].startswith(f"file://{out}/")
        with open(f"{row['run_dir'].removeprefix('file://')}/../result.json") as fh:
            assert {json.loads(line)["node_id"] for line in fh} == {row["node_id"]}

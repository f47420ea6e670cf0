"""Few-shot supernet splitting around any strategy (GM-NAS, specs/ALGORITHMS.md §2): the split tree of a run.

A run with `split.method` gm or random trains its supernet to the first of `split.epochs`, splits it in two along
one unit (gm: the unit whose candidates' gradients on the shared rest disagree most, `strategies.gm` and
`strategies.partition`; random: a random unit and partition of the same shape, the control), and goes on with
each half, a sub-supernet over a mask of the space, until the next split epoch; after k splits there are 2^k
leaves, each trained to `train.epochs`.

- Sub-supernets are nodes of a tree kept in `split.json` (which unit, which groups, at which epoch, the distance
  matrices of every scored unit, the time it took) with their own directory `subnets/<id>/` (checkpoints,
  metrics.csv). A child starts from its parent's checkpoint at the split: the weights, the optimizer state, the
  strategy's state (alphas, sampler distributions) and the position in the learning-rate schedule, which runs over
  `train.epochs` for every node (the reference's inheritance without restart).
- Nodes are trained one after another, depth first, from checkpoints on disk: one supernet in memory at a time
  (ALGORITHMS.md §2.7). `--resume` continues inside the node that was training; a split that was being scored
  is scored again (it is seeded: the same batches and probe paths), so a resumed run equals an uninterrupted one.
- An arch is scored by the leaf that contains it (`SplitTree.route`); the masks of the leaves partition the space
  (DARTS: an arch that uses no split edge lies in several leaves; it is routed to the first in tree order).

The engine knows nothing of this: it trains one (sub-)supernet with `Trainer.fit(until=...)`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import searchspaces
from strategies import gm, partition

from . import checkpoint, plots, rundir
from .components import build_model, build_strategy, check_supernet, make_evaluator
from .engine import Trainer, TrainState
from .errors import UserError
from .io import atomic_write, atomic_write_json
from .progress import Reporter
from .runtime import derive_seed

STREAM_SPLIT = 23  # the batches and probe paths of a gradient-matching score; the random split's draws
SPLIT_FILE = "split.json"
ROOT = "0"


@dataclass
class Node:
    """One (sub-)supernet: its mask over the space, the epochs it trains, and how it was split."""

    id: str
    mask: dict[str, list]
    start: int
    end: int
    status: str = "pending"  # pending -> trained -> split (a leaf stays trained)
    children: list[str] = field(default_factory=list)
    split: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics of the epochs this node trained


class SplitTree:
    """The nodes of a run's split tree, persisted atomically in `split.json`."""

    def __init__(self, method: str, epochs: Sequence[int], total: int, nodes: dict[str, Node] | None = None):
        self.method, self.epochs, self.total = method, list(epochs), int(total)
        self.nodes = nodes if nodes is not None else {ROOT: Node(ROOT, {}, 0, self.boundary(0))}

    def boundary(self, depth: int) -> int:
        """The epoch at which a node of `depth` stops: the next split epoch, or the end of training."""
        return self.epochs[depth] if depth < len(self.epochs) else self.total

    @staticmethod
    def depth(node_id: str) -> int:
        return node_id.count(".")

    def walk(self, node_id: str = ROOT) -> Iterator[Node]:
        """Nodes in depth-first order (the order they train in)."""
        node = self.nodes[node_id]
        yield node
        for child in node.children:
            yield from self.walk(child)

    def leaves(self) -> list[Node]:
        return [n for n in self.walk() if not n.children]

    def subspace(self, space: searchspaces.Space, node: Node) -> searchspaces.Space:
        return space.restrict_json(node.mask) if node.mask else space

    def route(self, space: searchspaces.Space, archs: Sequence[searchspaces.Arch]) -> list[str]:
        """The leaf that scores each arch: the first leaf, in tree order, whose mask contains it."""
        leaves = [(n.id, self.subspace(space, n)) for n in self.leaves()]
        out = []
        for arch in archs:
            owner = next((i for i, sub in leaves if sub.contains(arch)), None)
            if owner is None:
                raise ValueError(f"no sub-supernet contains {arch.to_string()}; the split masks do not cover the "
                                 "space")
            out.append(owner)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "epochs": self.epochs, "total_epochs": self.total,
                "leaves": [n.id for n in self.leaves()], "nodes": {k: asdict(v) for k, v in self.nodes.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitTree:
        return cls(data["method"], data["epochs"], data["total_epochs"],
                   {k: Node(**v) for k, v in data["nodes"].items()})

    def save(self, run_path: Path) -> None:
        atomic_write_json(run_path / SPLIT_FILE, self.to_json())

    @classmethod
    def load(cls, run_path: Path) -> SplitTree:
        return cls.from_json(json.loads((run_path / SPLIT_FILE).read_text()))


def is_split_run(run_path: Path) -> bool:
    return (run_path / SPLIT_FILE).is_file()


def node_dir(run_path: Path, node_id: str) -> Path:
    return run_path / "subnets" / node_id


def _copy(source: Path, target: Path) -> None:
    """Copy a checkpoint atomically (a crash leaves no half-written file)."""
    with source.open("rb") as src:
        atomic_write(target, lambda fh: shutil.copyfileobj(src, fh), mode="wb")


class FewShotTrainer:
    """Trains a run's split tree node by node and splits each node at its epoch."""

    def __init__(self, config: dict, run_path: Path, device, reporter: Reporter,
                 on_epoch: Callable[[TrainState], None] | None = None):
        check_supernet(config)
        self.config, self.run_path, self.device, self.reporter = config, run_path, device, reporter
        self.on_epoch = on_epoch
        self.space, self.bundle, self.net = build_model(config, device)
        sp = config["split"]
        self.sp = sp
        self.tree = SplitTree(sp["method"], sp["epochs"], config["train"]["epochs"])
        self.score_seconds = 0.0

    # --- nodes -----------------------------------------------------------------------------------
    def build(self, node: Node):
        """The node's supernet, space, set-up strategy and trainer, with its last checkpoint loaded if it has one."""
        subspace = self.tree.subspace(self.space, node)
        net = self.net if node.id == ROOT else self.net.restrict(subspace)
        strategy = build_strategy(self.config, net, subspace, self.bundle)
        where = node_dir(self.run_path, node.id)

        def epoch_done(state: TrainState) -> None:
            rundir.write_metrics(where, state.rows)
            if self.on_epoch is not None:
                self.on_epoch(state)

        trainer = Trainer(self.config, net, strategy, self.bundle.train, self.device, self.reporter,
                          checkpoint_dir=where / "checkpoints", on_epoch=epoch_done, valid_split=self.bundle.valid)
        last = where / "checkpoints" / "last.pt"
        if last.is_file():
            trainer.load_checkpoint_state(checkpoint.load(last, map_location=self.device))
        return net, subspace, strategy, trainer

    def fit(self, resume: bool = False) -> SplitTree:
        """Train every node of the tree (continuing a saved tree when `resume`) and return it."""
        if resume and is_split_run(self.run_path):
            self.tree = SplitTree.load(self.run_path)
        self.tree.save(self.run_path)
        self._visit(self.tree.nodes[ROOT])
        return self.tree

    def _visit(self, node: Node) -> None:
        built = None
        if node.status == "pending":
            built = self.build(node)
            _, subspace, _, trainer = built
            where = "the whole space" if not node.mask else f"mask {json.dumps(node.mask)}"
            self.reporter.info(f"sub-supernet {node.id} ({where}, {subspace.size():,} archs): epochs "
                               f"{trainer.state.epoch + 1}-{node.end}")
            state = trainer.fit(until=node.end)
            node.rows = [{**row, "subnet": node.id} for row in state.rows[node.start:]]
            node.status = "trained"
            self.tree.save(self.run_path)
        if node.status == "trained" and node.end < self.tree.total:
            self._split(node, built)
            node.status = "split"
            self.tree.save(self.run_path)
        for child in node.children:
            self._visit(self.tree.nodes[child])

    # --- splitting -------------------------------------------------------------------------------
    def _split(self, node: Node, built=None) -> None:
        """Score and split a trained node (`built`: its supernet, space, strategy and trainer, if in memory)."""
        net, subspace, strategy, _ = built or self.build(node)
        units = [(u, c) for u, c in subspace.split_units() if subspace.is_unsplit(u)]
        if not units:
            raise UserError(f"sub-supernet {node.id} has no unsplit unit left to split at epoch {node.end}; use "
                            "fewer split.epochs")
        started = time.perf_counter()
        seed = derive_seed(self.config["seed"], STREAM_SPLIT, *map(int, node.id.split(".")))
        if self.sp["method"] == "gm":
            record = self._gm_record(net, subspace, strategy, units, seed)
        else:
            rng = np.random.default_rng(seed)
            unit, candidates = units[int(rng.integers(len(units)))]
            groups = partition.random_partition(candidates, rng, self.sp["group_sizes"], self.sp["min_group"])
            record = {"unit": unit, "groups": [list(g) for g in groups]}
        seconds = time.perf_counter() - started
        self.score_seconds += seconds
        record.update(method=self.sp["method"], epoch=node.end, seconds=round(seconds, 3))
        node.split = record
        last = node_dir(self.run_path, node.id) / "checkpoints" / "last.pt"
        depth = self.tree.depth(node.id) + 1
        node.children = []
        for k, group in enumerate(record["groups"]):
            child_id = f"{node.id}.{k}"
            mask = subspace.restrict(record["unit"], group).mask_json()
            self.tree.nodes[child_id] = Node(child_id, mask, node.end, self.tree.boundary(depth))
            _copy(last, node_dir(self.run_path, child_id) / "checkpoints" / "last.pt")
            node.children.append(child_id)
        self.reporter.info(f"split sub-supernet {node.id} at epoch {node.end} along {record['unit']}: "
                           + " | ".join(",".join(map(str, g)) for g in record["groups"])
                           + f"  ({seconds:.1f}s)")

    def _gm_record(self, net, subspace, strategy, units, seed: int) -> dict[str, Any]:
        sp, tc = self.sp, self.config["train"]
        scored: dict[str, dict[str, Any]] = {}
        parts: dict[str, partition.Partition] = {}
        for i, (unit, candidates) in enumerate(units):
            self.reporter.live(f"gradient matching {i + 1}/{len(units)}: {unit}")
            rng = np.random.default_rng(seed)  # the same probe paths and batches for every unit (paired scores)
            D = gm.gradient_distances(net, subspace, unit, candidates, self._batches(seed),
                                      lambda rng=rng: strategy.probe(rng), sp["repeats"], sp["distance"], sp["hard"],
                                      sp["include_stem_head"])
            part = partition.partition(D, candidates, sp["group_sizes"], sp["min_group"], sp["edge_select"], seed)
            parts[unit] = part
            scored[unit] = {"candidates": list(candidates), "distance": np.round(D, 6).tolist(),
                            "groups": [list(g) for g in part.groups], "within": part.within, "cut": part.cut}
        chosen = partition.select(parts, sp["edge_select"])
        return {"unit": chosen, "groups": [list(g) for g in parts[chosen].groups], "repeats": sp["repeats"],
                "distance": sp["distance"], "edge_select": sp["edge_select"], "scores": scored,
                "batch_size": tc["batch_size"]}

    def _batches(self, seed: int):
        """Endless seeded training batches (augmented, as training sees them), reshuffled every pass."""
        size = self.config["train"]["batch_size"]
        for cycle in range(10**9):
            generator = torch.Generator().manual_seed(derive_seed(seed, cycle))
            yield from self.bundle.train.batches(size, shuffle=True, generator=generator, drop_last=True,
                                                 augment=True)


# --- scoring archs with the leaves -------------------------------------------------------------------
def load_leaf(run_path: Path, tree: SplitTree, space: searchspaces.Space, net, leaf_id: str, device):
    """The model of one leaf from its last checkpoint (a restricted copy of `net`) and that checkpoint."""
    leaf = tree.nodes[leaf_id]
    sub = net.restrict(tree.subspace(space, leaf)) if leaf.mask else net
    state = checkpoint.load(node_dir(run_path, leaf_id) / "checkpoints" / "last.pt", map_location=device)
    sub.load_state_dict(state["model"])
    return sub, state


def routed_scores(config: dict, run_path: Path, tree: SplitTree, space: searchspaces.Space, bundle, net, device,
                  archs: Sequence[searchspaces.Arch], split_name: str,
                  on_progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[str], int]:
    """Inherited-weight accuracy of every arch on `split_name`, each scored by the leaf that contains it (one leaf
    in memory at a time); also the leaf of each arch and the epoch of the leaves' checkpoints."""
    owners = tree.route(space, archs)
    scores = np.full(len(archs), np.nan)
    done, epoch = 0, 0
    for leaf in dict.fromkeys(owners):
        leaf_net, state = load_leaf(run_path, tree, space, net, leaf, device)
        epoch = int(state["epoch"])
        evaluator = make_evaluator(config, leaf_net, bundle, split_name)
        for i in (i for i, o in enumerate(owners) if o == leaf):
            scores[i] = evaluator(archs[i])
            done += 1
            if on_progress is not None:
                on_progress(done)
    return scores, owners, epoch


def split_budget(budget: int, leaves: int) -> int:
    """Each leaf's share of a post-training search budget, so the whole search scores as many archs as one-shot."""
    return max(1, math.ceil(budget / leaves))


def write_split_plot(run_path: Path, tree: SplitTree) -> Path | None:
    """`plots/split.png`: per split, the distance matrix of the chosen unit with the groups it was cut into."""
    splits = [n for n in tree.walk() if n.split and n.split.get("scores")]
    if not splits:
        return None
    return plots.split_distances(run_path / "plots" / "split.png", [(n.id, n.split) for n in splits])


__all__ = ["FewShotTrainer", "Node", "SplitTree", "is_split_run", "load_leaf", "node_dir", "routed_scores",
           "split_budget", "write_split_plot"]

"""GM-NAS's gradient-matching score: how much the candidates of one unit agree on the update of the shared rest.

For a unit e (an NB201 edge, a DARTS normal-cell edge, a MobileNet block's kernel) of a (sub-)supernet, repeated R
times on a fresh training batch that every candidate of that repeat shares (specs/ALGORITHMS.md §2.2, reference
`WS-GM/nasbench201/train_search.py:442-513`):

    theta = the strategy's probe (relaxed strategies: their masked weights; single-path ones: a uniform path)
    for each allowed candidate o of e: force o on e (hard: weight 1, the rest of e's row 0), backward the mean
        cross-entropy, g_o = the gradient of every parameter except e's own (in every cell that shares e)
    D += [distance(g_o, g_o')]

and returns `D / R` (the GM score is `1 - D` for `cos`). Decisions the reference leaves implicit, taken here:
- "e's own parameters" are the entries of `choice_slices()` of e's candidates (whole tensors, or their slices of a
  shared tensor in weight-entangled supernets) plus the registry entries labelled e (DARTS's per-edge modules); the
  stem, reduction blocks and head (no unit) are left out unless `include_stem_head`, as the reference never
  iterates them. A parameter whose gradient is None contributes zeros (§0.4), so every g_o has the same length.
- `cos` is `1 - <a, b> / (|a| |b| + 1e-6)`; `per-filter-cos` sums that over the filters (dim 0) of every parameter
  with more than one dimension; `mse` is the mean squared difference.
- The probe path is drawn from a generator the caller seeds, never the strategy's own, so scoring a split does not
  change the training run's random sequence (resume across a split stays bit-exact).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from searchspaces import Arch, Space
from supernets import ArchWeights, Supernet

DISTANCES: tuple[str, ...] = ("cos", "per-filter-cos", "mse")
EPS = 1e-6  # the reference's `+ 1e-6` in the denominator of the cosine


@dataclass(frozen=True)
class Masked:
    """One parameter of the gradient vector and which of its entries count (None: all of them)."""

    param: torch.nn.Parameter
    keep: torch.Tensor | None


def shared_rest(net: Supernet, unit: str, include_stem_head: bool = False) -> list[Masked]:
    """The parameters a candidate of `unit` does not own, with the entries that count: those of every other unit
    (and of the stem/head when asked), with `unit`'s own entries masked out. Registry order, so vectors from
    different candidates line up."""
    owned: dict[int, torch.Tensor] = {}  # id(param) -> bool mask of entries owned by `unit`
    searched: set[int] = set()

    def mark(p: torch.nn.Parameter, index: tuple) -> None:
        mask = owned.setdefault(id(p), torch.zeros_like(p, dtype=torch.bool))
        if index:
            mask[index] = True
        else:
            mask.fill_(True)

    for (label, _), entries in net.choice_slices().items():
        for p, index in entries:
            searched.add(id(p))
            if label == unit:
                mark(p, index)
    out: list[Masked] = []
    for key, _, p in net.parameter_registry():
        if not p.requires_grad:
            continue
        if key.label is not None:
            searched.add(id(p))
            if key.label == unit:
                mark(p, ())
        if id(p) not in searched and not include_stem_head:
            continue
        mask = owned.get(id(p))
        if mask is None:
            out.append(Masked(p, None))
        elif not bool(mask.all()):
            out.append(Masked(p, ~mask))
    return out


def _gradients(rest: Sequence[Masked]) -> list[torch.Tensor]:
    """Per parameter of `rest`, its gradient with the owned entries (and a missing gradient) as zeros."""
    out = []
    for m in rest:
        g = m.param.grad
        g = torch.zeros_like(m.param) if g is None else g.detach().clone()
        out.append(g if m.keep is None else g * m.keep)
    return out


def distance_matrix(grads: Sequence[Sequence[torch.Tensor]], distance: str = "cos") -> torch.Tensor:
    """`[K, K]` distances between the gradients of K candidates, each a list of per-parameter tensors."""
    if distance not in DISTANCES:
        raise ValueError(f"unknown gradient distance {distance!r}; accepted: {', '.join(DISTANCES)}")
    k = len(grads)
    if distance == "per-filter-cos":
        total = torch.zeros(k, k, dtype=torch.float64)
        for parts in zip(*grads):
            if parts[0].dim() < 2:
                continue
            rows = torch.stack([p.reshape(p.shape[0], -1).double() for p in parts])  # [K, filters, n]
            dots = torch.einsum("afn,bfn->abf", rows, rows)
            norms = rows.norm(dim=2)  # [K, filters]
            cos = dots / (norms[:, None, :] * norms[None, :, :] + EPS)
            total += (1.0 - cos).sum(dim=2)
        return total
    flat = torch.stack([torch.cat([p.reshape(-1) for p in g]).double() for g in grads])  # [K, n]
    if distance == "mse":
        return torch.cdist(flat, flat).pow(2) / flat.shape[1]
    norms = flat.norm(dim=1)
    return 1.0 - (flat @ flat.T) / (norms[:, None] * norms[None, :] + EPS)


def forced(space: Space, probe: Arch | ArchWeights, unit: str, choice: Hashable, hard: bool = True
           ) -> Arch | ArchWeights:
    """The probe with `unit` computing `choice`: an arch with that decision (`space.force`), or relaxed weights
    whose row of `unit` is one-hot on `choice` (`hard`) or keeps only `choice`'s own weight (not `hard`, the
    DARTS-space reference's soft variant)."""
    if isinstance(probe, Arch):
        return space.force(probe, unit, choice)
    rows = [label for label, _ in space.relaxation()]
    row = rows.index(unit)
    column = dict(space.relaxation())[unit].index(choice)
    weights = probe.weights.clone()
    value = 1.0 if hard else float(weights[row, column])
    weights[row] = 0.0
    weights[row, column] = value
    return ArchWeights(weights)


def gradient_distances(net: Supernet, space: Space, unit: str, candidates: Sequence[Hashable],
                       batches: Iterable, probe: Callable[[], Arch | ArchWeights], repeats: int,
                       distance: str = "cos", hard: bool = True, include_stem_head: bool = False) -> np.ndarray:
    """The mean `[K, K]` gradient distance between `candidates` of `unit` over `repeats` batches of `batches` (an
    iterator of objects with `.x`, `.y`); `probe()` gives each repeat's path. Gradients are left zeroed (None)."""
    rest = shared_rest(net, unit, include_stem_head)
    params = [p for p in net.parameters() if p.requires_grad]
    total = torch.zeros(len(candidates), len(candidates), dtype=torch.float64)
    batches = iter(batches)
    was_training = net.training
    net.train()
    try:
        for _ in range(repeats):
            batch = next(batches)
            theta = probe()
            grads = []
            for choice in candidates:
                for p in params:
                    p.grad = None
                loss = F.cross_entropy(net(batch.x, forced(space, theta, unit, choice, hard)), batch.y)
                loss.backward()
                grads.append(_gradients(rest))
            total += distance_matrix(grads, distance).cpu()
    finally:
        for p in params:
            p.grad = None
        net.train(was_training)
    return (total / repeats).numpy()

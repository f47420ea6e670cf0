"""The candidates of one decision as one object, and the execution policies over it (specs/ALGORITHMS.md §0.3).

A `MixedOp` says what each candidate of a decision computes with, and nothing about how a relaxed arch mixes them:

- its own module (`modules[choice]`, separate weights, the DARTS/NB201 one-shot setting);
- a slice of a shared module (`slices[choice] = (key, spec)`): `modules[key]` holds the weights of the largest
  candidate and runs candidate `spec` (a kernel size, an `(expand, kernel)` pair: a VALUE, never a position) as a
  slice of them. The candidates that share one module form an entangled group;
- nothing: `none` (zero) or, for choices named in `identity`, the input itself.

How the candidates run is a policy, picked once by the supernet's build mode (`supernet.mode`):

- `single`: one chosen candidate, `MixedOp.path(choice)`: its module, or its slice at its real size;
- `mix` (`Mix`): `sum_k a_k * o_k(x)` over the candidates the space allows (a mask's disallowed candidates are
  skipped; `none` adds nothing);
- `entangle` (`Entangle`, TangleNAS): each entangled group runs ONCE, its module called with the α-weighted sum
  of its members' zero-padded slices (`Sliceable.forward_superposed`, recomputed from the shared parameter on every
  call, never cached: §0.3); candidates outside any group are added as in `mix`. With `scale_group_by_mass` the
  group's output is multiplied by the group's total weight (§3.5 item 2; off by default, as in the reference,
  where a BatchNorm after the superposed op removes that mass); a group whose members all have weight exactly 0
  adds nothing (`group_factor`).

Both relaxed policies have the hard (GDAS straight-through) variant, `hard` = the chosen column: `mix` runs only
the chosen candidate, scaled by its weight; `entangle` runs the chosen candidate's group with the (one-hot valued)
weights of all its members, or the chosen candidate alone when it is in no group. Every weight that took no part
in the computation is added as a scalar, `w.sum() - w[used].sum()`, which is exactly zero in value and gives those
weights a gradient.

A policy returns the `Terms` of one decision: the tensors to add to a node and the scalar to add after them.
A cell folds the terms of all the edges into a node left to right (`combine`), so the order of additions, and
with it every output bit, is that of the hand-written relaxations this module replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from functools import partial
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .base import Index

# The terms one decision adds to a node, and the zero-valued scalar of the weights that took no part (hard mode).
Terms = tuple[list[torch.Tensor], torch.Tensor | None]
Path = Callable[[torch.Tensor], torch.Tensor]

MODES: tuple[str, ...] = ("mix", "entangle")


@runtime_checkable
class Sliceable(Protocol):
    """A module holding the largest weights of an entangled group; its candidates are slices of them."""

    def forward_slice(self, x: torch.Tensor, spec: Hashable) -> torch.Tensor:
        """Candidate `spec` at its real size (the single path)."""

    def forward_superposed(self, x: torch.Tensor, weights: Mapping[Hashable, torch.Tensor],
                           scale_by_mass: bool = False) -> torch.Tensor:
        """One call at the largest size with the weight `sum_spec weights[spec] * Pad(Slice_spec(W))`, its output
        multiplied by `group_factor(sum(weights), scale_by_mass)`."""


def group_factor(mass: torch.Tensor, scale_by_mass: bool) -> torch.Tensor:
    """What the output of a superposed group is multiplied by, `mass` being its members' total weight: `mass` with
    `scale_group_by_mass` (§3.5 item 2), else 1 (the reference) -- or 0 when every member's weight is exactly zero.

    A group whose members all have weight 0 thus adds exactly nothing, as `0 * o_k(x)` adds nothing in `mix`, even
    where its op would turn a zero kernel into something else (a conv bias and a BN's running statistics or shift
    after it); so `entangle(onehot(k)) == single(k)` also for a candidate outside the group. The comparison runs on
    the device (no host sync), and with softmax or Dirichlet weights the mass is never zero, so training computes
    what the reference computes."""
    return mass if scale_by_mass else (mass != 0).to(mass.dtype)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class MixedOp(nn.ModuleDict):
    """The candidates of one decision: `choices` in the order of the weight columns, the modules that compute them
    (keyed like the candidates whose weights they hold, so state-dict keys are `<choice>.<...>`), which candidates
    are slices of a shared module (`slices[choice] = (module key, spec)`), and which module-less choices pass their
    input through (`identity`; any other module-less choice is `none`)."""

    def __init__(self, choices: Sequence[Hashable], modules: Mapping[str, nn.Module],
                 slices: Mapping[Hashable, tuple[str, Hashable]] | None = None, identity: Collection[Hashable] = ()):
        super().__init__(modules)
        self.choices: tuple[Hashable, ...] = tuple(choices)
        self.slices: dict[Hashable, tuple[str, Hashable]] = dict(slices or {})
        self.passthrough = frozenset(identity)
        for choice, (key, _) in self.slices.items():
            if key not in self or not isinstance(self[key], Sliceable):
                raise ValueError(f"candidate {choice!r} is a slice of {key!r}, which is not a sliceable module here")
        # module key -> the columns of the candidates that are slices of it (an entangled group)
        self.groups: dict[str, tuple[int, ...]] = {}
        for k, choice in enumerate(self.choices):
            if choice in self.slices:
                key = self.slices[choice][0]
                self.groups[key] = (*self.groups.get(key, ()), k)

    def path(self, choice: Hashable) -> Path | None:
        """What `choice` computes on its own (the `single` policy), or None for `none`."""
        if choice in self.slices:
            key, spec = self.slices[choice]
            return partial(self[key].forward_slice, spec=spec)
        if isinstance(choice, str) and choice in self:
            return self[choice]
        return _identity if choice in self.passthrough else None

    def owner(self, choice: Hashable) -> str | None:
        """The key of the module `choice` computes with (None: no parameters)."""
        if choice in self.slices:
            return self.slices[choice][0]
        return choice if isinstance(choice, str) and choice in self else None

    def users(self, key: str) -> tuple[Hashable, ...]:
        """The candidates that compute with the parameters of module `key`, in column order."""
        return tuple(c for c in self.choices if self.owner(c) == key)

    def group_of(self, choice: Hashable) -> str | None:
        """The entangled group (module key) `choice` belongs to, if any."""
        return self.slices[choice][0] if choice in self.slices else None

    def slice_index(self, choice: Hashable) -> list[tuple[nn.Parameter, Index]]:
        """`[(parameter, index)]`: the parts of the parameters `choice` computes with (`Supernet.choice_slices`)."""
        key = self.owner(choice)
        if key is None:
            return []
        module = self[key]
        if choice in self.slices and hasattr(module, "slice_index"):
            return module.slice_index(self.slices[choice][1])
        return [(p, ()) for p in module.parameters()]


class Mix:
    """`sum_k a_k * o_k(x)` over the allowed candidates (DARTS); hard: the chosen candidate only."""

    name = "mix"

    def __call__(self, op: MixedOp, x: torch.Tensor, w: torch.Tensor, row: int, allowed: Sequence[int],
                 hard: int | None = None) -> Terms:
        """The terms of decision `row` of the weight matrix `w` (indexed as `w[row, k]`, so that autograd sums
        the gradients of `w` in the order of the relaxations this replaced), running on input `x`."""
        if hard is not None:
            path = op.path(op.choices[hard])
            # a chosen `none` outputs zero; its weight gets a gradient only through the scalar
            return ([] if path is None else [w[row, hard] * path(x)]), w[row].sum() - w[row, hard]
        terms = []
        for k in allowed:
            path = op.path(op.choices[k])
            if path is not None:
                terms.append(w[row, k] * path(x))
        return terms, None


def _total(w: torch.Tensor, row: int, columns: Sequence[int]) -> torch.Tensor:
    """`w[row, columns].sum()` from scalar views: indexing with a list would copy the list to the device each call."""
    total = w[row, columns[0]]
    for j in columns[1:]:
        total = total + w[row, j]
    return total


class Entangle:
    """TangleNAS: one superposed call per entangled group, the other candidates as in `mix`."""

    name = "entangle"

    def __init__(self, scale_group_by_mass: bool = False):
        self.scale_group_by_mass = bool(scale_group_by_mass)

    def _group(self, op: MixedOp, key: str, x: torch.Tensor, w: torch.Tensor, row: int,
               columns: Sequence[int]) -> torch.Tensor:
        weights = {op.slices[op.choices[j]][1]: w[row, j] for j in columns}  # keyed by value (§3.5 item 1)
        return op[key].forward_superposed(x, weights, self.scale_group_by_mass)

    def __call__(self, op: MixedOp, x: torch.Tensor, w: torch.Tensor, row: int, allowed: Sequence[int],
                 hard: int | None = None) -> Terms:
        """As `Mix.__call__`, with each entangled group of `op` run once, superposed."""
        if hard is not None:
            key = op.group_of(op.choices[hard])
            if key is None:
                return Mix()(op, x, w, row, allowed, hard)
            columns = [j for j in op.groups[key] if j in allowed or j == hard]
            return [self._group(op, key, x, w, row, columns)], w[row].sum() - _total(w, row, columns)
        terms: list[torch.Tensor] = []
        done: set[str] = set()
        for k in allowed:
            choice = op.choices[k]
            key = op.group_of(choice)
            if key is None:
                path = op.path(choice)
                if path is not None:
                    terms.append(w[row, k] * path(x))
            elif key not in done:  # the group runs once, where its first allowed member stands
                done.add(key)
                terms.append(self._group(op, key, x, w, row, [j for j in op.groups[key] if j in allowed]))
        return terms, None


Policy = Mix | Entangle


def policy(mode: str, scale_group_by_mass: bool = False) -> Policy:
    """The relaxed-execution policy of a build mode (`mix` or `entangle`)."""
    if mode == "mix":
        return Mix()
    if mode == "entangle":
        return Entangle(scale_group_by_mass)
    raise ValueError(f"supernet.mode={mode!r} is not valid; accepted: {', '.join(MODES)}")


def combine(results: Iterable[Terms]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The left fold of every term of `results` in order, and the sum of their scalars (None where there is none)."""
    out: torch.Tensor | None = None
    scalar: torch.Tensor | None = None
    for terms, extra in results:
        for term in terms:
            out = term if out is None else out + term
        if extra is not None:
            scalar = extra if scalar is None else scalar + extra
    return out, scalar


def allowed_columns(space_allowed: Sequence[Sequence[Hashable]], choices: Sequence[Sequence[Hashable]]) -> list[
        tuple[int, ...]]:
    """Per decision, the columns of the candidates a (restricted) space allows."""
    return [tuple(k for k, c in enumerate(row) if c in set(allowed)) for allowed, row in zip(space_allowed, choices)]

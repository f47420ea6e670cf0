"""What every supernet offers the rest of the framework (DESIGN.md, "Supernet")."""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from searchspaces import Arch, Space


@dataclass(frozen=True)
class ChoiceKey:
    """Registry key of a parameter: `(scope, index, label, choice)`, e.g. `("cell", 7, "2<-1", "nor_conv_3x3")`.

    Shared parameters have `label` and `choice` set to None (`("stem", None, None, None)`).
    """

    scope: str
    index: int | None
    label: str | None
    choice: Hashable | None


# Part of a parameter as a tuple of slices (`parameter[index]` is a view); `()` is the whole parameter.
Index = tuple[slice, ...]
# `(label, choice) -> [(parameter, index)]`: what each candidate trains (`Supernet.choice_slices`).
ChoiceSlices = dict[tuple[str, Hashable], list[tuple[nn.Parameter, Index]]]


@dataclass(frozen=True)
class ArchWeights:
    """A relaxed arch for gradient-based strategies: `weights[decision, candidate]` in the space's order.

    `hard` (GDAS-style straight-through samples) gives the chosen candidate index per decision: only that
    candidate runs, and every other candidate adds its (zero-valued) weight as a scalar so that the
    architecture parameters still receive a gradient.
    """

    weights: torch.Tensor
    hard: tuple[int, ...] | None = None


class Supernet(nn.Module):
    """A weight-sharing network over a space: `net(x, arch)` runs one path.

    A subclass declares the name of its space (`space_name`) and what it can run (`modes`, `relaxations`,
    `choice_gradients`), and registers itself once (`supernets.registry.register_supernet`)."""

    space_name: str = ""
    space: Space
    num_classes: int
    # How a path can be given (what `Strategy.mode()` names): `single` (an Arch), `mix` (ArchWeights without `hard`:
    # a relaxed arch, run by the build mode below) and `hard` (ArchWeights with `hard`: one candidate per decision,
    # weights for the gradient).
    modes: tuple[str, ...] = ("single",)
    # Build modes (`supernet.mode`, specs/ALGORITHMS.md §0.3) in which this supernet runs relaxed archs (ArchWeights
    # without `hard`): `mix` (weighted sum of candidate outputs) and/or `entangle` (TangleNAS: one superposed op per
    # entangled group). Empty: no relaxed archs. The instance's choice is `self.mode`.
    relaxations: tuple[str, ...] = ()
    mode: str = "mix"
    # Whether `choice_slices()` names what candidates train (their own parameters, or slices of shared ones).
    # Strategies that read per-candidate gradients (PA&DA) refuse a space whose supernet does not: every candidate
    # would look alike to them. A class attribute, so that the config check can read it before anything is built
    # (`supernets.entry(space_name).capabilities.choice_gradients`).
    choice_gradients: bool = True

    def _check_space(self, space: Space) -> None:
        """Refuse a space other than the one this supernet is for (a programming error, not a user's)."""
        if space.name != self.space_name:
            raise ValueError(f"{type(self).__name__} needs the {self.space_name} space, got {space.name!r}")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise ValueError (one sentence) when build options contradict each other; nothing is built. `options`
        holds every option (the defaults filled in). The default has nothing to refuse."""

    def export_costs(self) -> dict[str, Any] | None:
        """The arguments besides the task (`num_classes`, `in_channels`, `image_size`) under which the space's
        `params` and `flops` describe `self.export(arch)`, or None when the space counts no such network. The
        registry tests check that counts of exported networks equal them."""
        return None

    def forward(self, x: torch.Tensor, arch: Arch | ArchWeights) -> torch.Tensor:  # pragma: no cover - abstract
        """One path (`Arch`), or a relaxed arch (`ArchWeights`) run in the build's `mode` (`mix` or `entangle`)."""
        raise NotImplementedError

    # Scope of the parameters of `cells.<i>` that are not candidate ops (NB201: reduction blocks; DARTS: input
    # preprocessing).
    fixed_cell_scope: str = "cell_fixed"

    def _edge_label(self, cell_index: int, edge: str) -> str:
        """The registry label of edge `edge` of cell `cell_index` (DARTS prefixes the cell type)."""
        return edge

    def parameter_registry(self) -> list[tuple[ChoiceKey, str, nn.Parameter]]:
        """Every parameter with its registry key (`_registry_key`) and name, in a stable order."""
        return [(self._registry_key(name.split(".")), name, p) for name, p in self.named_parameters()]

    def _registry_key(self, parts: list[str]) -> ChoiceKey:
        """The key of a parameter from its module path: `stem.*`, `cells.<i>.edges.<edge>.<candidate>.*`, other
        `cells.<i>.*`, and the head."""
        if parts[0] == "cells":
            index = int(parts[1])
            if parts[2] == "edges":
                return ChoiceKey("cell", index, self._edge_label(index, parts[3]), parts[4])
            return ChoiceKey(self.fixed_cell_scope, index, None, None)
        if parts[0] == "stem":
            return ChoiceKey("stem", None, None, None)
        return ChoiceKey("head", None, None, None)

    def choice_parameters(self) -> dict[tuple[str, Hashable], list[nn.Parameter]]:
        """`(label, choice) -> parameters only that candidate uses` (across all cells sharing the decision).

        Parameter-free candidates map to an empty list. A strategy reads per-candidate gradient norms here.
        """
        out: dict[tuple[str, Hashable], list[nn.Parameter]] = {
            (d.label, c): [] for d in self.space.decisions for c in d.candidates
        }
        for key, _, p in self.parameter_registry():
            if key.label is not None:
                for choice in self._choice_users(key):
                    out[(key.label, choice)].append(p)
        return out

    def _choice_users(self, key: ChoiceKey) -> tuple[Hashable, ...]:
        """The candidates that compute with the parameters under registry key `key`: its own candidate, unless the
        module is shared by an entangled group (then every member of the group; `supernets.mixed.MixedOp.users`)."""
        return (key.choice,)

    def choice_slices(self) -> ChoiceSlices:
        """`(label, choice) -> [(parameter, index)]`: the part `parameter[index]` of each tensor that candidate
        computes with, `index` a tuple of slices (`()`: the whole parameter). A candidate's gradient is then
        `parameter.grad[index]` for each entry, a view (specs/ALGORITHMS.md §0.4).

        Default: the whole parameters of `choice_parameters()`. Weight-entangled supernets override it with slices
        of shared tensors; those slices overlap between candidates (a 3x3 kernel is the centre of the 5x5 one), so
        per-candidate gradients are not disjoint there, and a consumer must not add them up as if they were.
        """
        return {key: [(p, ()) for p in params] for key, params in self.choice_parameters().items()}

    def active_choices(self, arch: Arch) -> list[tuple[str, Hashable]]:
        """The `(label, choice)` pairs of `arch` that are part of the network it describes: every decision by
        default. Elastic spaces leave out the choices of blocks beyond a stage's depth, which are placeholders
        of the canonical form; a candidate whose output is merely unused (a dead NB201 edge) is still active."""
        return list(arch.items())

    def restrict(self, space: Space) -> Supernet:
        """A sub-supernet over a restricted space (a few-shot split), sharing no parameter, buffer or state."""
        if space.name != self.space.name:
            raise ValueError(f"cannot restrict a {self.space.name} supernet to space {space.name!r}")
        clone = copy.deepcopy(self)
        clone.space = space
        clone._on_space_change()
        return clone

    def _on_space_change(self) -> None:
        """Drop whatever a subclass derived from the space (plans, masks) after `restrict`."""

    def export(self, arch: Arch) -> nn.Module:  # pragma: no cover - abstract
        """A standalone module of `arch` with the inherited weights copied in."""
        raise NotImplementedError

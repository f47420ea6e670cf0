"""The search-space model shared by every space: decisions, immutable archs, masks.

A `Space` is an ordered set of named decisions (`label -> candidates`). An `Arch` is an immutable,
hashable choice per decision with a canonical string. A space may be restricted by a mask (allowed
candidates per decision): the sub-spaces of few-shot NAS are restricted spaces that share the parent's
decisions, so archs of a sub-space are archs of the parent too.

Pure Python + numpy; no torch (see DESIGN.md).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class SpaceError(ValueError):
    """A user-facing error about a space or an arch; the message is one sentence."""


@dataclass(frozen=True)
class FlopsConvention:
    """What the default `flops` of a space counts besides the multiply-adds of convolutions and linear layers, so
    that a count of a real network (`supernets.counting.count_flops(model, shape, bias=..., pools=...)`) can check
    it: `bias`, one add per output element of every layer with a bias; `pools`, k*k per output element of every
    max/average pooling window (global pooling, BatchNorm and activations are never counted)."""

    bias: bool = False
    pools: bool = False


@dataclass(frozen=True)
class Decision:
    """One named decision and its candidates, in the benchmark's order."""

    label: str
    candidates: tuple[Hashable, ...]

    def index(self, value: Hashable) -> int:
        try:
            return self.candidates.index(value)
        except ValueError:
            raise SpaceError(
                f"{value!r} is not a candidate of decision {self.label!r}; accepted: "
                f"{', '.join(map(str, self.candidates))}"
            ) from None


class Arch(Mapping):
    """An immutable, hashable assignment `label -> choice` of one space.

    Equality and hashing use the space's name and the choices in decision order, so an arch sampled from
    a restricted sub-space equals the same arch of the parent space.
    """

    __slots__ = ("_space", "_choices", "_hash")

    def __init__(self, space: Space, choices: Sequence[Hashable]):
        self._space = space
        self._choices = tuple(choices)
        self._hash = hash((space.name, self._choices))

    @property
    def space(self) -> Space:
        return self._space

    @property
    def choices(self) -> tuple[Hashable, ...]:
        """Choices in decision order."""
        return self._choices

    def codes(self) -> tuple[int, ...]:
        """Candidate index per decision (the benchmark's op indices for cell spaces)."""
        return tuple(d.candidates.index(c) for d, c in zip(self._space.decisions, self._choices))

    def to_string(self) -> str:
        """The canonical string (the benchmark key)."""
        return self._space.to_string(self)

    def replace(self, **changes: Hashable) -> Arch:
        """A copy with some decisions changed, e.g. `arch.replace(**{"1<-0": "none"})`."""
        return self._space.make({**dict(self), **changes})

    def __getitem__(self, label: str) -> Hashable:
        return self._choices[self._space.label_index(label)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._space.labels)

    def __len__(self) -> int:
        return len(self._choices)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Arch):
            return NotImplemented
        return self._space.name == other._space.name and self._choices == other._choices

    def __repr__(self) -> str:
        return f"Arch({self._space.name}: {self.to_string()})"

    def __reduce__(self):
        # Archs travel to worker processes by their canonical string.
        return (_rebuild_arch, (self._space.name, self._space.mask_json(), self.to_string()))


def _rebuild_arch(space_name: str, mask: dict, text: str) -> Arch:
    from . import get

    return get(space_name).restrict_json(mask).parse(text)


class Space:
    """Base class of all search spaces: decisions, sampling, enumeration, evolution operators, masks.

    Subclasses define `name`, the decisions, `to_string`/`parse`, and their analytic costs.
    """

    name: str = "space"

    def __init__(self, decisions: Sequence[Decision], allowed: Mapping[str, Sequence[Hashable]] | None = None):
        self.decisions: tuple[Decision, ...] = tuple(decisions)
        self.labels: tuple[str, ...] = tuple(d.label for d in self.decisions)
        self._label_index = {label: i for i, label in enumerate(self.labels)}
        allowed = dict(allowed or {})
        for label in allowed:
            self.label_index(label)
        # Allowed candidates per decision, kept in the decision's candidate order.
        self.allowed: tuple[tuple[Hashable, ...], ...] = tuple(
            tuple(c for c in d.candidates if c in set(allowed.get(d.label, d.candidates))) for d in self.decisions
        )
        for d, cands in zip(self.decisions, self.allowed):
            if not cands:
                raise SpaceError(f"a mask must allow at least one candidate of decision {d.label!r}")

    # --- structure -------------------------------------------------------------------------------
    def label_index(self, label: str) -> int:
        try:
            return self._label_index[label]
        except KeyError:
            raise SpaceError(
                f"{label!r} is not a decision of space {self.name!r}; accepted: {', '.join(self.labels)}"
            ) from None

    def make(self, choices: Mapping[str, Hashable] | Sequence[Hashable]) -> Arch:
        """Build a validated arch from a mapping `label -> choice` or a sequence in decision order."""
        if isinstance(choices, Mapping):
            missing = [label for label in self.labels if label not in choices]
            extra = [k for k in choices if k not in self._label_index]
            if missing or extra:
                raise SpaceError(
                    f"an arch of space {self.name!r} needs exactly the decisions {', '.join(self.labels)}"
                    f" (missing: {missing or 'none'}, unknown: {extra or 'none'})"
                )
            values = [choices[label] for label in self.labels]
        else:
            values = list(choices)
            if len(values) != len(self.decisions):
                raise SpaceError(
                    f"an arch of space {self.name!r} has {len(self.decisions)} choices, got {len(values)}"
                )
        for d, v in zip(self.decisions, values):
            d.index(v)
        return Arch(self, values)

    def decode(self, codes: Sequence[int]) -> Arch:
        """The arch whose candidate index per decision is `codes`."""
        codes = [int(c) for c in codes]
        if len(codes) != len(self.decisions):
            raise SpaceError(f"space {self.name!r} has {len(self.decisions)} decisions, got {len(codes)} codes")
        for d, c in zip(self.decisions, codes):
            if not 0 <= c < len(d.candidates):
                raise SpaceError(f"code {c} is out of range for decision {d.label!r} (0..{len(d.candidates) - 1})")
        return Arch(self, [d.candidates[c] for d, c in zip(self.decisions, codes)])

    def to_string(self, arch: Arch) -> str:
        """Canonical string; subclasses give the benchmark's format."""
        return ",".join(f"{label}={choice}" for label, choice in zip(self.labels, arch.choices))

    def parse(self, text: str) -> Arch:
        """Inverse of `to_string`."""
        try:
            pairs = dict(item.split("=", 1) for item in text.split(","))
        except ValueError:
            raise SpaceError(f"cannot parse {text!r} as an arch of space {self.name!r}") from None
        return self.make(pairs)

    # --- masks (sub-spaces) ----------------------------------------------------------------------
    def contains(self, arch: Arch) -> bool:
        """Whether every choice of `arch` is allowed by this (possibly restricted) space."""
        return all(c in allowed for c, allowed in zip(arch.choices, self.allowed))

    def restrict(self, label: str, allowed: Sequence[Hashable]) -> Space:
        """A sub-space: this space with decision `label` limited to `allowed` (a new object; self is unchanged)."""
        decision = self.decisions[self.label_index(label)]
        for value in allowed:
            decision.index(value)
        new = {d.label: list(a) for d, a in zip(self.decisions, self.allowed)}
        new[label] = [c for c in new[label] if c in set(allowed)]
        return self._with_allowed(new)

    def _with_allowed(self, allowed: Mapping[str, Sequence[Hashable]]) -> Space:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        Space.__init__(clone, self.decisions, allowed)
        return clone

    @property
    def root(self) -> Space:
        """The unrestricted space."""
        return self._with_allowed({})

    def is_restricted(self) -> bool:
        return any(len(a) != len(d.candidates) for d, a in zip(self.decisions, self.allowed))

    def mask_matrix(self) -> np.ndarray:
        """Boolean `[decision, candidate]` matrix of allowed candidates (cell spaces: `enc[edge, op]`)."""
        width = max(len(d.candidates) for d in self.decisions)
        enc = np.zeros((len(self.decisions), width), dtype=bool)
        for i, (d, allowed) in enumerate(zip(self.decisions, self.allowed)):
            for c in allowed:
                enc[i, d.candidates.index(c)] = True
        return enc

    def mask_json(self) -> dict[str, list]:
        """The restriction as JSON-ready data: only decisions that are restricted are listed."""
        return {d.label: list(a) for d, a in zip(self.decisions, self.allowed) if len(a) != len(d.candidates)}

    def restrict_json(self, mask: Mapping[str, Sequence[Hashable]] | str) -> Space:
        """Inverse of `mask_json` (accepts the dict or its JSON text)."""
        if isinstance(mask, str):
            mask = json.loads(mask)
        for label, values in mask.items():
            decision = self.decisions[self.label_index(label)]
            for v in values:
                decision.index(v)
        return self._with_allowed(mask)

    # --- sampling and enumeration ----------------------------------------------------------------
    def size(self) -> int:
        """Number of encodings in this (sub-)space, duplicates and invalid archs included."""
        return int(np.prod([len(a) for a in self.allowed], dtype=object))

    def is_valid(self, arch: Arch) -> bool:
        """Whether the arch computes something (cell spaces: the output node is reachable)."""
        return True

    def sample_codes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` uniform samples as an `[n, decisions]` array of candidate indices (vectorised)."""
        cols = []
        for d, allowed in zip(self.decisions, self.allowed):
            idx = np.array([d.candidates.index(c) for c in allowed])
            cols.append(idx[rng.integers(0, len(idx), size=n)])
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=int)

    def sample(self, rng: np.random.Generator, valid_only: bool = False, max_tries: int = 10_000) -> Arch:
        """One arch, uniformly over the allowed candidates of each decision; `valid_only` rejects invalid ones."""
        for _ in range(max_tries):
            arch = Arch(
                self, [allowed[int(rng.integers(0, len(allowed)))] for allowed in self.allowed]
            )
            if not valid_only or self.is_valid(arch):
                return arch
        raise SpaceError(f"no valid arch found in {max_tries} samples of space {self.name!r}")

    def allowed_next(self, position: int, prefix: np.ndarray) -> np.ndarray:
        """Which candidates of decision `position` may follow the choices already made: `prefix` is a `[B,
        position]` array of candidate indices of decisions 0..position-1 (one row per sequence being sampled), the
        result a boolean `[B, candidates]` array. A sequential sampler (the ENAS controller) that draws every
        decision from its allowed candidates makes only archs this space contains, in canonical form, with the
        codes it drew (`decode(codes).codes() == codes`). By default the mask of the decision, whatever came
        before; spaces whose decisions constrain each other (DARTS's input pairs and edge masks, MobileNet's
        inactive blocks) override it. Validity that only the finished arch shows (NB201's unreachable output)
        is not a constraint here."""
        row = self.mask_matrix()[position, : len(self.decisions[position].candidates)]
        return np.broadcast_to(row, (len(prefix), len(row))).copy()

    def input_labels(self) -> tuple[str, ...]:
        """Labels of the decisions that pick an earlier node of a cell as an input (DARTS); none by default. ENAS
        bounds their logits differently from an op's (specs/ALGORITHMS.md §5.1)."""
        return ()

    def enumerate(self, valid_only: bool = False, limit: int = 10_000_000) -> Iterator[Arch]:
        """Every arch of this (sub-)space in lexicographic code order."""
        if self.size() > limit:
            raise SpaceError(f"space {self.name!r} has {self.size()} archs, too many to enumerate (limit {limit})")
        for values in itertools.product(*self.allowed):
            arch = Arch(self, values)
            if not valid_only or self.is_valid(arch):
                yield arch

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one decision that has another allowed candidate to a different candidate, uniformly."""
        options = [i for i, allowed in enumerate(self.allowed) if len(allowed) > 1]
        if not options:
            return arch
        i = options[int(rng.integers(0, len(options)))]
        others = [c for c in self.allowed[i] if c != arch.choices[i]]
        values = list(arch.choices)
        values[i] = others[int(rng.integers(0, len(others)))]
        return Arch(self, values)

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each decision from either parent with probability 1/2."""
        take_a = rng.random(len(self.decisions)) < 0.5
        return Arch(self, [x if t else y for x, y, t in zip(a.choices, b.choices, take_a)])

    def largest(self, **task: Any) -> Arch:
        """The allowed arch with the most parameters (by `params`)."""
        return max(self.enumerate(), key=lambda arch: self.params(arch, **task))

    def smallest(self, **task: Any) -> Arch:
        """The allowed arch with the fewest parameters (by `params`)."""
        return min(self.enumerate(), key=lambda arch: self.params(arch, **task))

    # --- relaxation (gradient-based search) -----------------------------------------------------
    def relaxation(self) -> list[tuple[str, tuple[Hashable, ...]]]:
        """Rows of a relaxed arch (`weights[row, candidate]`): by default one row per decision."""
        return [(d.label, d.candidates) for d in self.decisions]

    def relaxation_mask(self) -> np.ndarray:
        """Boolean `[row, candidate]`: which relaxed entries a (restricted) space allows."""
        return self.mask_matrix()

    def discretize(self, weights: np.ndarray) -> Arch:
        """The arch a relaxed arch stands for: by default the heaviest allowed candidate of every decision."""
        weights = np.where(self.relaxation_mask(), np.asarray(weights, dtype=float), -np.inf)
        return self.decode(weights.argmax(axis=1))

    # --- few-shot splitting (GM-NAS) -----------------------------------------------------------
    def split_units(self) -> list[tuple[str, tuple[Hashable, ...]]]:
        """What a few-shot split may partition: `(label, allowed candidates)` per unit, in order. By default every
        decision with more than one allowed candidate; a unit's label is also a row of `relaxation()` and a label
        `restrict` accepts. Spaces whose relaxation has other rows than their decisions (DARTS: edges) override it."""
        return [(d.label, allowed) for d, allowed in zip(self.decisions, self.allowed) if len(allowed) > 1]

    def is_unsplit(self, label: str) -> bool:
        """Whether unit `label` still allows every candidate it has in the unrestricted space (GM-NAS scores only
        such units: a "full row" of the mask)."""
        i = self.label_index(label)
        return len(self.allowed[i]) == len(self.decisions[i].candidates)

    def force(self, arch: Arch, label: str, choice: Hashable) -> Arch:
        """`arch` with unit `label` computing `choice` (the gradient-matching probe: every candidate of a unit on
        the same rest of the path). By default the decision replaced; the result is an arch of the unrestricted
        space, as the rest of `arch` may lie outside a restriction of `label`."""
        values = list(arch.choices)
        i = self.label_index(label)
        self.decisions[i].index(choice)
        values[i] = choice
        return Arch(self.root, values)

    # --- declared capabilities -------------------------------------------------------------------
    # What a space can do is declared here, never guessed from the methods it happens to have: the registration
    # (`searchspaces.registry.register_space`) checks every declaration against the methods the class overrides.
    # Whether `canonical` knows encodings that describe the same network.
    has_equivalences: bool = False
    # How the default counter of `flops` counts (None: the space has no FLOPs count).
    flops_convention: FlopsConvention | None = None
    # the names `flops(arch, counter=...)` accepts, its default first; empty: one count only
    flops_counters: tuple[str, ...] = ()
    # The kinds `cost_terms(kind, **task)` decomposes (`params`, `flops`); empty: the space has no cost terms.
    cost_term_kinds: tuple[str, ...] = ()
    # Supernet build options that change the standalone network, and with it `params`/`flops` (NB201: C and N, the
    # child keeps the supernet's macro structure; MobileNet: width_mult and the stride schedule). A run's values of
    # these options join the cost task; DARTS has none (its costs are of the C=36, 20-cell evaluation network).
    COST_OPTIONS: tuple[str, ...] = ()

    @property
    def has_flops(self) -> bool:
        """Whether the space counts FLOPs (`flops`), as declared by `flops_convention`."""
        return self.flops_convention is not None

    def key(self, arch: Arch | str) -> str:
        """The canonical string under which benchmarks store `arch`, from an `Arch` of this space or any text that
        `parse` reads (other spacing, equivalent spellings); raises SpaceError for anything else."""
        if isinstance(arch, Arch):
            if arch.space.name != self.name:
                raise SpaceError(f"{arch!r} is an arch of space {arch.space.name!r}, not {self.name!r}")
            return arch.to_string()
        if not isinstance(arch, str):
            raise SpaceError(f"{arch!r} is not an arch of space {self.name!r}; expected an Arch or its string")
        return self.parse(arch).to_string()

    def onehot(self, arch: Arch) -> tuple[np.ndarray, tuple[int, ...] | None]:
        """`arch` as relaxed weights in the layout of `relaxation()` (`[rows, max candidates]`, one-hot on the chosen
        candidate of every row) and the chosen column per row for a hard (GDAS) sample, or None where some row has
        no chosen candidate (DARTS: unchosen edges). A relaxation computes the path of `arch` at these weights."""
        rows = self.relaxation()
        if [label for label, _ in rows] != list(self.labels):
            raise NotImplementedError(f"space {self.name!r} relaxes other rows than its decisions; it must give "
                                      "its own onehot")
        codes = arch.codes()
        weights = np.zeros((len(rows), max(len(c) for _, c in rows)))
        weights[np.arange(len(codes)), codes] = 1.0
        return weights, tuple(codes)

    # --- graphs ------------------------------------------------------------------------------------
    def to_graph(self, arch: Arch):
        """`arch` as a networkx DiGraph whose nodes carry a `role` and whose edges carry an `op`, for graph
        measures (edit distances, common connections). By default a chain: one node per decision, in order, with
        role `label=choice`; cell spaces override it with their cell DAGs (NB201, DARTS)."""
        import networkx as nx

        graph = nx.DiGraph(arch=arch.to_string())
        graph.add_node("input", role="input")
        previous = "input"
        for label, choice in zip(self.labels, arch.choices):
            graph.add_node(label, role=f"{label}={choice}")
            graph.add_edge(previous, label, op="next")
            previous = label
        return graph

    # --- equivalences ----------------------------------------------------------------------------

    def canonical(self, arch: Arch) -> Arch:
        """The representative of the class of encodings that describe the same network as `arch`.

        Spaces without known equivalences return the arch itself, so callers (deduplication, samplers)
        can use `canonical` for every space; NB201 overrides it (see `searchspaces/cellgraph.py`).
        """
        return arch

    # --- analytic costs --------------------------------------------------------------------------
    def params(self, arch: Arch, **task: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError(f"space {self.name!r} has no parameter count")

    def flops(self, arch: Arch, **task: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError(f"space {self.name!r} has no FLOPs count")

    def __repr__(self) -> str:
        restricted = f", restricted to {self.mask_json()}" if self.is_restricted() else ""
        return f"{type(self).__name__}({self.name!r}, {len(self.decisions)} decisions{restricted})"

"""The DARTS cell space: a normal and a reduction cell, 4 intermediate nodes, 2 (input, op) pairs per node.

Orders follow the DARTS code and specs/ALGORITHMS.md §0.1. `PRIMITIVES` are the 8 ops of the relaxed space
(`none` included) in the original order; a discrete genotype uses the 7 others, `GENOTYPE_OPS`, whose indices
are the op indices of NAS-Bench-301's compact form. `EDGES` are the 14 edges of the relaxed cell, ordered by
target node, then source (`2<-0, 2<-1, 3<-0, ..., 5<-4`); nodes 0 and 1 are the cell inputs.

The discrete space has 32 decisions, per cell (`normal`, then `reduce`) and node k = 2..5:
`{cell}.n{k}.in0`, `{cell}.n{k}.op0`, `{cell}.n{k}.in1`, `{cell}.n{k}.op1`; inputs are node ids 0..k-1. All op
decisions share one candidate tuple, so samplers can group them.

Canonical form: a node sums its two inputs, so the order of its two pairs does not change the network; we
keep them with `in0 < in1`. (DARTS's own genotype derivation lists them by edge strength instead, which is
why DARTS_V2's reduce node 3 reads `('skip_connect', 2), ('max_pool_3x3', 1)`.) `make`, `parse` and
`from_nb301` sort the pairs; two pairs of one node with the same input are rejected. Sampling, mutation and
crossover only produce canonical archs, so `size()` counts valid canonical genotypes, ~1.08e18 in all.

Edge masks (few-shot splitting, GM-NAS): besides the decisions, a sub-space may limit the genotype ops of an edge,
labelled by its relaxation row (`space.restrict("normal:3<-1", ["sep_conv_3x3", "skip_connect"])`), which the
node-level decisions cannot express. An arch is contained when its decisions are allowed and every (edge, op)
it uses is allowed on its edge; sampling is uniform over the contained archs and `size()` counts them exactly.
`none` is never part of an edge mask: it stays allowed in `relaxation_mask()` (DARTS's relaxed candidate).

Analytic costs are those of the DARTS CIFAR evaluation network (`NetworkCIFAR`, `model.py`/`operations.py`
of the DARTS code); see `params` and `flops`. DARTS_V2 at C=36, 20 layers has 3,349,342 parameters, the
count DARTS's training log prints. The NB301 subset's `params`/`flops` are the same network at C=32, 8 cells
with the search cell's ops (`search_ops=True`: BN without affine, BN after pools), FLOPs as tensorwatch
counts them (`counter="tensorwatch"`); the tests check both against all 500 archs of the subset.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .core import Arch, Decision, FlopsConvention, Space, SpaceError
from .registry import register_space

PRIMITIVES: tuple[str, ...] = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
    "dil_conv_5x5",
)
GENOTYPE_OPS: tuple[str, ...] = PRIMITIVES[1:]
NODES: tuple[int, ...] = (2, 3, 4, 5)
CONCAT: tuple[int, ...] = NODES
CELLS: tuple[str, ...] = ("normal", "reduce")
EDGES: tuple[tuple[int, int], ...] = tuple((t, s) for t in NODES for s in range(t))
EDGE_LABELS: tuple[str, ...] = tuple(f"{t}<-{s}" for t, s in EDGES)
PAIRS_PER_CELL = 2 * len(NODES)
# The 28 rows of the relaxation (`normal:2<-0` .. `reduce:5<-4`); also the labels of edge masks.
ROW_LABELS: tuple[str, ...] = tuple(f"{cell}:{t}<-{s}" for cell in CELLS for t, s in EDGES)
_ROWS: dict[str, tuple[str, int, int]] = {f"{cell}:{t}<-{s}": (cell, t, s) for cell in CELLS for t, s in EDGES}
_ROW_HINT = "normal:t<-s or reduce:t<-s with 2 <= t <= 5 and 0 <= s < t (e.g. normal:3<-1)"

# The two best-known genotypes of the DARTS paper, as written in the original `cnn/genotypes.py`
# (quoklab/darts): DARTS_V1 from first-order search, DARTS_V2 from second-order search (the 3.3M-parameter
# CIFAR-10 model). Recalled from memory and checked against public copies of that file.
DARTS_V1 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)

_EXAMPLE = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ... 8 (op, input) pairs], "
            "normal_concat=[2, 3, 4, 5], reduce=[... 8 pairs], reduce_concat=[2, 3, 4, 5])")
_NB301_EXAMPLE = "[[(0, 3), (1, 3), ... 8 (input, op) pairs], [... 8 pairs]]"
_KERNEL = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "dil_conv_3x3": 3, "dil_conv_5x5": 5}
_POOLS = ("max_pool_3x3", "avg_pool_3x3")


def _label(cell: str, node: int, field: str) -> str:
    return f"{cell}.n{node}.{field}"


@register_space("DARTS cell: normal + reduction cell, 4 nodes x 2 (input, op) pairs, 7 ops, ~1.1e18 genotypes",
                example=DARTS_V2)
class DartsSpace(Space):
    """The DARTS cell space (normal + reduction cell), archs kept in canonical pair order."""

    name = "darts"
    # `macs`: conv (no conv has a bias) and linear layers with the classifier's bias, and the pooling windows
    flops_convention = FlopsConvention(bias=True, pools=True)
    flops_counters = ("macs", "tensorwatch")

    def __init__(self, allowed: Mapping[str, Sequence[Hashable]] | None = None):
        """`allowed`: a mask as `mask_json` gives it (decision labels and/or edge rows such as `normal:3<-1`)."""
        decisions = []
        for cell in CELLS:
            for node in NODES:
                inputs = tuple(range(node))
                for j in (0, 1):
                    decisions.append(Decision(_label(cell, node, f"in{j}"), inputs))
                    decisions.append(Decision(_label(cell, node, f"op{j}"), GENOTYPE_OPS))
        nodes, edges = _split_mask(allowed or {})
        super().__init__(decisions, nodes)
        self._edge_allowed = edges

    # --- structure helpers -----------------------------------------------------------------------
    def op_labels(self) -> tuple[str, ...]:
        """Labels of the 16 op decisions (all share the candidate tuple `GENOTYPE_OPS`)."""
        return tuple(label for label in self.labels if ".op" in label)

    def input_labels(self) -> tuple[str, ...]:
        """Labels of the 16 input decisions (node k: candidates 0..k-1)."""
        return tuple(label for label in self.labels if ".in" in label)

    def genotype(self, arch: Arch) -> dict[str, list[tuple[str, int]]]:
        """`{"normal": [(op, input) x 8], "reduce": [...]}` in canonical order (the original Genotype lists)."""
        c = arch.choices
        n = PAIRS_PER_CELL
        return {cell: [(c[2 * p + 1], c[2 * p]) for p in range(i * n, (i + 1) * n)] for i, cell in enumerate(CELLS)}

    def to_graph(self, arch: Arch):
        """Both cells as one networkx DAG: per cell the input nodes `cell:0`, `cell:1` (c_{k-2}, c_{k-1}) and the
        intermediate nodes `cell:2`..`cell:5` (`role` says which), one edge per chosen (input, op) pair with its
        `op`. The concatenation into the cell output is the same for every genotype and left out."""
        import networkx as nx

        graph = nx.DiGraph(arch=arch.to_string())
        for cell, pairs in self.genotype(arch).items():
            for node in range(2 + len(NODES)):
                graph.add_node(f"{cell}:{node}", role=f"{cell}:in{node}" if node < 2 else f"{cell}:node")
            for p, (op, source) in enumerate(pairs):
                graph.add_edge(f"{cell}:{source}", f"{cell}:{NODES[p // 2]}", op=op)
        return graph

    # --- relaxation (DARTS's continuous search) --------------------------------------------------
    def relaxation(self) -> list[tuple[str, tuple[Hashable, ...]]]:
        """28 rows: the 14 edges of the normal cell, then of the reduce cell (`normal:3<-1`), over all 8 PRIMITIVES
        (`none` included), the layout of DARTS's `alphas_normal` / `alphas_reduce`."""
        return [(f"{cell}:{t}<-{s}", PRIMITIVES) for cell in CELLS for t, s in EDGES]

    def onehot(self, arch: Arch) -> tuple[np.ndarray, tuple[int, ...] | None]:
        """`[28, 8]` weights of a genotype: one-hot on the chosen op for the two chosen edges of every node, zero rows
        for the other edges (so there is no hard sample: None); a `mix` relaxation at these weights computes what
        the single path of `arch` computes."""
        weights = np.zeros((len(CELLS) * len(EDGES), len(PRIMITIVES)))
        rows = {(cell, f"{t}<-{s}"): i for i, (cell, (t, s)) in enumerate((c, e) for c in CELLS for e in EDGES)}
        for cell, pairs in self.genotype(arch).items():
            for k, (op, src) in enumerate(pairs):
                weights[rows[(cell, f"{NODES[k // 2]}<-{src}")], PRIMITIVES.index(op)] = 1.0
        return weights, None

    def relaxation_mask(self) -> np.ndarray:
        """`[28, 8]`: an edge-restricted row allows its genotype ops plus `none` (column 0, DARTS's relaxed
        candidate, never split); other rows allow everything (decision masks do not show here)."""
        mask = np.ones((len(ROW_LABELS), len(PRIMITIVES)), dtype=bool)
        for label, ops in self._edge_allowed.items():
            mask[ROW_LABELS.index(label), 1:] = [op in ops for op in GENOTYPE_OPS]
        return mask

    def discretize(self, weights: np.ndarray) -> Arch:
        """DARTS's derivation within the relaxation mask: per node the 2 incoming edges with the largest allowed
        non-`none` weight, each with its heaviest allowed non-`none` op."""
        weights = np.where(self.relaxation_mask(), np.asarray(weights, dtype=float), -np.inf)
        cells: dict[str, list[tuple[str, int]]] = {}
        for c, cell in enumerate(CELLS):
            pairs: list[tuple[str, int]] = []
            for node in NODES:
                rows = [(c * len(EDGES) + e, s) for e, (t, s) in enumerate(EDGES) if t == node]
                strength = {s: weights[row, 1:].max() for row, s in rows}
                best = sorted(sorted(strength, key=lambda s: -strength[s])[:2])
                for row, s in rows:
                    if s in best:
                        pairs.append((PRIMITIVES[1 + int(weights[row, 1:].argmax())], s))
            cells[cell] = pairs
        return self._from_cells(cells)

    # --- canonical form --------------------------------------------------------------------------
    @staticmethod
    def _canonical(values: Sequence[Hashable]) -> list[Hashable]:
        """Sort the two pairs of every node by input; reject a node whose two inputs are equal."""
        out = list(values)
        for block in range(len(out) // 4):
            i0, o0, i1, o1 = out[4 * block: 4 * block + 4]
            if i0 == i1:
                cell, node = CELLS[block // 4], NODES[block % 4]
                raise SpaceError(f"node {node} of the {cell} cell takes input {i0} twice; the two inputs of a node "
                                 f"must differ")
            if i0 > i1:
                out[4 * block: 4 * block + 4] = [i1, o1, i0, o0]
        return out

    def make(self, choices: Mapping[str, Hashable] | Sequence[Hashable]) -> Arch:
        """A validated arch in canonical order (the two pairs of a node are sorted by input, not rejected)."""
        arch = super().make(choices)
        return Arch(self, self._canonical(arch.choices))

    def decode(self, codes: Sequence[int]) -> Arch:
        """The arch of candidate indices `codes`, put in canonical order."""
        return Arch(self, self._canonical(super().decode(codes).choices))

    def is_valid(self, arch: Arch) -> bool:
        """Whether every node has two distinct inputs listed in ascending order (the canonical form)."""
        c = arch.choices
        return all(c[4 * b] < c[4 * b + 2] for b in range(len(c) // 4))

    def _from_cells(self, cells: Mapping[str, Sequence[tuple[str, int]]]) -> Arch:
        """Arch from `{cell: [(op, input) x 8]}` after checking ops, inputs and duplicates (one-sentence errors)."""
        values: list[Hashable] = []
        for cell in CELLS:
            pairs = cells[cell]
            if len(pairs) != PAIRS_PER_CELL:
                raise SpaceError(f"the {cell} cell of a DARTS genotype needs {PAIRS_PER_CELL} (op, input) pairs "
                                 f"(2 per node {NODES[0]}..{NODES[-1]}), got {len(pairs)}")
            for k, (op, source) in enumerate(pairs):
                node = NODES[k // 2]
                if op not in GENOTYPE_OPS:
                    raise SpaceError(f"op {op!r} of node {node} in the {cell} cell is not allowed in a DARTS genotype; "
                                     f"accepted: {', '.join(GENOTYPE_OPS)}")
                if type(source) is not int or not 0 <= source < node:
                    raise SpaceError(f"input {source!r} of node {node} in the {cell} cell is invalid; accepted: "
                                     f"0..{node - 1} (0, 1 = cell inputs, 2.. = earlier nodes)")
                values += [source, op]
        return Arch(self, self._canonical(values))

    # --- the original Genotype string --------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        """`Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...])`,
        the repr of the original `Genotype` namedtuple, pairs in canonical order."""
        g = self.genotype(arch)
        concat = list(CONCAT)
        return f"Genotype(normal={g['normal']!r}, normal_concat={concat!r}, reduce={g['reduce']!r}, " \
               f"reduce_concat={concat!r})"

    def parse(self, text: str) -> Arch:
        """Parse a genotype as the DARTS code writes it (`Genotype(...)` or `genotypes.Genotype(...)`, concat as a
        list or `range(2, 6)`); pairs are put in canonical order. Uses `ast`, never `eval`."""
        if not isinstance(text, str):
            raise SpaceError(f"{text!r} is not a DARTS genotype string; expected the form {_EXAMPLE}")
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            tree = None
        func = tree.func if isinstance(tree, ast.Call) else None
        named = (isinstance(func, ast.Name) and func.id == "Genotype") or (
            isinstance(func, ast.Attribute) and func.attr == "Genotype" and isinstance(func.value, ast.Name)
            and func.value.id == "genotypes")
        if not named:
            raise SpaceError(f"cannot parse {_short(text)!r} as a DARTS genotype; expected the form {_EXAMPLE}")
        fields = ("normal", "normal_concat", "reduce", "reduce_concat")
        if len(tree.args) > len(fields) or any(k.arg not in fields for k in tree.keywords):
            raise SpaceError(f"a DARTS genotype has exactly the fields {', '.join(fields)}; got "
                             f"{_short(text)!r}")
        given = dict(zip(fields, tree.args))
        for keyword in tree.keywords:
            if keyword.arg in given:
                raise SpaceError(f"field {keyword.arg} is given twice in DARTS genotype {_short(text)!r}")
            given[keyword.arg] = keyword.value
        missing = [f for f in fields if f not in given]
        if missing:
            raise SpaceError(f"DARTS genotype {_short(text)!r} lacks the field(s) {', '.join(missing)}")
        cells = {}
        for cell in CELLS:
            concat = _concat(given[f"{cell}_concat"])
            if concat != list(CONCAT):
                got = concat if concat is not None else ast.unparse(given[f"{cell}_concat"])
                raise SpaceError(f"{cell}_concat of a DARTS genotype must be {list(CONCAT)} (all intermediate nodes) "
                                 f"in this space, got {got}")
            try:
                pairs = ast.literal_eval(given[cell])
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pairs = None
            if not isinstance(pairs, (list, tuple)) or not all(
                    isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
                raise SpaceError(f"the {cell} cell of DARTS genotype {_short(text)!r} is not a list of (op, input) "
                                 f"pairs; expected the form {_EXAMPLE}")
            cells[cell] = [tuple(p) for p in pairs]
        return self._from_cells(cells)

    def key(self, arch: Arch | str | Sequence[Any]) -> str:
        """The canonical string of a DARTS genotype (`to_string()`, each node's two pairs sorted by input) from an
        `Arch`, a genotype string as the DARTS code writes it, or NAS-Bench-301's compact form
        `[[(input, op) x 8 normal], [(input, op) x 8 reduce]]` as a string or nested lists (any spacing, pairs in
        either order), so the NB301 subset's own keys find their rows."""
        if isinstance(arch, Arch) or (isinstance(arch, str) and "Genotype" in arch):
            return super().key(arch)
        if isinstance(arch, (str, list, tuple)):
            return self.from_nb301(arch).to_string()
        raise SpaceError(f"{arch!r} is not a DARTS genotype; expected an Arch of space darts, a string like "
                         f"{_EXAMPLE} or the NB301 form {_NB301_EXAMPLE}")

    # --- NAS-Bench-301's compact form --------------------------------------------------------------
    def to_nb301(self, arch: Arch) -> str:
        """The compact NAS-Bench-301 / NASLib form `[[(input, op) x 8 normal], [(input, op) x 8 reduce]]`, op
        indices into `GENOTYPE_OPS`, pairs in canonical order (Python `str` spelling, as the NB301 subset keys)."""
        g = self.genotype(arch)
        return str([[(source, GENOTYPE_OPS.index(op)) for op, source in g[cell]] for cell in CELLS])

    def from_nb301(self, compact: str | Sequence[Any]) -> Arch:
        """Inverse of `to_nb301`; accepts the string or the nested lists/tuples and sorts each node's pairs.

        NB301 keys list a node's pairs in either order (about half of the shared subset's nodes are not sorted);
        the arch, and so `to_nb301` of it, is the sorted form.
        """
        value = compact
        if isinstance(compact, str):
            try:
                value = ast.literal_eval(compact.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = None
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise SpaceError(f"{_short(compact)!r} is not a NAS-Bench-301 genotype; expected the form "
                             f"{_NB301_EXAMPLE} with op indices into {', '.join(GENOTYPE_OPS)}")
        cells = {}
        for cell, pairs in zip(CELLS, value):
            if not isinstance(pairs, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                                                for p in pairs):
                raise SpaceError(f"the {cell} cell of NAS-Bench-301 genotype {_short(compact)!r} is not a list of "
                                 f"(input, op) pairs; expected the form {_NB301_EXAMPLE}")
            named = []
            for source, op in pairs:
                if type(op) is not int or not 0 <= op < len(GENOTYPE_OPS):
                    raise SpaceError(f"op index {op!r} in the {cell} cell of a NAS-Bench-301 genotype is invalid; "
                                     f"accepted: 0..{len(GENOTYPE_OPS) - 1} ({', '.join(GENOTYPE_OPS)})")
                named.append((GENOTYPE_OPS[op], source))
            cells[cell] = named
        return self._from_cells(cells)

    # --- masks: decisions and edges -----------------------------------------------------------------
    def edge_ops(self, row: str) -> tuple[str, ...]:
        """Genotype ops allowed on edge `row` (`normal:3<-1`) by the edge mask (all 7 when unrestricted)."""
        _row(row)
        return self._edge_allowed.get(row, GENOTYPE_OPS)

    def _ops_on(self, cell: str, node: int, source: int) -> tuple[str, ...]:
        return self._edge_allowed.get(f"{cell}:{node}<-{source}", GENOTYPE_OPS)

    def _edges_allowed(self, values: Sequence[Hashable]) -> bool:
        """Whether every (edge, op) pair of the choices `values` is allowed by the edge mask."""
        if not self._edge_allowed:
            return True
        for block in range(len(values) // 4):
            cell, node = CELLS[block // 4], NODES[block % 4]
            i0, o0, i1, o1 = values[4 * block: 4 * block + 4]
            if o0 not in self._ops_on(cell, node, i0) or o1 not in self._ops_on(cell, node, i1):
                return False
        return True

    def contains(self, arch: Arch) -> bool:
        """Whether the decisions of `arch` are allowed and every (edge, op) it uses is allowed on its edge."""
        return super().contains(arch) and self._edges_allowed(arch.choices)

    def restrict(self, label: str, allowed: Sequence[Hashable]) -> DartsSpace:
        """A sub-space (new object): decision `label`, or the genotype ops of edge row `label` (`normal:3<-1`),
        limited to `allowed`, intersected with what this space allows."""
        mask = self._full_mask()
        if label in _ROWS:
            ops = set(_edge_values(label, allowed))
            mask[label] = [op for op in mask.get(label, GENOTYPE_OPS) if op in ops]
        else:
            decision = self.decisions[_decision_index(self, label)]
            for value in allowed:
                decision.index(value)
            mask[label] = [c for c in mask[label] if c in set(allowed)]
        return self._with_allowed(mask)

    def restrict_json(self, mask: Mapping[str, Sequence[Hashable]] | str) -> DartsSpace:
        """Inverse of `mask_json` (the dict or its JSON text; decision labels and edge rows)."""
        if isinstance(mask, str):
            mask = json.loads(mask)
        for label, values in mask.items():
            if label in _ROWS:
                _edge_values(label, values)
            else:
                decision = self.decisions[_decision_index(self, label)]
                for v in values:
                    decision.index(v)
        return self._with_allowed(mask)

    def _full_mask(self) -> dict[str, list]:
        mask: dict[str, list] = {d.label: list(a) for d, a in zip(self.decisions, self.allowed)}
        mask.update({row: list(ops) for row, ops in self._edge_allowed.items()})
        return mask

    def _with_allowed(self, allowed: Mapping[str, Sequence[Hashable]]) -> DartsSpace:
        """A copy with exactly the mask `allowed` (decisions and edges; `{}`: the root), its own edge-mask dict."""
        nodes, edges = _split_mask(allowed)
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__.pop("_options_cache", None)
        Space.__init__(clone, self.decisions, nodes)
        clone._edge_allowed = edges
        return clone

    def is_restricted(self) -> bool:
        return super().is_restricted() or bool(self._edge_allowed)

    def mask_json(self) -> dict[str, list]:
        """Restricted decisions, then restricted edges (`"normal:3<-1": [ops]`), as JSON-ready data."""
        mask = super().mask_json()
        mask.update({row: list(self._edge_allowed[row]) for row in ROW_LABELS if row in self._edge_allowed})
        return mask

    # --- few-shot splitting (GM-NAS) -------------------------------------------------------------------
    def split_units(self) -> list[tuple[str, tuple[Hashable, ...]]]:
        """The normal-cell edges (as GM-NAS's DARTS code splits them) with their allowed genotype ops, leaving out
        edges down to one op."""
        return [(row, self.edge_ops(row)) for row in ROW_LABELS[:len(EDGES)] if len(self.edge_ops(row)) > 1]

    def is_unsplit(self, label: str) -> bool:
        """An edge row: whether all 7 genotype ops are still allowed on it; a decision: as `Space`."""
        if label in _ROWS:
            return len(self._edge_allowed.get(label, GENOTYPE_OPS)) == len(GENOTYPE_OPS)
        return super().is_unsplit(label)

    def force(self, arch: Arch, label: str, choice: Hashable) -> Arch:
        """`arch` with edge `label` (`t<-s`) computing op `choice`: node t's pair with input s gets the op, or, when
        t does not take s, its pair with the larger input (in1) moves to s with the op. An arch of the root space
        (the rest may lie outside this restriction). Decision labels: as `Space.force`."""
        if label not in _ROWS:
            return super().force(arch, label, choice)
        cell, node, source = _ROWS[label]
        (op,) = _edge_values(label, [choice])
        values = list(arch.choices)
        b = 4 * (CELLS.index(cell) * len(NODES) + NODES.index(node))
        if values[b] == source:
            values[b + 1] = op
        elif values[b + 2] == source:
            values[b + 3] = op
        else:  # in0 != source here, so moving in1 keeps the inputs distinct
            values[b + 2: b + 4] = [source, op]
        return Arch(self.root, self._canonical(values))

    # --- sampling, enumeration, evolution ------------------------------------------------------------
    def _node_options(self) -> list[list[tuple[int, tuple[str, ...], int, tuple[str, ...]]]]:
        """Per (cell, node): the allowed choices `(in0, ops0, in1, ops1)`, in0 < in1, each ops list the op
        decision's allowed ops that the edge mask allows on its edge; pairs with no allowed op are left out.
        Cached: a space's masks never change (`_with_allowed` drops the copy's cache)."""
        cached = self.__dict__.get("_options_cache")
        if cached is not None:
            return cached
        out = []
        for block in range(len(self.decisions) // 4):
            cell, node = CELLS[block // 4], NODES[block % 4]
            a_in0, a_op0, a_in1, a_op1 = self.allowed[4 * block: 4 * block + 4]
            on = [self._ops_on(cell, node, s) for s in range(node)]
            ops0 = [tuple(o for o in a_op0 if o in on[s]) for s in range(node)]
            ops1 = [tuple(o for o in a_op1 if o in on[s]) for s in range(node)]
            out.append([(i0, ops0[i0], i1, ops1[i1]) for i0 in a_in0 for i1 in a_in1
                        if i0 < i1 and ops0[i0] and ops1[i1]])
        self._options_cache = out
        return out

    @staticmethod
    def _node_archs(choices) -> list[tuple[Hashable, Hashable, Hashable, Hashable]]:
        """Every `(in0, op0, in1, op1)` block of a node's choices."""
        return [(i0, a, i1, b) for i0, ops0, i1, ops1 in choices for a in ops0 for b in ops1]

    def size(self) -> int:
        """Number of valid canonical genotypes in this (sub-)space, not the product of decision sizes: per node the
        sum over allowed input pairs (in0 < in1) of #ops allowed on edge in0 x #ops on edge in1 (unrestricted:
        C(k,2) * 7^2 for node k, (180 * 7^8)^2 ~ 1.08e18 in all)."""
        return math.prod(sum(len(o0) * len(o1) for _, o0, _, o1 in choices) for choices in self._node_options())

    def _check_nonempty(self, options) -> None:
        for block, choices in enumerate(options):
            if not choices:
                cell, node = CELLS[block // 4], NODES[block % 4]
                raise SpaceError(f"the mask leaves node {node} of the {cell} cell no pair of distinct inputs "
                                 f"in ascending order with an allowed op on both edges; allow more inputs or ops")

    def sample_codes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` uniform samples over the contained canonical archs as an `[n, 32]` array of candidate indices: per
        node an input pair with probability proportional to its number of op pairs, then uniform allowed ops."""
        options = self._node_options()
        self._check_nonempty(options)
        cols = []
        for choices in options:
            if len({(c[1], c[3]) for c in choices}) == 1:  # the same ops for every pair (no edge mask here)
                pair_arr = np.array([(c[0], c[2]) for c in choices], dtype=np.int64)  # input id = candidate index
                picked = pair_arr[rng.integers(0, len(choices), size=n)]
                idx0 = np.array([GENOTYPE_OPS.index(o) for o in choices[0][1]])
                idx1 = np.array([GENOTYPE_OPS.index(o) for o in choices[0][3]])
                cols += [picked[:, 0], idx0[rng.integers(0, len(idx0), size=n)],
                         picked[:, 1], idx1[rng.integers(0, len(idx1), size=n)]]
            else:  # uniform over the node's (pair, op, op) blocks
                table = np.array([(i0, GENOTYPE_OPS.index(a), i1, GENOTYPE_OPS.index(b))
                                  for i0, a, i1, b in self._node_archs(choices)], dtype=np.int64)
                picked = table[rng.integers(0, len(table), size=n)]
                cols += [picked[:, k] for k in range(4)]
        return np.stack(cols, axis=1)

    def allowed_next(self, position: int, prefix: np.ndarray) -> np.ndarray:
        """Per row of `prefix`, the candidates of decision `position` that some allowed `(in0, op0, in1, op1)` of
        its node still permits after the node's earlier choices: inputs distinct and ascending (the canonical
        form), ops allowed by the decision and by the edge mask on the chosen input's edge."""
        block, field = divmod(position, 4)
        options = self._node_options()[block]
        self._check_nonempty([options])
        width = len(self.decisions[position].candidates)
        start = 4 * block
        out = np.zeros((len(prefix), width), dtype=bool)
        rows: dict[tuple[int, ...], np.ndarray] = {}
        for r, made in enumerate(np.asarray(prefix)[:, start:position].tolist()):
            key = tuple(made)
            if key not in rows:
                allowed = np.zeros(width, dtype=bool)
                for i0, ops0, i1, ops1 in options:
                    if field >= 1 and i0 != key[0]:
                        continue
                    if field >= 2 and GENOTYPE_OPS[key[1]] not in ops0:
                        continue
                    if field >= 3 and i1 != key[2]:
                        continue
                    if field == 0:
                        allowed[i0] = True
                    elif field == 2:
                        allowed[i1] = True
                    else:
                        allowed[[GENOTYPE_OPS.index(o) for o in (ops0 if field == 1 else ops1)]] = True
                rows[key] = allowed
            out[r] = rows[key]
        return out

    def sample(self, rng: np.random.Generator, valid_only: bool = False, max_tries: int = 10_000) -> Arch:
        """One arch uniformly over the valid canonical archs of this (sub-)space (`valid_only` is implied)."""
        codes = self.sample_codes(rng, 1)[0]
        return Arch(self, [d.candidates[int(c)] for d, c in zip(self.decisions, codes)])

    def enumerate(self, valid_only: bool = False, limit: int = 10_000_000) -> Iterator[Arch]:
        """Every valid canonical arch of a small restricted sub-space (the full space is far too large)."""
        total = self.size()
        if total > limit:
            raise SpaceError(f"space {self.name!r} has {total} archs, too many to enumerate (limit {limit})")
        per_node = [self._node_archs(choices) for choices in self._node_options()]
        for blocks in itertools.product(*per_node):
            yield Arch(self, [v for block in blocks for v in block])

    def _neighbours(self, arch: Arch) -> list[tuple[Hashable, ...]]:
        """Archs one step away that this space contains: one op changed, or one input of a node replaced (the
        op stays with its edge and the node's pairs are re-sorted)."""
        c = list(arch.choices)
        out = []
        for i, label in enumerate(self.labels):
            if ".op" in label:
                for op in self.allowed[i]:
                    if op != c[i]:
                        out.append(tuple(c[:i] + [op] + c[i + 1:]))
        for block in range(len(c) // 4):
            i0, o0, i1, o1 = c[4 * block: 4 * block + 4]
            node = NODES[block % 4]
            for keep, keep_op, move_op in ((i0, o0, o1), (i1, o1, o0)):
                for new in range(node):
                    if new in (i0, i1):
                        continue
                    pairs = sorted([(keep, keep_op), (new, move_op)])
                    out.append(tuple(c[:4 * block] + [pairs[0][0], pairs[0][1], pairs[1][0], pairs[1][1]]
                                     + c[4 * block + 4:]))
        allowed = [set(a) for a in self.allowed]
        return [v for v in out if all(x in a for x, a in zip(v, allowed)) and self._edges_allowed(v)]

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A uniformly chosen neighbour: one op changed, or one input moved to another node (still valid and
        canonical); the arch itself when this sub-space has no neighbour."""
        options = self._neighbours(arch)
        if not options:
            return arch
        return Arch(self, options[int(rng.integers(0, len(options)))])

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Per node, both pairs from one parent (probability 1/2 each), so the child is valid and canonical."""
        take_a = rng.random(len(self.decisions) // 4) < 0.5
        values = []
        for block, t in enumerate(take_a):
            values += (a if t else b).choices[4 * block: 4 * block + 4]
        return Arch(self, values)

    def largest(self, **task: Any) -> Arch:
        """The allowed arch with the most parameters (ties: fewer FLOPs); exact, as costs add up per node."""
        return self._extreme(max, **task)

    def smallest(self, **task: Any) -> Arch:
        """The allowed arch with the fewest parameters (ties: fewer FLOPs); exact, as costs add up per node."""
        return self._extreme(min, **task)

    def _extreme(self, pick, **task: Any) -> Arch:
        options = self._node_options()
        self._check_nonempty(options)
        net = _network(**{k: v for k, v in task.items() if k in _NETWORK_ARGS})
        values = []
        for block, node_choices in enumerate(options):
            cell = CELLS[block // 4]

            def cost(choice, cell=cell):
                i0, o0, i1, o1 = choice
                p = net.edge_params(cell, i0, o0) + net.edge_params(cell, i1, o1)
                f = net.edge_flops(cell, i0, o0) + net.edge_flops(cell, i1, o1)
                return (p, -f) if pick is max else (p, f)

            values += pick(self._node_archs(node_choices), key=cost)
        return Arch(self, values)

    # --- analytic costs --------------------------------------------------------------------------
    def params(self, arch: Arch, C: int = 36, layers: int = 20, num_classes: int = 10, auxiliary: bool = False,
               in_channels: int = 3, stem_multiplier: int = 3, search_ops: bool = False, **_: Any) -> int:
        """Parameters of the DARTS CIFAR evaluation network (`NetworkCIFAR`) of `arch`.

        Stem conv 3x3 (no bias) + affine BN; `layers` cells, reductions (channels doubled) at layers//3 and
        2*layers//3; preprocess0 = FactorizedReduce after a reduction cell else ReLU-conv1x1-BN, preprocess1 =
        ReLU-conv1x1-BN; sep_conv = 2 x (depthwise kxk, pointwise, BN), dil_conv = depthwise kxk dilation 2,
        pointwise, BN; pools have no parameters; skip_connect with stride 2 (reduction cell, input 0 or 1) is
        FactorizedReduce. Convs have no bias; BN is affine. Classifier: global pooling + linear. The auxiliary
        head is counted only with `auxiliary=True` (DARTS's `count_parameters_in_MB` leaves it out).

        `search_ops=True` builds the cell ops as DARTS's search cell (`MixedOp`) does: BN without affine
        parameters and a BN after each pool; preprocessing and stem stay affine. Defaults are DARTS's CIFAR-10
        evaluation (C=36, 20 layers: DARTS_V2 has 3,349,342). The NAS-Bench-301 subset's `params` are
        `C=32, layers=8, search_ops=True` exactly (checked on all 500 archs by the tests).
        """
        net = _network(C, layers, num_classes, auxiliary, in_channels, stem_multiplier, search_ops=search_ops)
        return net.fixed_params + sum(net.edge_params(cell, s, op) for cell, s, op in _edges(self, arch))

    def flops(self, arch: Arch, C: int = 36, layers: int = 20, num_classes: int = 10, auxiliary: bool = False,
              in_channels: int = 3, stem_multiplier: int = 3, image_size: int = 32, search_ops: bool = False,
              counter: str = "macs", **_: Any) -> int:
        """Operations of one forward pass of one image through the network of `params`.

        `counter="macs"` (default; the convention of the NB201 space's `macs`): conv k*k*C_in*C_out/groups per
        output position (no conv here has a bias), linear in*out + out, pooling k*k per output element; BatchNorm,
        ReLU, the sums of a node and global pooling are not counted.

        `counter="tensorwatch"`: the rules of tensorwatch's `ModelStats.Flops` (torchstat), which NASLib used
        for the NB301 subset's `flops`: convs as above, plus ReLU 1 per input element, BatchNorm 1 per element
        (2 when affine), pools k*k per output element, adaptive global pooling (size+1)^2 per channel, linear
        in*out without bias. The NB301 subset's `flops` are `C=32, layers=8, search_ops=True,
        counter="tensorwatch"` exactly (all 500 archs). The auxiliary head only with `auxiliary=True`.
        """
        if counter not in self.flops_counters:
            raise SpaceError(f"FLOPs counter {counter!r} is not known; accepted: {', '.join(self.flops_counters)}")
        net = _network(C, layers, num_classes, auxiliary, in_channels, stem_multiplier, image_size, search_ops,
                       counter)
        return net.fixed_flops + sum(net.edge_flops(cell, s, op) for cell, s, op in _edges(self, arch))


def _row(label: str) -> tuple[str, int, int]:
    try:
        return _ROWS[label]
    except (KeyError, TypeError):
        raise SpaceError(f"{label!r} is not an edge row of the DARTS space; accepted: {_ROW_HINT}") from None


def _decision_index(space: DartsSpace, label: str) -> int:
    if label not in space._label_index:
        raise SpaceError(f"{label!r} is neither a decision nor an edge row of the DARTS space; accepted: decision "
                         f"labels such as normal.n3.in0 or edge rows {_ROW_HINT}")
    return space._label_index[label]


def _edge_values(label: str, values: Sequence[Hashable]) -> tuple[str, ...]:
    """The genotype ops `values` of edge `label`, checked (`none` is not maskable), in `GENOTYPE_OPS` order."""
    _row(label)
    if isinstance(values, str):
        values = [values]
    for op in values:
        if op not in GENOTYPE_OPS:
            raise SpaceError(f"op {op!r} cannot be allowed on edge {label!r}: an edge mask takes genotype ops only "
                             f"(none stays in the relaxation); accepted: {', '.join(GENOTYPE_OPS)}")
    return tuple(op for op in GENOTYPE_OPS if op in set(values))


def _split_mask(mask: Mapping[str, Sequence[Hashable]]) -> tuple[dict[str, list], dict[str, tuple[str, ...]]]:
    """A mask split into decision entries and edge entries; edges allowing all 7 ops are dropped (unrestricted)."""
    nodes: dict[str, list] = {}
    edges: dict[str, tuple[str, ...]] = {}
    for label, values in mask.items():
        if label in _ROWS:
            ops = _edge_values(label, values)
            if not ops:
                raise SpaceError(f"a mask must allow at least one genotype op on edge {label!r}")
            if len(ops) < len(GENOTYPE_OPS):
                edges[label] = ops
        else:
            nodes[label] = values
    return nodes, edges


def _edges(space: DartsSpace, arch: Arch) -> Iterator[tuple[str, int, str]]:
    for cell, pairs in space.genotype(arch).items():
        for op, source in pairs:
            yield cell, source, op


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _concat(node: ast.AST) -> list[int] | None:
    """A concat field as a list: a literal list/tuple, or `range(a, b)` as the original file writes it."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and not node.keywords:
        try:
            args = [ast.literal_eval(a) for a in node.args]
        except ValueError:
            return None
        if 1 <= len(args) <= 3 and all(type(a) is int for a in args):
            return list(range(*args))
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None
    return list(value) if isinstance(value, (list, tuple)) else None


_NETWORK_ARGS = ("C", "layers", "num_classes", "auxiliary", "in_channels", "stem_multiplier", "image_size",
                 "search_ops", "counter")


class _Network:
    """Cost bookkeeping of `NetworkCIFAR`: everything that does not depend on the genotype (`fixed_*`), and the
    cost of one (input, op) edge summed over all cells of its type (`edge_*`), so costs add up per edge.

    With `counter="tensorwatch"` element-wise layers count too: `relu` per input element, `bn` per element
    (x2 when affine); see `DartsSpace.flops`.
    """

    def __init__(self, C: int, layers: int, num_classes: int, auxiliary: bool, in_channels: int,
                 stem_multiplier: int, image_size: int, search_ops: bool, counter: str):
        if C < 2 or layers < 3:
            raise SpaceError(f"a DARTS network needs C >= 2 and layers >= 3 (two reduction cells), got C={C}, "
                             f"layers={layers}")
        self.search_ops = search_ops
        tw = counter == "tensorwatch"
        self.elementwise = tw
        relu = 1 if tw else 0
        bn_affine = 2 if tw else 0
        c_stem = stem_multiplier * C
        size = image_size
        params = in_channels * c_stem * 9 + 2 * c_stem
        flops = size * size * c_stem * (in_channels * 9 + bn_affine)
        # per cell: (cell type, channels C, size of the cell inputs, output size)
        self.cells: list[tuple[str, int, int, int]] = []
        c_pp, c_p, c_cur = c_stem, c_stem, C
        size_pp = size_p = size
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cur *= 2
            out_size = _down(size_p) if reduction else size_p
            if reduction_prev:  # FactorizedReduce(c_pp, c_cur) brings s0 down to s1's size
                params += 2 * c_pp * (c_cur // 2) + 2 * c_cur
                flops += 2 * size_p ** 2 * c_pp * (c_cur // 2)
            else:
                params += c_pp * c_cur + 2 * c_cur
                flops += size_pp * size_pp * c_pp * c_cur
            params += c_p * c_cur + 2 * c_cur
            flops += size_p * size_p * c_p * c_cur
            flops += relu * (c_pp * size_pp ** 2 + c_p * size_p ** 2) + bn_affine * 2 * c_cur * size_p ** 2
            self.cells.append(("reduce" if reduction else "normal", c_cur, size_p, out_size))
            reduction_prev = reduction
            c_pp, c_p = c_p, len(CONCAT) * c_cur
            size_pp, size_p = size_p, out_size
            if auxiliary and i == 2 * layers // 3:
                pool = (size_p - 5) // 3 + 1  # ReLU, AvgPool2d(5, stride 3): 8x8 -> 2x2
                conv = pool - 1  # conv 2x2, no padding
                params += c_p * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * num_classes + num_classes
                flops += pool ** 2 * c_p * 25 + pool ** 2 * c_p * 128 + conv ** 2 * 128 * 768 * 4
                flops += 768 * num_classes + (0 if tw else num_classes)
                flops += relu * (c_p * size_p ** 2 + 128 * pool ** 2 + 768 * conv ** 2)
                flops += bn_affine * (128 * pool ** 2 + 768 * conv ** 2)
        params += c_p * num_classes + num_classes
        flops += c_p * num_classes + (0 if tw else num_classes)
        if tw:  # tensorwatch's adaptive pooling counts (size + 1)^2 per output channel
            flops += c_p * (size_p + 1) ** 2
        self.fixed_params = params
        self.fixed_flops = flops
        self._edge_params: dict[tuple[str, int, str], int] = {}
        self._edge_flops: dict[tuple[str, int, str], int] = {}

    def edge_params(self, cell: str, source: int, op: str) -> int:
        key = (cell, source, op)
        if key not in self._edge_params:
            self._edge_params[key] = sum(_op_params(op, c, kind == "reduce" and source < 2, self.search_ops)
                                         for kind, c, _, _ in self.cells if kind == cell)
        return self._edge_params[key]

    def edge_flops(self, cell: str, source: int, op: str) -> int:
        key = (cell, source, op)
        if key not in self._edge_flops:
            total = 0
            for kind, c, size_in, size_out in self.cells:
                if kind == cell:
                    stride2 = kind == "reduce" and source < 2
                    total += _op_flops(op, c, size_out, stride2)
                    if self.elementwise:
                        total += _op_elementwise(op, c, size_in if stride2 else size_out, size_out, stride2,
                                                 self.search_ops)
            self._edge_flops[key] = total
        return self._edge_flops[key]


def _down(size: int) -> int:
    """Output size of a stride-2 op with 'same' padding."""
    return (size + 1) // 2


def _op_params(op: str, c: int, stride2: bool, search_ops: bool) -> int:
    bn = 0 if search_ops else 2 * c
    if op in _KERNEL:
        k = _KERNEL[op]
        block = k * k * c + c * c + bn  # depthwise kxk + pointwise 1x1 + BN
        return 2 * block if op.startswith("sep") else block
    if op == "skip_connect" and stride2:
        return 2 * c * (c // 2) + bn  # FactorizedReduce: two 1x1 convs to c/2 each + BN
    return 0


def _op_flops(op: str, c: int, size_out: int, stride2: bool) -> int:
    out = size_out * size_out
    if op in _KERNEL:
        k = _KERNEL[op]
        block = out * (k * k * c + c * c)
        return 2 * block if op.startswith("sep") else block
    if op in _POOLS:
        return out * c * 9
    if op == "skip_connect" and stride2:
        return 2 * out * c * (c // 2)
    return 0


def _op_elementwise(op: str, c: int, size_in: int, size_out: int, stride2: bool, search_ops: bool) -> int:
    """tensorwatch's count of an op's ReLUs (per input element) and BNs (per element, x2 when affine)."""
    inp, out = c * size_in ** 2, c * size_out ** 2
    bn = out if search_ops else 2 * out
    if op.startswith("sep"):
        return inp + bn + out + bn
    if op.startswith("dil") or (op == "skip_connect" and stride2):
        return inp + bn
    if op in _POOLS and search_ops:
        return out  # the search cell's BN(affine=False) after a pool
    return 0


def _network(C: int = 36, layers: int = 20, num_classes: int = 10, auxiliary: bool = False, in_channels: int = 3,
             stem_multiplier: int = 3, image_size: int = 32, search_ops: bool = False,
             counter: str = "macs") -> _Network:
    return _Network(C, layers, num_classes, auxiliary, in_channels, stem_multiplier, image_size, search_ops,
                    counter)

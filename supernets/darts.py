"""DARTS search supernet and the DARTS evaluation network that `nas train` trains (`eval_network`).

Macro structure of DARTS's search network: stem conv 3x3 (in_channels -> stem_multiplier*C, no bias) + affine
BN; `layers` cells with reductions (channels doubled) at layers//3 and 2*layers//3; every cell preprocesses its
two inputs (FactorizedReduce after a reduction cell, else ReLU-conv1x1-BN; ReLU-conv1x1-BN for the second),
computes nodes 2..5 and concatenates them; global average pooling and a linear classifier. Each of the 14 edges
of a cell holds every op of PRIMITIVES but `none`; pools are followed by a non-affine BN (DARTS's MixedOp);
ops on edges from the cell inputs of a reduction cell have stride 2 (skip_connect is then FactorizedReduce).
Every BN inside the cells (ops and preprocessing) follows the build's `affine` flag and BN mode.

Execution modes (specs/ALGORITHMS.md §0.3):
- `forward(x, arch)` with a discrete `Arch`: each node sums its two chosen (input, op) pairs; only those ops
  run. Plans are cached per cell and genotype half.
- `forward(x, ArchWeights(weights))`, `weights` of shape `[28, 8]` (`RELAXED_ROWS` x `PRIMITIVES`, the layout
  of `DartsSpace.relaxation()`), in the build's `mode` (`supernets.mixed`): with `mix` every node sums the
  weighted outputs of all candidates of all its incoming edges (`none` adds nothing; entries the space's
  `relaxation_mask()` forbids are skipped); with `entangle` (TangleNAS, §3.3) each edge runs one separable conv
  with the superposed 5x5 depthwise kernels `a_3 * Pad(W[.., 1:4, 1:4]) + a_5 * W` (both depthwise convs; the
  pointwise convs are shared whole), one dilated conv likewise (dilation 2, padding 4), and adds the pools and
  the skip as in `mix`. With `ArchWeights.hard` (28 chosen column indices, GDAS) only the chosen op of each edge
  runs (in `entangle`, its group's superposed op) and the other weights of the row are added as scalars so that
  they still get a gradient.
- In the `entangle` build the 3x3 separable and dilated candidates have no weights of their own on any path: they
  are the centre taps of the 5x5 candidates' kernels, also in `choice_slices()` and in the exported child.

Export: the child (`DartsNetwork` with `search_ops=True`) has the search cell's ops (pool + BN, cell BN with the
supernet's `affine`) but affine BN in the preprocessing. That is the network `DartsSpace.params(...,
search_ops=True)` counts, i.e. NAS-Bench-301's training network; DARTS's search network has non-affine
preprocessing BN instead (when the supernet was built with `affine=False`), and the child's extra BN weights
start at 1 and biases at 0, so the child computes exactly what the supernet computes for that arch.

Ownership of parameters: a candidate module (edge `3<-1`, `sep_conv_3x3`) is not owned by a single discrete
decision, since `normal.n3.op0` and `normal.n3.op1` each pick the op of whichever input `normal.n3.in0/in1`
selects. `parameter_registry()` keys each op's parameters by cell, edge and op
(`ChoiceKey("cell", 4, "normal:3<-1", "sep_conv_3x3")`); `choice_parameters()` maps `(op_label, op)` (both
slots of a node) to the parameters of that op on every edge into that node in every cell of that type, so a
per-candidate gradient norm sees the op's gradient wherever it ran. Input decisions own no parameters.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from searchspaces import Arch, Space
from searchspaces.darts import CELLS, EDGES, NODES, PRIMITIVES
from searchspaces.options import Between, Help

from .base import ArchWeights, ChoiceKey, ChoiceSlices, Supernet
from .bn import check_mode, make_bn
from .build_options import Affine, BNMode, MixMode, ScaleByMass
from .darts_ops import (
    ENTANGLED_GROUPS,
    CellPlan,
    DartsNetwork,
    cell_layout,
    make_entangled_op,
    make_op,
    make_preprocess,
    run_cell,
)
from .mixed import MixedOp, Policy, combine, policy
from .registry import register_supernet

# Rows of a relaxed DARTS arch: the 14 edges of the normal cell, then those of the reduce cell.
RELAXED_ROWS: tuple[tuple[str, str], ...] = tuple((cell, f"{t}<-{s}") for cell in CELLS for t, s in EDGES)
RELAXED_SHAPE: tuple[int, int] = (len(RELAXED_ROWS), len(PRIMITIVES))
_PLAN_CACHE = 1024  # plans kept per cell (a plan is 8 (input, module) pairs, cheap to rebuild)


def relaxed_row(cell: str, edge: str) -> int:
    """Row of `(cell, "t<-s")` in a relaxed weight matrix (`RELAXED_ROWS`)."""
    return RELAXED_ROWS.index((cell, edge))


def onehot_weights(space: Space, arch: Arch) -> torch.Tensor:
    """`[28, 8]` weights of a genotype as a tensor (`DartsSpace.onehot`); `mix` mode with these weights computes what
    `forward(x, arch)` computes."""
    return torch.as_tensor(space.onehot(arch)[0], dtype=torch.float32)


class SearchCell(nn.Module):
    """A DARTS search cell: preprocessing plus the candidates (but `none`) of each of the 14 edges as a `MixedOp`;
    with `entangle`, each group of `ENTANGLED_GROUPS` is one shared module under its largest candidate's name."""

    def __init__(self, kind: str, c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool, bn_mode: str,
                 entangle: bool = False):
        super().__init__()
        self.kind = kind
        self.preprocess0, self.preprocess1 = make_preprocess(c_pp, c_p, c, reduction_prev, affine, bn_mode)
        self.edges = nn.ModuleDict()
        members = {op: (key, k) for key, group in ENTANGLED_GROUPS.items() for op, k in group.items()}
        for t, s in EDGES:
            stride = 2 if kind == "reduce" and s < 2 else 1
            modules: dict[str, nn.Module] = {}
            for op in PRIMITIVES:
                if entangle and op in members:
                    if op in ENTANGLED_GROUPS:
                        modules[op] = make_entangled_op(op, c, stride, affine, bn_mode)
                    continue
                module = make_op(op, c, stride, affine, bn_mode, search_ops=True)
                if module is not None:
                    modules[op] = module
            self.edges[f"{t}<-{s}"] = MixedOp(PRIMITIVES, modules, members if entangle else None)
        self._plans: dict[tuple[Hashable, ...], CellPlan] = {}

    def plan(self, block: tuple[Hashable, ...]) -> CellPlan:
        """The plan of this cell's half of an arch's choices (`in0, op0, in1, op1` per node)."""
        cached = self._plans.get(block)
        if cached is None:
            if len(self._plans) >= _PLAN_CACHE:  # random sampling rarely repeats a genotype half: keep it bounded
                self._plans.clear()
            cached = tuple(
                tuple((src, self.edges[f"{node}<-{src}"].path(op)) for src, op in
                      ((block[4 * k], block[4 * k + 1]), (block[4 * k + 2], block[4 * k + 3])))
                for k, node in enumerate(NODES)
            )
            self._plans[block] = cached
        return cached

    def single(self, s0: torch.Tensor, s1: torch.Tensor, block: tuple[Hashable, ...]) -> torch.Tensor:
        return run_cell(self.preprocess0(s0), self.preprocess1(s1), self.plan(block))

    def relaxed(self, s0: torch.Tensor, s1: torch.Tensor, w: torch.Tensor, hard: Sequence[int] | None,
                allowed: Sequence[Sequence[int]], policy: Policy) -> torch.Tensor:
        """A relaxed arch over this cell's 14 rows `w` under `policy` (see the module docstring); `hard` holds this
        cell's 14 chosen columns (GDAS), `allowed` the columns to run per row (no `none`, no masked entry)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in NODES:
            out, scalar = combine(
                policy(self.edges[f"{t}<-{s}"], states[s], w, row, allowed[row], None if hard is None else hard[row])
                for row, (t, s) in enumerate(EDGES) if t == node
            )
            if out is None:  # nothing ran (all `none`): a zero node of the right shape
                out = states[1].new_zeros(_node_shape(states[1], self.kind == "reduce"))
            states.append(out if scalar is None else out + scalar)
        return torch.cat(states[2:], dim=1)


def _node_shape(s1: torch.Tensor, reduction: bool) -> tuple[int, ...]:
    n, c, h, w = s1.shape
    return (n, c, (h + 1) // 2, (w + 1) // 2) if reduction else (n, c, h, w)


_EDGE_KEY = re.compile(r"^cells\.(\d+)\.edges\.([0-9]<-[0-9])\.([a-z_0-9]+)\.")
_CHILD_OP_KEY = re.compile(r"^cells\.(\d+)\.ops\.(\d+)\.(.*)$")


# The build options of DartsSupernet besides those of supernets.build_options (`cell_layout` needs C >= 2 and
# layers >= 3: two reduction cells).
Channels = Annotated[int, Between(2), Help("channels of the first cells; doubled at each reduction cell")]
Layers = Annotated[int, Between(3), Help("cells of the search network, reduction cells at layers//3 and 2*layers//3")]
StemMultiplier = Annotated[int, Between(1), Help("the stem's output channels are stem_multiplier * C")]


class DartsSupernet(Supernet):
    """Weight-sharing DARTS search network: `net(x, arch)` runs one genotype, `net(x, ArchWeights)` a relaxed arch
    in the build's `mode`: `mix` (separate weights, weighted sum of outputs) or `entangle` (TangleNAS: sep_conv_3x3
    and dil_conv_3x3 are the centre taps of the 5x5 candidates, on every path, and a relaxed edge runs one
    superposed op per group; `scale_group_by_mass` multiplies a group's output by its total weight)."""

    space_name = "darts"
    modes = ("single", "mix", "hard")
    relaxations = ("mix", "entangle")

    def __init__(self, space: Space, num_classes: int = 10, C: Channels = 16, layers: Layers = 8, in_channels: int = 3,
                 bn_mode: BNMode = "batch", affine: Affine = False, stem_multiplier: StemMultiplier = 3,
                 mode: MixMode = "mix", scale_group_by_mass: ScaleByMass = False):
        super().__init__()
        self._check_space(space)
        check_mode(bn_mode)
        self.space = space
        self.mode, self.policy = mode, policy(mode, scale_group_by_mass)
        self.num_classes, self.C, self.layers, self.in_channels = num_classes, C, layers, in_channels
        self.bn_mode, self.affine, self.stem_multiplier = bn_mode, affine, stem_multiplier
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
                                  make_bn(c_stem, True, bn_mode))
        self.cells = nn.ModuleList()
        c_out = c_stem
        for c_pp, c_p, c, reduction, reduction_prev in cell_layout(C, layers, stem_multiplier):
            self.cells.append(SearchCell("reduce" if reduction else "normal", c_pp, c_p, c, reduction_prev, affine,
                                         bn_mode, entangle=mode == "entangle"))
            c_out = 4 * c
        self.classifier = nn.Linear(c_out, num_classes)
        self._set_mask()

    def _set_mask(self) -> None:
        mask = np.asarray(self.space.relaxation_mask(), dtype=bool)
        self._allowed = [tuple(k for k in range(1, len(PRIMITIVES)) if mask[r, k]) for r in range(len(RELAXED_ROWS))]

    def build_options(self) -> dict:
        return dict(num_classes=self.num_classes, C=self.C, layers=self.layers, in_channels=self.in_channels,
                    bn_mode=self.bn_mode, affine=self.affine, stem_multiplier=self.stem_multiplier)

    def export_costs(self) -> dict | None:
        """The child is NAS-Bench-301's training network (`search_ops`) at this supernet's size; the space counts it
        with non-affine cell BN only, so an affine supernet's child has no count."""
        if self.affine:
            return None
        return dict(C=self.C, layers=self.layers, stem_multiplier=self.stem_multiplier, search_ops=True)

    def forward(self, x: torch.Tensor, arch: Arch | ArchWeights) -> torch.Tensor:
        """The single path of an `Arch`, or a relaxed arch (`ArchWeights`, `[28, 8]`, see RELAXED_ROWS) in the build's
        mode."""
        s0 = s1 = self.stem(x)
        n = len(EDGES)
        if isinstance(arch, ArchWeights):
            w = arch.weights
            if tuple(w.shape) != RELAXED_SHAPE:
                raise ValueError(f"DARTS arch weights have shape {RELAXED_SHAPE} (14 normal then 14 reduce edges x "
                                 f"{len(PRIMITIVES)} ops), got {tuple(w.shape)}")
            if arch.hard is not None and len(arch.hard) != n * 2:
                raise ValueError(f"DARTS hard weights need {2 * n} chosen indices, got {len(arch.hard)}")
            for cell in self.cells:
                off = n if cell.kind == "reduce" else 0
                hard = None if arch.hard is None else arch.hard[off: off + n]
                s0, s1 = s1, cell.relaxed(s0, s1, w[off: off + n], hard, self._allowed[off: off + n], self.policy)
        else:
            choices = arch.choices
            half = len(choices) // 2
            blocks = {"normal": tuple(choices[:half]), "reduce": tuple(choices[half:])}
            for cell in self.cells:
                s0, s1 = s1, cell.single(s0, s1, blocks[cell.kind])
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))

    fixed_cell_scope = "preprocess"

    def _edge_label(self, cell_index: int, edge: str) -> str:
        return f"{self.cells[cell_index].kind}:{edge}"

    def choice_parameters(self) -> dict[tuple[str, Hashable], list[nn.Parameter]]:
        """`(op_label, op) -> parameters of op on every edge into that node` (both op slots of the node share
        them; see the module docstring). Input decisions and parameter-free ops map to empty lists."""
        out: dict[tuple[str, Hashable], list[nn.Parameter]] = {
            (d.label, c): [] for d in self.space.decisions for c in d.candidates
        }
        for key, _, p in self.parameter_registry():
            if key.label is None:
                continue
            cell, edge = key.label.split(":")
            node = edge.split("<-")[0]
            for choice in self._choice_users(key):
                for j in (0, 1):
                    out[(f"{cell}.n{node}.op{j}", choice)].append(p)
        return out

    def _choice_users(self, key: ChoiceKey) -> tuple[Hashable, ...]:
        """In the `entangle` build a group's module (`sep_conv_5x5`, `dil_conv_5x5`) serves its 3x3 member too."""
        if key.scope != "cell":
            return (key.choice,)
        return self.cells[key.index].edges[key.label.split(":")[1]].users(key.choice)

    def choice_slices(self) -> ChoiceSlices:
        """Whole parameters per candidate (`mix` build); in the `entangle` build a 3x3 member of a group trains the
        centre taps of the shared depthwise kernels and the shared pointwise convs and BNs, a part of what its 5x5
        partner trains (slices overlap: §0.4). Mapped to both op slots of a node, as `choice_parameters()`."""
        if self.mode != "entangle":
            return super().choice_slices()
        out: ChoiceSlices = {(d.label, c): [] for d in self.space.decisions for c in d.candidates}
        for cell in self.cells:
            for edge, mixed in cell.edges.items():
                node = edge.split("<-")[0]
                for choice in mixed.choices:
                    parts = mixed.slice_index(choice)
                    for j in (0, 1):
                        if parts:  # `none` is no op decision's candidate
                            out[(f"{cell.kind}.n{node}.op{j}", choice)] += parts
        return out

    def export(self, arch: Arch, inherit: bool = True) -> DartsNetwork:
        """The standalone child of `arch` (search-cell ops, see the module docstring) with this supernet's weights
        and BN statistics when `inherit`."""
        if not self.space.root.contains(arch):
            raise ValueError(f"{arch!r} is not an arch of this supernet's space")
        genotype = self.space.genotype(arch)
        ref = next(self.parameters())
        child = DartsNetwork(genotype, num_classes=self.num_classes, C=self.C, layers=self.layers,
                             in_channels=self.in_channels, stem_multiplier=self.stem_multiplier, auxiliary=False,
                             search_ops=True, affine=self.affine, bn_mode=self.bn_mode)
        child = child.to(device=ref.device, dtype=ref.dtype)
        if inherit:
            source = self.state_dict()
            state = child.state_dict()
            sliced: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
            for key in state:
                m = _CHILD_OP_KEY.match(key)
                if m:
                    index, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
                    op, src = genotype[self.cells[index].kind][j]
                    edge = f"{NODES[j // 2]}<-{src}"
                    mixed = self.cells[index].edges[edge]
                    if op in mixed.slices:  # entangle build: the op's slice of its group's module
                        owner, spec = mixed.slices[op]
                        if (index, j) not in sliced:
                            sliced[(index, j)] = mixed[owner].slice_state(spec)
                        state[key] = sliced[(index, j)][rest]
                        continue
                    key_in = f"cells.{index}.edges.{edge}.{op}.{rest}"
                else:
                    key_in = key
                if key_in in source:  # preprocessing BN weights exist only in an affine supernet
                    state[key] = source[key_in].clone()
            child.load_state_dict(state)
        child.train(self.training)
        return child

    def _on_space_change(self) -> None:
        for cell in self.cells:
            cell._plans = {}
        self._set_mask()


def eval_network(arch: Arch, C: int | None = None, layers: int | None = None, num_classes: int = 10,
                 auxiliary: bool = True, in_channels: int = 3, drop_path: float = 0.0) -> DartsNetwork:
    """The network `nas train` trains for a DARTS genotype: DARTS's CIFAR evaluation network (`NetworkCIFAR`; C=36,
    layers=20 unless given), affine BN with running statistics, auxiliary head after cell 2*layers//3 when
    `auxiliary`, drop-path probability `drop_path` (the `drop_path_prob` attribute, settable per epoch)."""
    space = arch.space
    return DartsNetwork(space.genotype(arch), num_classes=num_classes, C=36 if C is None else C,
                        layers=20 if layers is None else layers, in_channels=in_channels, auxiliary=auxiliary,
                        drop_path_prob=drop_path, search_ops=False, affine=True, bn_mode="running")


register_supernet(
    DartsSupernet, eval_network=eval_network,
    # DARTS's CIFAR recipe: C=36, 20 layers, auxiliary tower weight 0.4, drop-path 0.2 growing linearly over the
    # epochs, cutout 16, 600 epochs, SGD 0.025 cosine to 0, momentum 0.9, weight decay 3e-4, batch 96, clip 5
    final_recipe=dict(epochs=600, batch_size=96, lr=0.025, lr_min=0.0, momentum=0.9, nesterov=False,
                      weight_decay=3e-4, grad_clip=5.0, C=36, layers=20, auxiliary_weight=0.4, drop_path=0.2,
                      cutout=16),
    smoke={"C": 4, "layers": 3},
)

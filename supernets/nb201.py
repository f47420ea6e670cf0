"""NAS-Bench-201 supernet and its standalone child network.

Macro structure (NATS-Bench `TinyNetwork`): stem conv 3x3 + BN; three stages of N search cells at C, 2C, 4C
channels joined by two ResNet basic blocks with stride 2; final BN + ReLU, global average pooling, linear
classifier. All 15 search cells share one genotype. Every BatchNorm follows the build's `affine` flag and BN
mode; convolutions inside ReLU-Conv-BN carry a bias exactly when BN is not affine (`bias = not affine`, as in
the benchmark code). With `affine=True` the child's parameter count equals the benchmark's.

The supernet and the child run a cell through the same function (`_run_cell`), so an exported child computes
what the supernet computes for that arch, and the step-time benchmark compares like with like.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Annotated, Any

import torch
from torch import nn

from searchspaces import Arch, Space
from searchspaces.nb201 import EDGE_LABELS, EDGES, OPS
from searchspaces.options import Between, Help

from .base import ArchWeights, ChoiceKey, ChoiceSlices, Supernet
from .bn import check_mode, make_bn
from .build_options import Affine, BNMode, MixMode, ScaleByMass
from .elastic import SlicedKernels
from .mixed import MixedOp, Policy, allowed_columns, combine, policy
from .registry import register_supernet


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (bias iff BN is not affine) -> BN, the NB201 conv op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool, bn_mode: str):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=not affine),
            make_bn(c_out, affine, bn_mode),
        )


class ResNetBasicBlock(nn.Module):
    """The fixed reduction block between stages: two ReLU-Conv-BN plus an avg-pool + 1x1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int, affine: bool, bn_mode: str):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, affine, bn_mode)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, affine, bn_mode)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def make_op(op: str, channels: int, affine: bool, bn_mode: str) -> nn.Module | None:
    """One candidate op of a cell edge (stride 1, same width); `none` has no module."""
    if op == "none":
        return None
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, affine, bn_mode)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, affine, bn_mode)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {op!r}; accepted: {', '.join(OPS)}")


# A cell plan: for nodes 1..3, the (source node, op module) pairs of its non-`none` input edges, or None for a
# node whose value cannot reach the cell output (it is not computed: outputs and gradients are the same).
CellPlan = tuple[tuple[tuple[int, Callable[[torch.Tensor], torch.Tensor]], ...] | None, ...]


def _run_cell(x: torch.Tensor, plan: CellPlan) -> torch.Tensor:
    nodes: list[torch.Tensor | None] = [x]
    for inputs in plan:
        if inputs is None:
            nodes.append(None)
            continue
        if not inputs:  # every input edge is `none`: the node is zero, as the benchmark's Zero op gives
            nodes.append(torch.zeros_like(x))
            continue
        (src, op), *rest = inputs
        out = op(nodes[src])
        for src, op in rest:
            out = out + op(nodes[src])
        nodes.append(out)
    return nodes[-1]


def _plan(ops: Sequence[Callable[[torch.Tensor], torch.Tensor] | None]) -> CellPlan:
    """Group the 6 edge modules (benchmark edge order, None for `none`) by target node, skipping dead nodes."""
    useful = {3}
    for target in (3, 2, 1):  # a node matters if a live edge carries it to a node that matters
        if target in useful:
            useful.update(s for i, (t, s) in enumerate(EDGES) if t == target and ops[i] is not None)
    return tuple(
        tuple((s, ops[i]) for i, (t, s) in enumerate(EDGES) if t == target and ops[i] is not None)
        if target in useful else None
        for target in (1, 2, 3)
    )


class EntangledReLUConvBN(SlicedKernels, ReLUConvBN):
    """The conv group {nor_conv_1x1, nor_conv_3x3} of the `entangle` build: one 3x3 kernel, `nor_conv_1x1` its centre
    tap (`W[:, :, 1:2, 1:2]`), the conv bias and the BN shared and not weighted (TangleNAS,
    specs/ALGORITHMS.md §3.3). Superposed: `W_mix = a_3x3 * W + a_1x1 * Pad(W[:, :, 1:2, 1:2])`, one 3x3 conv."""

    sliced = (1,)


# The entangled group of the NB201 ops: candidate -> kernel size (its slice of the 3x3 kernel).
CONV_GROUP: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


class SearchCell(nn.Module):
    """A cell holding the candidates of every edge as a `MixedOp`; `plan(arch)` picks one op per edge.

    With `entangle`, the two convs of an edge are one `EntangledReLUConvBN` under the key `nor_conv_3x3` (the
    owner of the full kernel) and `nor_conv_1x1` is its centre tap; otherwise every conv has its own weights."""

    def __init__(self, channels: int, affine: bool, bn_mode: str, entangle: bool = False):
        super().__init__()
        self.edges = nn.ModuleDict()
        for label in EDGE_LABELS:
            modules: dict[str, nn.Module] = {}
            for op in OPS:
                if entangle and op in CONV_GROUP:
                    if op == "nor_conv_3x3":
                        modules[op] = EntangledReLUConvBN(channels, channels, 3, 1, affine, bn_mode)
                    continue
                module = make_op(op, channels, affine, bn_mode)
                if module is not None:
                    modules[op] = module
            slices = {op: ("nor_conv_3x3", k) for op, k in CONV_GROUP.items()} if entangle else None
            self.edges[label] = MixedOp(OPS, modules, slices)
        self._plans: dict[tuple[Hashable, ...], CellPlan] = {}

    def relaxed(self, x: torch.Tensor, w: torch.Tensor, hard: Sequence[int] | None,
                allowed: Sequence[Sequence[int]], policy: Policy) -> torch.Tensor:
        """A relaxed arch (`w[edge, op]`) under `policy` (`mix` or `entangle`): each node sums the terms of its
        incoming edges, then the zero-valued scalars of the weights that did not run (`hard`, GDAS); a node whose
        edges add nothing is zero, as the benchmark's Zero op gives."""
        nodes = [x]
        for target in (1, 2, 3):
            out, scalar = combine(
                policy(self.edges[EDGE_LABELS[i]], nodes[s], w, i, allowed[i], None if hard is None else hard[i])
                for i, (t, s) in enumerate(EDGES) if t == target
            )
            if out is None:
                out = torch.zeros_like(x)
            nodes.append(out if scalar is None else out + scalar)
        return nodes[-1]

    def plan(self, choices: tuple[Hashable, ...]) -> CellPlan:
        cached = self._plans.get(choices)
        if cached is None:  # at most 15,625 plans of a few tuples each
            cached = _plan([self.edges[label].path(op) for label, op in zip(EDGE_LABELS, choices)])
            self._plans[choices] = cached
        return cached


class InferCell(nn.Module):
    """A cell of one fixed genotype (the standalone child's cell)."""

    def __init__(self, choices: Sequence[Hashable], channels: int, affine: bool, bn_mode: str):
        super().__init__()
        self.edges = nn.ModuleDict()
        for label, op in zip(EDGE_LABELS, choices):
            module = make_op(op, channels, affine, bn_mode)
            if module is not None:
                self.edges[label] = module
        self._plan = _plan([self.edges[label] if op != "none" else None for label, op in zip(EDGE_LABELS, choices)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_cell(x, self._plan)


def _stage_layout(C: int, N: int) -> list[tuple[int, int, bool]]:
    """(input width, output width, is_reduction) of the 3N+2 layers between stem and head."""
    layout: list[tuple[int, int, bool]] = []
    c_prev = C
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage > 0:
            layout.append((c_prev, width, True))
        layout.extend((width, width, False) for _ in range(N))
        c_prev = width
    return layout


class _NB201Body(nn.Module):
    """Stem, head and reduction blocks shared by the supernet and the child."""

    def __init__(self, num_classes: int, C: int, N: int, in_channels: int, affine: bool, bn_mode: str):
        super().__init__()
        check_mode(bn_mode)
        self.num_classes, self.C, self.N, self.in_channels = num_classes, C, N, in_channels
        self.affine, self.bn_mode = affine, bn_mode
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, kernel_size=3, padding=1, bias=False), make_bn(C, affine, bn_mode)
        )
        self.cells = nn.ModuleList()
        for c_in, c_out, reduction in _stage_layout(C, N):
            self.cells.append(
                ResNetBasicBlock(c_in, c_out, affine, bn_mode) if reduction else self._make_cell(c_out)
            )
        self.lastact = nn.Sequential(make_bn(4 * C, affine, bn_mode), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(4 * C, num_classes)

    def _make_cell(self, channels: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def build_options(self) -> dict:
        return dict(num_classes=self.num_classes, C=self.C, N=self.N, in_channels=self.in_channels,
                    affine=self.affine, bn_mode=self.bn_mode)


class NB201Network(_NB201Body):
    """The standalone network of one NB201 arch (the benchmark's `TinyNetwork` with an `InferCell` genotype)."""

    def __init__(self, arch: Arch, num_classes: int = 10, C: int = 16, N: int = 5, in_channels: int = 3,
                 affine: bool = True, bn_mode: str = "running"):
        self.arch = arch
        super().__init__(num_classes, C, N, in_channels, affine, bn_mode)

    def _make_cell(self, channels: int) -> nn.Module:
        return InferCell(self.arch.choices, channels, self.affine, self.bn_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self._head(x)


_EDGE_KEY = re.compile(r"^(cells\.(\d+)\.edges\.)([0-9]<-[0-9])\.(.*)$")


# The build options of NB201Supernet besides those of supernets.build_options (what a config accepts).
Channels = Annotated[int, Between(1), Help("channels of the first stage; the stages run C, 2C, 4C")]
Cells = Annotated[int, Between(1), Help("search cells per stage")]


class NB201Supernet(_NB201Body, Supernet):
    """Weight-sharing NB201 supernet: `net(x, arch)` runs the single path of `arch` in every search cell, and
    `net(x, ArchWeights)` a relaxed arch in the build's `mode` (specs/ALGORITHMS.md §0.3):

    - `mix` (default): every candidate has its own weights; a relaxed edge is the weighted sum of its candidates'
      outputs;
    - `entangle` (TangleNAS, §3.3): `nor_conv_1x1` is the centre tap of `nor_conv_3x3`'s kernel (also on a single
      path and in the exported child), and a relaxed edge runs ONE 3x3 conv with the superposed kernel
      `a_3x3 * W + a_1x1 * Pad(W[:, :, 1:2, 1:2])`, plus skip and pool mixed at the output; with
      `scale_group_by_mass` the conv's output is multiplied by `a_1x1 + a_3x3` (§3.5 item 2).
    """

    space_name = "nb201"
    modes = ("single", "mix", "hard")
    relaxations = ("mix", "entangle")

    def __init__(self, space: Space, num_classes: int = 10, C: Channels = 16, N: Cells = 5, in_channels: int = 3,
                 affine: Affine = False, bn_mode: BNMode = "batch", mode: MixMode = "mix",
                 scale_group_by_mass: ScaleByMass = False):
        self._check_space(space)
        self.space = space
        self.mode, self.policy = mode, policy(mode, scale_group_by_mass)
        super().__init__(num_classes, C, N, in_channels, affine, bn_mode)
        self._set_mask()

    def _make_cell(self, channels: int) -> nn.Module:
        return SearchCell(channels, self.affine, self.bn_mode, entangle=self.mode == "entangle")

    def export_costs(self) -> dict:
        """The child is the benchmark's network at this supernet's C, N and BN affinity."""
        return dict(C=self.C, N=self.N, affine=self.affine)

    def _set_mask(self) -> None:
        self._allowed = allowed_columns(self.space.allowed, [OPS] * len(EDGES))

    def _on_space_change(self) -> None:
        self._set_mask()

    def forward(self, x: torch.Tensor, arch: Arch | ArchWeights) -> torch.Tensor:
        """The single path of an `Arch`, or a relaxed arch (`ArchWeights`, [6 edges, 5 ops]) in the build's mode."""
        x = self.stem(x)
        if isinstance(arch, ArchWeights):
            if tuple(arch.weights.shape) != (len(EDGES), len(OPS)):
                raise ValueError(f"NB201 arch weights have shape (6, 5), got {tuple(arch.weights.shape)}")
            for cell in self.cells:
                x = (cell.relaxed(x, arch.weights, arch.hard, self._allowed, self.policy)
                     if isinstance(cell, SearchCell) else cell(x))
            return self._head(x)
        choices = arch.choices
        for cell in self.cells:
            x = _run_cell(x, cell.plan(choices)) if isinstance(cell, SearchCell) else cell(x)
        return self._head(x)

    fixed_cell_scope = "reduction"

    def _choice_users(self, key: ChoiceKey) -> tuple[Hashable, ...]:
        """In the `entangle` build the conv under `nor_conv_3x3` serves `nor_conv_1x1` too."""
        if key.scope != "cell":
            return (key.choice,)
        return self.cells[key.index].edges[key.label].users(key.choice)

    def choice_slices(self) -> ChoiceSlices:
        """Whole parameters per candidate (`mix` build); in the `entangle` build `nor_conv_1x1` trains the centre tap
        of the shared kernel (and the shared bias and BN), a part of what `nor_conv_3x3` trains (§0.4: per-candidate
        gradients of entangled weights overlap)."""
        if self.mode != "entangle":
            return super().choice_slices()
        out: ChoiceSlices = {(d.label, c): [] for d in self.space.decisions for c in d.candidates}
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                for label, mixed in cell.edges.items():
                    for choice in mixed.choices:
                        out[(label, choice)] += mixed.slice_index(choice)
        return out

    def export(self, arch: Arch, inherit: bool = True) -> NB201Network:
        """The standalone child of `arch`, with this supernet's weights (and BN statistics) when `inherit`; in the
        `entangle` build a `nor_conv_1x1` gets the centre tap of the shared 3x3 kernel."""
        if not self.space.root.contains(arch):
            raise ValueError(f"{arch!r} is not an arch of this supernet's space")
        ref = next(self.parameters())
        child = NB201Network(arch, **self.build_options()).to(device=ref.device, dtype=ref.dtype)
        if inherit:
            source = self.state_dict()
            sliced: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
            state = {}
            for key in child.state_dict():
                m = _EDGE_KEY.match(key)
                if m:
                    prefix, index, label, rest = m.groups()
                    mixed = self.cells[int(index)].edges[label]
                    choice = arch[label]
                    if choice in mixed.slices:
                        owner, spec = mixed.slices[choice]
                        if (int(index), label) not in sliced:
                            sliced[(int(index), label)] = mixed[owner].slice_state(spec)
                        state[key] = sliced[(int(index), label)][rest]
                    else:
                        state[key] = source[f"{prefix}{label}.{choice}.{rest}"].clone()
                else:
                    state[key] = source[key].clone()
            child.load_state_dict(state)
        child.train(self.training)
        return child


def eval_network(arch: Arch, C: int | None = None, layers: int | None = None, num_classes: int = 10,
                 auxiliary: bool = True, in_channels: int = 3, drop_path: float = 0.0) -> NB201Network:
    """The network `nas train` trains for an NB201 arch: the benchmark's `NB201Network(arch, num_classes, C=16, N=5,
    affine=True, bn_mode="running")`; `C` and `layers` set its C and N only when given; it has no auxiliary head
    (`auxiliary` is ignored) and no drop-path."""
    if drop_path:
        raise ValueError(f"the NB201 evaluation network has no drop-path; got drop_path={drop_path}")
    return NB201Network(arch, num_classes=num_classes, C=16 if C is None else C, N=5 if layers is None else layers,
                        in_channels=in_channels, affine=True, bn_mode="running")


def _standalone(settings: Mapping[str, Any], image_size: int) -> dict[str, Any]:
    """`nas bench build` trains the benchmark's network: affine BN with running statistics at the settings' C, N."""
    return dict(C=settings["C"], N=settings["N"], affine=True, bn_mode="running")


register_supernet(
    NB201Supernet, standalone=_standalone, eval_network=eval_network,
    # NAS-Bench-201's recipe: C=16, N=5 cells per stage (`layers`), 200 epochs, SGD 0.1 Nesterov cosine to 0,
    # weight decay 5e-4, batch 256, no clipping
    final_recipe=dict(epochs=200, batch_size=256, lr=0.1, lr_min=0.0, momentum=0.9, nesterov=True, weight_decay=5e-4,
                      grad_clip=0.0, C=16, layers=5, auxiliary_weight=0.0, drop_path=0.0, cutout=0),
    smoke={"C": 4, "N": 1},
)

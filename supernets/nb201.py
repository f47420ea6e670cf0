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
from collections.abc import Hashable, Sequence

import torch
from torch import nn

from searchspaces import Arch, Space
from searchspaces.nb201 import EDGE_LABELS, EDGES, OPS

from .base import ArchWeights, Supernet
from .bn import check_mode, make_bn


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
CellPlan = tuple[tuple[tuple[int, nn.Module], ...] | None, ...]


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


def _plan(ops: Sequence[nn.Module | None]) -> CellPlan:
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


class SearchCell(nn.Module):
    """A cell holding every candidate op of every edge; `plan(arch)` picks one op per edge."""

    def __init__(self, channels: int, affine: bool, bn_mode: str):
        super().__init__()
        self.edges = nn.ModuleDict()
        for label in EDGE_LABELS:
            candidates = nn.ModuleDict()
            for op in OPS:
                module = make_op(op, channels, affine, bn_mode)
                if module is not None:
                    candidates[op] = module
            self.edges[label] = candidates
        self._plans: dict[tuple[Hashable, ...], CellPlan] = {}

    def mixed(self, x: torch.Tensor, relaxed: ArchWeights, allowed: Sequence[Sequence[Hashable]]) -> torch.Tensor:
        """The `mix` relaxation: every edge is the weighted sum of its candidates' outputs (`none` adds nothing;
        candidates a mask disallows have weight 0 and are skipped). With `relaxed.hard`, only the chosen candidate
        runs and the others add their zero-valued weights (straight-through, GDAS)."""
        w = relaxed.weights
        nodes = [x]
        for target in (1, 2, 3):
            out = torch.zeros_like(x)
            for i, (t, s) in enumerate(EDGES):
                if t != target:
                    continue
                candidates = self.edges[EDGE_LABELS[i]]
                if relaxed.hard is not None:
                    k = relaxed.hard[i]
                    op = OPS[k]
                    out = out + (w[i, k] * candidates[op](nodes[s]) if op != "none" else w[i, k] * 0.0)
                    out = out + (w[i].sum() - w[i, k])
                    continue
                for k, op in enumerate(OPS):
                    if op != "none" and op in allowed[i]:
                        out = out + w[i, k] * candidates[op](nodes[s])
            nodes.append(out)
        return nodes[-1]

    def plan(self, choices: tuple[Hashable, ...]) -> CellPlan:
        cached = self._plans.get(choices)
        if cached is None:  # at most 15,625 plans of a few tuples each
            cached = _plan([self.edges[label][op] if op != "none" else None for label, op in zip(EDGE_LABELS, choices)])
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


_EDGE_KEY = re.compile(r"^(cells\.\d+\.edges\.)([0-9]<-[0-9])\.(.*)$")


class NB201Supernet(_NB201Body, Supernet):
    """Weight-sharing NB201 supernet: `net(x, arch)` runs the single path of `arch` in every search cell."""

    modes = ("single", "mix", "hard")

    def __init__(self, space: Space, num_classes: int = 10, C: int = 16, N: int = 5, in_channels: int = 3,
                 affine: bool = False, bn_mode: str = "batch"):
        if space.name != "nb201":
            raise ValueError(f"NB201Supernet needs the nb201 space, got {space.name!r}")
        self.space = space
        super().__init__(num_classes, C, N, in_channels, affine, bn_mode)

    def _make_cell(self, channels: int) -> nn.Module:
        return SearchCell(channels, self.affine, self.bn_mode)

    def forward(self, x: torch.Tensor, arch: Arch | ArchWeights) -> torch.Tensor:
        """The single path of an `Arch`, or the `mix` relaxation of `ArchWeights` ([6 edges, 5 ops])."""
        x = self.stem(x)
        if isinstance(arch, ArchWeights):
            if tuple(arch.weights.shape) != (len(EDGES), len(OPS)):
                raise ValueError(f"NB201 arch weights have shape (6, 5), got {tuple(arch.weights.shape)}")
            for cell in self.cells:
                x = cell.mixed(x, arch, self.space.allowed) if isinstance(cell, SearchCell) else cell(x)
            return self._head(x)
        choices = arch.choices
        for cell in self.cells:
            x = _run_cell(x, cell.plan(choices)) if isinstance(cell, SearchCell) else cell(x)
        return self._head(x)

    fixed_cell_scope = "reduction"

    def export(self, arch: Arch, inherit: bool = True) -> NB201Network:
        """The standalone child of `arch`, with this supernet's weights (and BN statistics) when `inherit`."""
        if not self.space.root.contains(arch):
            raise ValueError(f"{arch!r} is not an arch of this supernet's space")
        ref = next(self.parameters())
        child = NB201Network(arch, **self.build_options()).to(device=ref.device, dtype=ref.dtype)
        if inherit:
            source = self.state_dict()
            state = {}
            for key in child.state_dict():
                m = _EDGE_KEY.match(key)
                if m:
                    prefix, label, rest = m.groups()
                    state[key] = source[f"{prefix}{label}.{arch[label]}.{rest}"].clone()
                else:
                    state[key] = source[key].clone()
            child.load_state_dict(state)
        child.train(self.training)
        return child

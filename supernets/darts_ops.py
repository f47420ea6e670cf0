"""Ops, cells and the standalone network of the DARTS space (written from the DARTS paper's description).

`DartsNetwork` is one class for two uses, so that the supernet's exported child and the evaluation network
share every line that computes a cell:

- the evaluation network (`NetworkCIFAR` of the DARTS paper, `search_ops=False`): affine BN in every op,
  pools without BN, optional auxiliary head and drop-path; `supernets.build_eval_network` builds it;
- the exported child of the search supernet (`search_ops=True`): the search cell's ops (BN with the
  supernet's `affine` flag, a non-affine BN after each pool), no auxiliary head, no drop-path. Its parameter
  count is what `DartsSpace.params(..., search_ops=True)` counts (the NAS-Bench-301 training network).

In both, the stem (conv 3x3 + BN) and the cell preprocessing (FactorizedReduce after a reduction cell, else
ReLU-conv1x1-BN) have affine BN, as the analytic counts assume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from searchspaces.darts import CELLS, CONCAT, NODES, PRIMITIVES

from .bn import check_mode, make_bn
from .elastic import SlicedKernels

_KERNEL = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "dil_conv_3x3": 3, "dil_conv_5x5": 5}


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (no bias) -> BN: the cell preprocessing of DARTS."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool, bn_mode: str):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            make_bn(c_out, affine, bn_mode),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: ReLU, two 1x1 stride-2 convs to c_out/2 each on the input and
    on the input shifted by one pixel, concatenated, BN. Odd sizes are padded by one pixel at the bottom/right
    so both halves have the `ceil(size / 2)` of the other stride-2 ops (DARTS only sees even sizes)."""

    def __init__(self, c_in: int, c_out: int, affine: bool, bn_mode: str):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = make_bn(c_out, affine, bn_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        h, w = x.shape[-2:]
        shifted = F.pad(x, (0, w % 2, 0, h % 2))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _dw_pw_bn(c: int, kernel: int, stride: int, dilation: int, affine: bool, bn_mode: str) -> list[nn.Module]:
    """ReLU, depthwise kxk (dilated), pointwise 1x1, BN."""
    return [
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, kernel, stride=stride, padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=c,
                  bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        make_bn(c, affine, bn_mode),
    ]


class SepConv(nn.Sequential):
    """Two stacked ReLU-depthwise-pointwise-BN blocks; only the first has the op's stride."""

    def __init__(self, c: int, kernel: int, stride: int, affine: bool, bn_mode: str):
        super().__init__(*_dw_pw_bn(c, kernel, stride, 1, affine, bn_mode),
                         *_dw_pw_bn(c, kernel, 1, 1, affine, bn_mode))


class DilConv(nn.Sequential):
    """ReLU, depthwise kxk with dilation 2, pointwise 1x1, BN."""

    def __init__(self, c: int, kernel: int, stride: int, affine: bool, bn_mode: str):
        super().__init__(*_dw_pw_bn(c, kernel, stride, 2, affine, bn_mode))


class EntangledSepConv(SlicedKernels, SepConv):
    """The group {sep_conv_3x3, sep_conv_5x5} of the `entangle` build: one SepConv with 5x5 depthwise kernels, the
    3x3 candidate their centre taps in BOTH depthwise convs; pointwise convs and BNs shared whole (TangleNAS,
    specs/ALGORITHMS.md §3.3)."""

    sliced = (1, 5)


class EntangledDilConv(SlicedKernels, DilConv):
    """The group {dil_conv_3x3, dil_conv_5x5} of the `entangle` build: one dilated (2) 5x5 depthwise kernel, padding
    4; the 3x3 candidate is its centre taps at padding 2 (the same sampling positions); pointwise conv and BN
    shared whole."""

    sliced = (1,)


# The entangled groups of the DARTS ops: group module key (its largest candidate) -> {candidate: kernel size}.
ENTANGLED_GROUPS: dict[str, dict[str, int]] = {
    "sep_conv_5x5": {"sep_conv_3x3": 3, "sep_conv_5x5": 5},
    "dil_conv_5x5": {"dil_conv_3x3": 3, "dil_conv_5x5": 5},
}


def make_entangled_op(key: str, c: int, stride: int, affine: bool, bn_mode: str) -> nn.Module:
    """The shared module of an entangled group (`ENTANGLED_GROUPS`), with the largest candidate's kernel."""
    kind = EntangledSepConv if key.startswith("sep_conv") else EntangledDilConv
    return kind(c, _KERNEL[key], stride, affine, bn_mode)


def make_op(op: str, c: int, stride: int, affine: bool, bn_mode: str, search_ops: bool) -> nn.Module | None:
    """One candidate op of a cell edge with `c` channels in and out; `none` has no module.

    `search_ops`: pools are followed by a BN without affine parameters, as in DARTS's search cell.
    """
    if op == "none":
        return None
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        pool = (nn.MaxPool2d(3, stride=stride, padding=1) if op == "max_pool_3x3"
                else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False))
        return nn.Sequential(pool, make_bn(c, False, bn_mode)) if search_ops else pool
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine, bn_mode)
    if op.startswith("sep_conv"):
        return SepConv(c, _KERNEL[op], stride, affine, bn_mode)
    if op.startswith("dil_conv"):
        return DilConv(c, _KERNEL[op], stride, affine, bn_mode)
    raise ValueError(f"unknown DARTS op {op!r}; accepted: {', '.join(PRIMITIVES)}")


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero whole samples with probability `prob` and scale the survivors by 1 / (1 - prob)."""
    keep = 1.0 - prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


# A cell plan: for nodes 2..5, the (source state, op module) pairs summed into the node.
CellPlan = tuple[tuple[tuple[int, Callable[[torch.Tensor], torch.Tensor]], ...], ...]


def run_cell(s0: torch.Tensor, s1: torch.Tensor, plan: CellPlan, drop_prob: float = 0.0) -> torch.Tensor:
    """Nodes 2..5 of a cell from the preprocessed inputs, concatenated. `drop_prob > 0` applies drop-path to
    the output of every non-identity op (DARTS's evaluation cell; the caller passes 0 outside training)."""
    states = [s0, s1]
    for inputs in plan:
        out = None
        for src, op in inputs:
            h = op(states[src])
            if drop_prob > 0.0 and not isinstance(op, nn.Identity):
                h = drop_path(h, drop_prob)
            out = h if out is None else out + h
        states.append(out)
    return torch.cat([states[i] for i in CONCAT], dim=1)


def cell_layout(C: int, layers: int, stem_multiplier: int) -> list[tuple[int, int, int, bool, bool]]:
    """Per cell `(C_prev_prev, C_prev, C, reduction, reduction_prev)`; reductions at layers//3, 2*layers//3."""
    if C < 2 or layers < 3:
        raise ValueError(f"a DARTS network needs C >= 2 and layers >= 3 (two reduction cells), got C={C}, "
                         f"layers={layers}")
    out = []
    c_pp = c_p = stem_multiplier * C
    c = C
    reduction_prev = False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c *= 2
        out.append((c_pp, c_p, c, reduction, reduction_prev))
        c_pp, c_p = c_p, len(CONCAT) * c
        reduction_prev = reduction
    return out


def make_preprocess(c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool,
                    bn_mode: str) -> tuple[nn.Module, nn.Module]:
    """The two input adapters of a cell: s0 (FactorizedReduce after a reduction cell) and s1."""
    pre0 = (FactorizedReduce(c_pp, c, affine, bn_mode) if reduction_prev
            else ReLUConvBN(c_pp, c, 1, 1, affine, bn_mode))
    return pre0, ReLUConvBN(c_p, c, 1, 1, affine, bn_mode)


class InferCell(nn.Module):
    """A cell of one fixed genotype: `pairs` = the 8 (op, input) pairs of its cell type (2 per node)."""

    def __init__(self, pairs: Sequence[tuple[str, int]], c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, affine: bool, bn_mode: str, search_ops: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = make_preprocess(c_pp, c_p, c, reduction_prev, True, bn_mode)
        self.ops = nn.ModuleList(
            make_op(op, c, 2 if reduction and src < 2 else 1, affine, bn_mode, search_ops) for op, src in pairs
        )
        self._plan: CellPlan = tuple(
            tuple((pairs[j][1], self.ops[j]) for j in (2 * k, 2 * k + 1)) for k in range(len(NODES))
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        return run_cell(self.preprocess0(s0), self.preprocess1(s1), self._plan, drop_prob)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary head: ReLU, 5x5 average pooling with stride 3 (8x8 -> 2x2), conv1x1 -> 128, BN,
    ReLU, conv2x2 -> 768, BN, ReLU, linear. It is designed for 8x8 feature maps; for a map on which that
    pooling does not give 2x2 (small inputs such as 8x8 digits, where the map is 2x2), adaptive average pooling
    to 2x2 replaces it, so the head works at any size with the same parameters."""

    def __init__(self, c: int, num_classes: int, bn_mode: str):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(c, 128, 1, bias=False), make_bn(128, True, bn_mode), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), make_bn(768, True, bn_mode), nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        h, w = x.shape[-2:]
        if h >= 5 and w >= 5 and (h - 5) // 3 + 1 == 2 and (w - 5) // 3 + 1 == 2:
            x = self.pool(x)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(torch.flatten(self.features(x), 1))


class DartsNetwork(nn.Module):
    """The standalone network of one DARTS genotype (see the module docstring for the two configurations).

    `forward(x)` returns the logits; in training mode with the auxiliary head it returns `(logits, aux_logits)`.
    `drop_path_prob` (settable per epoch) is the drop-path probability of non-identity ops in training.
    """

    def __init__(self, genotype: dict[str, Sequence[tuple[str, int]]], num_classes: int = 10, C: int = 36,
                 layers: int = 20, in_channels: int = 3, stem_multiplier: int = 3, auxiliary: bool = False,
                 drop_path_prob: float = 0.0, search_ops: bool = False, affine: bool = True,
                 bn_mode: str = "running"):
        super().__init__()
        check_mode(bn_mode)
        self.genotype = {cell: tuple(genotype[cell]) for cell in CELLS}
        self.num_classes, self.C, self.layers = num_classes, C, layers
        self.drop_path_prob = float(drop_path_prob)
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
                                  make_bn(c_stem, True, bn_mode))
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3 if auxiliary else None
        self.auxiliary_head = None
        c_out = c_stem
        for i, (c_pp, c_p, c, reduction, reduction_prev) in enumerate(cell_layout(C, layers, stem_multiplier)):
            pairs = self.genotype["reduce" if reduction else "normal"]
            self.cells.append(InferCell(pairs, c_pp, c_p, c, reduction, reduction_prev, affine, bn_mode, search_ops))
            c_out = len(CONCAT) * c
            if i == self.aux_index:
                self.auxiliary_head = AuxiliaryHead(c_out, num_classes, bn_mode)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        drop = self.drop_path_prob if self.training else 0.0
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop)
            if i == self.aux_index and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))
        return (logits, aux) if aux is not None else logits

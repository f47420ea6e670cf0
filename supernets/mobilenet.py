"""The once-for-all MobileNetV3 supernet: one set of largest weights, every subnet a slice of it.

`net(x, arch)` runs the subnet at its real size (first `d` blocks of a stage, centre-cropped kernels, the
first hidden channels of each block; supernets/elastic.py), so a small subnet costs less than a large one.
`net.export(arch)` builds the standalone network with the sliced weights copied; its parameter count equals
`MobileNetSpace.params`. The layout (widths, strides, SE, activations) comes from
`searchspaces.mobilenet.MobileNetLayout`, so the analytic costs and the network cannot drift apart.

ShiftNAS's joint training (specs/ALGORITHMS.md §4.2) passes an `ArchWeights` whose `hard` names the sampled
subnet and whose `weights` are the straight-through one-hot vectors per decision. The subnet still runs at its
real size; the matrix mapping turns the vectors into masks multiplied into that computation (depth: a gate
on each residual branch; kernel: a `k x k` mask on the depthwise kernel; expand: a mask on the hidden
channels). The masks equal 1 on everything the subnet computes, so the output is the subnet's output, and
the generator receives the straight-through gradient through them. Units the subnet does not compute (deeper
blocks, wider channels, outer kernel taps) get no gradient through the loss; documented in §4.2 of our design
notes (README, ShiftNAS).

Relaxed archs (`ArchWeights` without `hard`, TangleNAS, specs/ALGORITHMS.md §3) run only in the `entangle` build
mode (`supernet.mode=entangle`): every candidate is already a slice of one weight, so there is no separate-weights
`mix` to run, and `entangle` is the default build mode (single and `hard` paths run the same in both); every
block runs once at its largest size with its superposed kernel and hidden width, and a stage's
depth is mixed at its output (`_forward_entangled`). The `hard` path above is the hard variant of that mode in
either build mode (GDAS, ShiftNAS): only the sampled subnet runs, and the masks give every other candidate of a
computed unit its gradient, as the superposed kernel and channel mask would at a one-hot weight.

BN: `affine=True` (once-for-all), statistics tracked unless `bn_mode="batch"`; the default `recalibrate`
re-estimates them per subnet before evaluation (§0.5).

Per-candidate gradients (PA&DA): no parameter belongs to one candidate, so `choice_parameters()` is empty and
`choice_slices()` names each candidate's (overlapping) slices of the shared tensors instead; `active_choices(arch)`
leaves out the placeholder choices of blocks beyond a stage's depth.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping
from typing import Annotated, Any

import torch
from torch import nn

from searchspaces import Arch, Space
from searchspaces.mobilenet import DEPTHS, EXPANDS, KERNELS, MAX_BLOCKS, SCHEDULES, MobileNetLayout
from searchspaces.options import Between, Help, OneOf

from .base import ArchWeights, ChoiceKey, ChoiceSlices, Supernet
from .bn import check_mode
from .build_options import BNMode, MixMode
from .elastic import ElasticMBConv, HSwish, MBConv
from .mixed import MODES
from .registry import register_supernet


def _stem(layout: MobileNetLayout, track: bool) -> nn.Sequential:
    c = layout.stem_width
    return nn.Sequential(
        nn.Conv2d(layout.in_channels, c, 3, stride=layout.stem_stride, padding=1, bias=False),
        nn.BatchNorm2d(c, track_running_stats=track), HSwish(),
    )


def _head(layout: MobileNetLayout, track: bool, dropout: float) -> tuple[nn.Module, nn.Module, nn.Module]:
    last, fe, lc = layout.stages()[-1].width, layout.final_expand_width, layout.last_channel
    final_expand = nn.Sequential(nn.Conv2d(last, fe, 1, bias=False), nn.BatchNorm2d(fe, track_running_stats=track),
                                 HSwish())
    feature_mix = nn.Sequential(nn.Conv2d(fe, lc, 1, bias=False), HSwish())
    classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(lc, layout.num_classes))
    return final_expand, feature_mix, classifier


class MobileNetNetwork(nn.Module):
    """A standalone MobileNetV3 subnet (what `MobileNetSupernet.export` returns)."""

    def __init__(self, stem: nn.Module, first_block: MBConv, blocks: list[MBConv], final_expand: nn.Module,
                 feature_mix: nn.Module, classifier: nn.Module, arch: str):
        super().__init__()
        self.stem, self.first_block = stem, first_block
        self.blocks = nn.Sequential(*blocks)
        self.final_expand, self.feature_mix, self.classifier = final_expand, feature_mix, classifier
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.first_block(self.stem(x)))
        x = self.final_expand(x).mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(self.feature_mix(x), 1))


# The build options of MobileNetSupernet besides those of supernets.build_options.
WidthMult = Annotated[float, Between(0.0, lo_open=True), Help("width multiplier of every layer (OFA: 1.0 or 1.2)")]
Schedule = Annotated[str, OneOf(*SCHEDULES), Help(
    "stride schedule: cifar for inputs up to 64x64, imagenet for 224x224")]
Dropout = Annotated[float, Between(0.0, 1.0, hi_open=True), Help("dropout rate before the classifier")]


class MobileNetSupernet(Supernet):
    """Weight-entangled once-for-all MobileNetV3 over `searchspaces.MobileNetSpace`."""

    space_name = "mobilenet"
    modes = ("single", "mix", "hard")
    relaxations = ("entangle",)

    fixed_cell_scope = "stage_fixed"

    def __init__(self, space: Space, num_classes: int = 10, in_channels: int = 3, width_mult: WidthMult = 1.0,
                 schedule: Schedule = "cifar", bn_mode: BNMode = "recalibrate", dropout: Dropout = 0.1,
                 mode: MixMode = "entangle"):
        super().__init__()
        self._check_space(space)
        if mode not in MODES:
            raise ValueError(f"supernet.mode={mode!r} is not valid; accepted: {', '.join(MODES)}")
        self.space, self.num_classes, self.bn_mode, self.mode = space, num_classes, check_mode(bn_mode), mode
        self.layout = MobileNetLayout(num_classes, in_channels, width_mult=width_mult, schedule=schedule)
        track = bn_mode != "batch"
        self.stem = _stem(self.layout, track)
        c0, c1 = self.layout.stem_width, self.layout.first_block_width
        self.first_block = ElasticMBConv(c0, c1, 3, 1, 1, "relu", False, residual=c0 == c1, fixed_expand=True,
                                         track_running_stats=track)
        stages, c_in = [], c1
        for stage in self.layout.stages():
            blocks = [ElasticMBConv(c_in if b == 0 else stage.width, stage.width, max(KERNELS), max(EXPANDS),
                                    stage.stride if b == 0 else 1, stage.activation, stage.se, residual=b > 0,
                                    track_running_stats=track)
                      for b in range(MAX_BLOCKS)]
            stages.append(nn.ModuleList(blocks))
            c_in = stage.width
        self.stages = nn.ModuleList(stages)
        self.final_expand, self.feature_mix, self.classifier = _head(self.layout, track, dropout)

    def export_costs(self) -> dict:
        """The subnet's costs depend on the width multiplier and the stride schedule of the build."""
        return dict(width_mult=self.layout.width_mult, schedule=self.layout.schedule)

    # --- forward ---------------------------------------------------------------------------------
    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed head after the last stage (final expand, pooling, feature mix, classifier): part of every
        subnet, so a latency table times it once (nas.latency)."""
        x = self.final_expand(x).mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(self.feature_mix(x), 1))

    def forward(self, x: torch.Tensor, arch: Arch | ArchWeights) -> torch.Tensor:
        """The subnet `arch` at its real size; (ArchWeights with `hard`) that subnet with ShiftNAS's masks; (relaxed
        ArchWeights, `supernet.mode=entangle`) the TangleNAS superposition of every block."""
        if isinstance(arch, ArchWeights):
            if arch.hard is None and self.mode == "entangle":
                return self._forward_entangled(x, arch)
            return self._forward_masked(x, arch)
        x = self.first_block(self.stem(x), 3, 1)
        for stage, blocks in zip(self.stages, self.space.blocks(arch)):
            for block, (kernel, expand) in zip(stage, blocks):
                x = block(x, kernel, expand)
        return self.forward_head(x)

    def _forward_entangled(self, x: torch.Tensor, aw: ArchWeights) -> torch.Tensor:
        """TangleNAS on the elastic blocks (`entangle`, specs/ALGORITHMS.md §3): every block runs ONCE at its largest
        size with the superposition of its (expand, kernel) candidates, weighted by the outer product of the two
        decisions' weights (the "combi" superposition of Cartesian choices, §3.1; `ElasticMBConv.forward_superposed`:
        the depthwise kernel `W * sum a_e a_k Pad(1[c < h_e] 1_{k x k})`, the hidden channels scaled by
        `sum_e a_e 1[c < h_e]`); a stage's depth is mixed at the output, `sum_d a_d h_d` over the states after its
        first d blocks (nanoGPT's depth mixture, §3.3). Candidates a mask disallows take no part."""
        weights = aw.weights
        labels = self.space.labels
        width = max(len(KERNELS), len(EXPANDS), len(DEPTHS))
        if tuple(weights.shape) != (len(labels), width):
            raise ValueError(f"MobileNet arch weights have shape ({len(labels)}, {width}), got {tuple(weights.shape)}")
        row = {label: i for i, label in enumerate(labels)}
        allowed = dict(zip(labels, self.space.allowed))
        x = self.first_block(self.stem(x), 3, 1)
        for s, stage in enumerate(self.stages):
            d = f"d{s + 1}"
            depth_weights = {depth: weights[row[d], DEPTHS.index(depth)] for depth in allowed[d]}
            out: torch.Tensor | None = None
            for b, block in enumerate(stage[:max(depth_weights)]):
                k, e = f"k{s + 1}_{b + 1}", f"e{s + 1}_{b + 1}"
                specs = [(expand, kernel) for expand in allowed[e] for kernel in allowed[k]]
                a_e = torch.stack([weights[row[e], EXPANDS.index(expand)] for expand in allowed[e]])
                a_k = torch.stack([weights[row[k], KERNELS.index(kernel)] for kernel in allowed[k]])
                x = block.superposed(x, specs, torch.outer(a_e, a_k).flatten())
                if b + 1 in depth_weights:
                    term = depth_weights[b + 1] * x
                    out = term if out is None else out + term
            x = out
        return self.forward_head(x)

    def _forward_masked(self, x: torch.Tensor, aw: ArchWeights) -> torch.Tensor:
        if aw.hard is None:
            raise ValueError("the MobileNet supernet built with supernet.mode=mix runs relaxed weights only with "
                             "`hard` (one sampled subnet, ShiftNAS/GDAS); build it with supernet.mode=entangle to "
                             "run relaxed archs")
        arch = self.space.decode(aw.hard)
        weights, labels = aw.weights.to(x.device), self.space.labels
        row = {label: i for i, label in enumerate(labels)}
        x = self.first_block(self.stem(x), 3, 1)
        for s, (stage, blocks) in enumerate(zip(self.stages, self.space.blocks(arch))):
            depth_weights = weights[row[f"d{s + 1}"], :len(DEPTHS)]
            for b, (block, (kernel, expand)) in enumerate(zip(stage, blocks)):
                k_w = weights[row[f"k{s + 1}_{b + 1}"], :len(KERNELS)]
                e_w = weights[row[f"e{s + 1}_{b + 1}"], :len(EXPANDS)]
                gate = (depth_weights * depth_active(b, x.device)).sum() if block.residual else None
                x = block(x, kernel, expand, channel_mask=channel_mask(block, e_w, expand),
                          kernel_mask=kernel_mask(k_w, kernel), gate=gate)
        return self.forward_head(x)

    # --- registry --------------------------------------------------------------------------------
    def _registry_key(self, parts: list[str]) -> ChoiceKey:
        """Keys by module: `stem`, `block` (index over all 20 elastic blocks), `stage_fixed` (the fixed first
        block) and `head`. No key names a candidate: with weight entanglement every kernel/expand candidate uses
        a slice of the block's tensors (specs/ALGORITHMS.md §0.4), so `choice_parameters()` lists none and
        `choice_slices()` gives the slices instead."""
        if parts[0] == "stages":
            return ChoiceKey("block", int(parts[1]) * MAX_BLOCKS + int(parts[2]), None, None)
        if parts[0] == "first_block":
            return ChoiceKey(self.fixed_cell_scope, None, None, None)
        return super()._registry_key(parts)

    def choice_slices(self) -> ChoiceSlices:
        """What each candidate trains, as slices of the shared tensors (specs/ALGORITHMS.md §0.1, §0.4):

        - kernel `k` of a block (`k{s}_{b}`): the centre `k x k` taps of the block's depthwise kernel;
        - expand ratio `e` (`e{s}_{b}`): the first `C_in * e` (rounded) hidden channels of the expand conv and its
          BN, of the depthwise conv and its BN, of the SE convs, and the projection's input columns
          (`ElasticMBConv.expand_slices`);
        - depth `d` of a stage (`d{s}`): every parameter of the stage's first `d` blocks, the slice of the stage
          that depth computes (§0.1 "depth = first d blocks").

        Slices are nested, so they overlap: kernel 3 is inside kernel 5, expand 3 inside expand 6, depth 2 inside
        depth 4, and a consumer of per-candidate gradients compares overlapping parts (a larger candidate's slice
        holds more weights). Depth is nested like kernel and expand, rather than "the blocks beyond the next
        shallower depth", so that every candidate of every dimension means the same thing, the part of the
        shared weights the network trains when that candidate is chosen; with the marginal definition the
        smallest depth would own the two blocks every depth shares and each larger depth only one block.
        `choice_parameters()` stays empty: no parameter belongs to one candidate only.
        """
        out: ChoiceSlices = {(d.label, c): [] for d in self.space.decisions for c in d.candidates}
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                for kernel in KERNELS:
                    out[(f"k{s + 1}_{b + 1}", kernel)] = block.kernel_slices(kernel)
                for expand in EXPANDS:
                    out[(f"e{s + 1}_{b + 1}", expand)] = block.expand_slices(expand)
            for depth in DEPTHS:
                out[(f"d{s + 1}", depth)] = [(p, ()) for block in stage[:depth] for p in block.parameters()]
        return out

    def active_choices(self, arch: Arch) -> list[tuple[str, Hashable]]:
        """Every stage's depth, and the kernel and expand ratio of each block within its stage's depth; the
        choices of deeper blocks are placeholders of the canonical form (the network has no such block)."""
        out: list[tuple[str, Hashable]] = [(f"d{s + 1}", d) for s, d in enumerate(self.space.depths(arch))]
        for s, blocks in enumerate(self.space.blocks(arch)):
            for b, (kernel, expand) in enumerate(blocks):
                out += [(f"k{s + 1}_{b + 1}", kernel), (f"e{s + 1}_{b + 1}", expand)]
        return out

    # --- export ----------------------------------------------------------------------------------
    def export(self, arch: Arch, inherit: bool = True) -> MobileNetNetwork:
        """The standalone subnet with the sliced weights (and BN statistics) copied in; `inherit=False` gives the
        same network freshly initialised (PyTorch's default initialisation of every layer)."""
        blocks = [block.export(kernel, expand)
                  for stage, stage_blocks in zip(self.stages, self.space.blocks(arch))
                  for block, (kernel, expand) in zip(stage, stage_blocks)]
        device = next(self.parameters()).device
        net = MobileNetNetwork(copy.deepcopy(self.stem), self.first_block.export(3, 1), blocks,
                               copy.deepcopy(self.final_expand), copy.deepcopy(self.feature_mix),
                               copy.deepcopy(self.classifier), arch.to_string())
        if not inherit:
            for module in net.modules():
                if module is not net and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.reset_running_stats()
        return net.to(device).train(self.training)


def depth_active(block: int, device: torch.device) -> torch.Tensor:
    """Matrix-mapping row of the depth choice for one block: `[block < d for d in DEPTHS]`."""
    return torch.tensor([float(block < d) for d in DEPTHS], device=device)


def channel_mask(block: ElasticMBConv, expand_weights: torch.Tensor, expand: float) -> torch.Tensor:
    """`v M` restricted to the computed hidden channels: channel c gets the weight of every expand candidate
    whose hidden width exceeds c (1 at one-hot for all computed channels)."""
    hidden = block.hidden_channels(expand)
    widths = torch.tensor([block.hidden_channels(e) for e in EXPANDS], device=expand_weights.device)
    active = (torch.arange(hidden, device=widths.device)[None, :] < widths[:, None]).to(expand_weights.dtype)
    return expand_weights @ active


def kernel_mask(kernel_weights: torch.Tensor, kernel: int) -> torch.Tensor:
    """`v M` over the centre `kernel x kernel` taps: a tap gets the weight of every kernel candidate that
    covers it (1 at one-hot for all computed taps)."""
    offset = torch.arange(kernel, device=kernel_weights.device) - kernel // 2
    radius = torch.maximum(offset[:, None].abs(), offset[None, :].abs())  # Chebyshev distance from the centre
    sizes = torch.tensor([k // 2 for k in KERNELS], device=kernel_weights.device)
    covers = (radius[None] <= sizes[:, None, None]).to(kernel_weights.dtype)
    return torch.einsum("j,jhw->hw", kernel_weights, covers)


def _standalone(settings: Mapping[str, Any], image_size: int) -> dict[str, Any]:
    """`nas bench build` trains the subnet at the settings' width with running BN statistics, in the stride schedule
    of the image size (`cifar` up to 64x64)."""
    return dict(width_mult=settings["width_mult"], schedule="cifar" if image_size <= 64 else "imagenet",
                bn_mode="running")


register_supernet(MobileNetSupernet, standalone=_standalone, smoke={"width_mult": 0.5}, smoke_image_size=16)

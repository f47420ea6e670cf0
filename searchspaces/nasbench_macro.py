"""NAS-Bench-Macro (Su et al., CVPR 2021): 8 searchable layers of a MobileNetV2-like CIFAR network, 3 choices each.

The benchmark network (xiusu/NAS-Bench-Macro, `train/model.py`), described here in our own words:

- stem: 3x3 conv (32 channels, no bias), BN, ReLU, stride 1;
- three stages of 2, 3 and 3 searchable layers at 64, 128 and 256 channels; the first layer of every stage has
  stride 2 and doubles the width (32 -> 64, 64 -> 128, 128 -> 256), the others keep shape;
- each searchable layer is one of `identity`, `mb_e3_k3` or `mb_e6_k5` (benchmark codes 0, 1, 2):
  `identity` is a plain skip where the shape is kept and a 1x1 conv (stride 2, no bias) + BN at the first layer
  of a stage, where the shape changes; `mb_eE_kK` is a MobileNetV2 inverted residual with hidden width exactly
  `in * E` (no rounding): 1x1 conv, BN, ReLU, KxK depthwise (stride), BN, ReLU, 1x1 conv, BN, plus the input
  when the shape is kept (no squeeze-excite);
- head: 1x1 conv to 1280 (no bias), BN, ReLU, global average pooling, linear classifier (with bias).

Every BatchNorm is affine. The canonical string of an arch is the benchmark's 8-character code, one digit per
layer in network order (`"02012100"`), so `arch.to_string()` is the benchmark key. All 3^8 = 6,561 codes are keys
of the benchmark file, but an identity that is not the first layer of its stage is a pure skip, so codes that
differ only in where such skips sit inside a stage are one network: the benchmark trained 3,969 distinct
networks and gave every code the result of its network (`network_code` computes the benchmark's own
normalisation, `get_real_arch`: the non-first identities of a stage moved to its end).

Costs are analytic, for the benchmark network built for a task (`num_classes=10, in_channels=3, image_size=32`
by default, extra task keys ignored). `params` counts every parameter (affine BN included) and equals the
benchmark's `params` for all 6,561 codes. `flops` counts multiply-adds of convolutions and linear layers
without their biases (conv: `out_h * out_w * k_h * k_w * in / groups * out`, linear: `in * out`; BN, ReLU,
additions and pooling are not counted), the convention of the benchmark's own counter; it equals the
benchmark's `flops` for all 6,561 codes at 32x32. Both are a constant plus one term per layer that depends only
on that layer's choice (`cost_terms`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .core import Arch, Decision, FlopsConvention, Space, SpaceError
from .registry import register_space

CANDIDATES: tuple[str, ...] = ("identity", "mb_e3_k3", "mb_e6_k5")
LABELS: tuple[str, ...] = tuple(f"l{i}" for i in range(1, 9))
# (expand ratio, kernel) of the two MobileNetV2 candidates
MB_SHAPES: dict[str, tuple[int, int]] = {"mb_e3_k3": (3, 3), "mb_e6_k5": (6, 5)}
STAGES: tuple[int, ...] = (2, 3, 3)
STEM_WIDTH = 32
HEAD_WIDTH = 1280
EXAMPLE = "02012100"


@dataclass(frozen=True)
class MacroLayer:
    """One searchable layer of the network for a task: widths, stride and feature-map sizes."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_size: int
    out_size: int

    @property
    def keeps_shape(self) -> bool:
        """Whether input and output have the same shape (identity is a skip, MBConv adds its input)."""
        return self.stride == 1 and self.in_channels == self.out_channels


def _out_size(size: int, stride: int) -> int:
    """Spatial size after an odd-kernel conv with padding `k // 2` and `stride` (the same for 1x1, 3x3, 5x5)."""
    return (size - 1) // stride + 1


def macro_layers(image_size: int = 32, stem_width: int = STEM_WIDTH,
                 stages: Sequence[int] = STAGES) -> tuple[MacroLayer, ...]:
    """The 8 searchable layers in network order: each stage starts with a stride-2 layer that doubles the width."""
    layers, channels, size = [], stem_width, image_size
    for depth in stages:
        for position in range(depth):
            stride = 2 if position == 0 else 1
            out_channels = channels * 2 if position == 0 else channels
            out_size = _out_size(size, stride)
            layers.append(MacroLayer(len(layers), channels, out_channels, stride, size, out_size))
            channels, size = out_channels, out_size
    return tuple(layers)


def layer_costs(layer: MacroLayer, choice: str) -> tuple[int, int]:
    """(params, multiply-adds) of one searchable layer with candidate `choice`."""
    c_in, c_out = layer.in_channels, layer.out_channels
    if choice == "identity":
        if layer.keeps_shape:
            return 0, 0
        # 1x1 conv (stride 2, no bias) + affine BN
        return c_in * c_out + 2 * c_out, layer.out_size ** 2 * c_in * c_out
    try:
        expand, kernel = MB_SHAPES[choice]
    except KeyError:
        raise SpaceError(f"unknown NAS-Bench-Macro candidate {choice!r}; accepted: {', '.join(CANDIDATES)}") from None
    hidden = c_in * expand
    params = c_in * hidden + 2 * hidden  # expand 1x1 + BN
    params += hidden * kernel * kernel + 2 * hidden  # depthwise + BN
    params += hidden * c_out + 2 * c_out  # project 1x1 + BN
    flops = layer.in_size ** 2 * c_in * hidden
    flops += layer.out_size ** 2 * (hidden * kernel * kernel + hidden * c_out)
    return params, flops


def fixed_costs(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> tuple[int, int]:
    """(params, multiply-adds) of everything outside the searchable layers: stem, head conv, classifier."""
    last = macro_layers(image_size)[-1]
    params = in_channels * STEM_WIDTH * 9 + 2 * STEM_WIDTH
    flops = image_size ** 2 * in_channels * STEM_WIDTH * 9
    params += last.out_channels * HEAD_WIDTH + 2 * HEAD_WIDTH + HEAD_WIDTH * num_classes + num_classes
    flops += last.out_size ** 2 * last.out_channels * HEAD_WIDTH + HEAD_WIDTH * num_classes
    return params, flops


@register_space("NAS-Bench-Macro: 8 layers x {identity, MBConv e3 k3, MBConv e6 k5}, 6,561 codes, CIFAR network",
                example=EXAMPLE)
class NASBenchMacroSpace(Space):
    """The NAS-Bench-Macro space: decisions `l1..l8`, candidates `identity`, `mb_e3_k3`, `mb_e6_k5` (codes 0, 1, 2)."""

    name = "nasbench-macro"
    flops_convention = FlopsConvention(bias=False, pools=False)
    cost_term_kinds = ("params", "flops")

    def __init__(self, allowed: Mapping[str, Sequence[Hashable]] | None = None):
        super().__init__([Decision(label, CANDIDATES) for label in LABELS], allowed)

    # --- canonical string ------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        """The benchmark's 8-character code, e.g. `02012100`."""
        return "".join(str(c) for c in arch.codes())

    def parse(self, text: str) -> Arch:
        """Parse an 8-character code of digits 0 (identity), 1 (mb_e3_k3), 2 (mb_e6_k5)."""
        code = text.strip() if isinstance(text, str) else text
        if not isinstance(code, str) or len(code) != len(LABELS) or set(code) - {"0", "1", "2"}:
            raise SpaceError(
                f"{text!r} is not a NAS-Bench-Macro code; expected {len(LABELS)} characters from 0 (identity), "
                f"1 (mb_e3_k3), 2 (mb_e6_k5), e.g. {EXAMPLE}"
            )
        return self.decode([int(c) for c in code])

    def network_code(self, arch: Arch) -> str:
        """The code of the network `arch` builds, as the benchmark normalises it (`get_real_arch`): inside each
        stage the identities after the first layer are pure skips, so they are moved to the end of the stage.
        Codes with equal network codes are one network and share one benchmark result."""
        code, out, start = self.to_string(arch), [], 0
        for depth in STAGES:
            stage = code[start:start + depth]
            rest = stage[1:]
            out.append(stage[0] + rest.replace("0", "") + "0" * rest.count("0"))
            start += depth
        return "".join(out)

    # --- analytic costs --------------------------------------------------------------------------
    def layers(self, image_size: int = 32, **_: Any) -> tuple[MacroLayer, ...]:
        """The 8 searchable layers of the network for an input of `image_size` pixels."""
        return macro_layers(image_size)

    def cost_terms(self, kind: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                   **_: Any) -> tuple[int, list[tuple[tuple[str, ...], np.ndarray]]]:
        """`cost(arch) = constant + sum over layers of table[candidate index]` for `kind` in `params`/`flops`:
        one term per layer (label, [3] table), linear in one-hot choices, so exact for relaxed (soft) archs
        at one-hot and differentiable in between."""
        if kind not in ("params", "flops"):
            raise ValueError(f"unknown cost {kind!r}; accepted: params, flops")
        position = 0 if kind == "params" else 1
        constant = fixed_costs(num_classes, in_channels, image_size)[position]
        terms = [((label,), np.array([layer_costs(layer, c)[position] for c in CANDIDATES], dtype=np.int64))
                 for label, layer in zip(LABELS, macro_layers(image_size))]
        return constant, terms

    def _cost(self, arch: Arch, position: int, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
              **_: Any) -> int:
        total = fixed_costs(num_classes, in_channels, image_size)[position]
        for layer, choice in zip(macro_layers(image_size), arch.choices):
            total += layer_costs(layer, choice)[position]
        return int(total)

    def params(self, arch: Arch, **task: Any) -> int:
        """Parameters of the benchmark network of `arch` (affine BN included): the benchmark's `params`."""
        return self._cost(arch, 0, **task)

    def flops(self, arch: Arch, **task: Any) -> int:
        """Multiply-adds of convs and linear layers (biases, BN, ReLU, pooling not counted) for one image:
        the benchmark's `flops` at 32x32."""
        return self._cost(arch, 1, **task)

    def largest(self, **task: Any) -> Arch:
        """Every layer at its largest allowed candidate (identity < mb_e3_k3 < mb_e6_k5 in params in every layer,
        also where identity is a 1x1 conv, so this is the arch with the most parameters)."""
        return self.make([max(a, key=CANDIDATES.index) for a in self.allowed])

    def smallest(self, **task: Any) -> Arch:
        """Every layer at its smallest allowed candidate."""
        return self.make([min(a, key=CANDIDATES.index) for a in self.allowed])

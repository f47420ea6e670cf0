"""NAS-Bench-Macro supernet (weight-entangled MBConv layers) and the standalone network it exports.

The network is the benchmark's (see `searchspaces.nasbench_macro`): stem conv 3x3 (32) + BN + ReLU; 8 searchable
layers in stages of 2, 3, 3 at 64, 128, 256 channels (the first layer of a stage has stride 2); head conv 1x1 to
1280 + BN + ReLU, global average pooling, linear classifier. Every BN is affine, as in the benchmark, so an
exported network has exactly the benchmark's parameter count.

Candidates of one searchable layer:

- `identity`: a skip where the shape is kept (no parameters); at the first layer of a stage a 1x1 conv with
  stride 2 + BN (the benchmark's downsampling identity), with its own weights.
- `mb_e3_k3`, `mb_e6_k5`: MobileNetV2 inverted residuals (hidden width exactly `in * e`, ReLU, no SE, residual
  where the shape is kept). With `entangle=True` (default) a layer holds ONE `ElasticMBConv` of the largest
  candidate (expand 6, kernel 5) and `mb_e3_k3` runs its slice: the first `3 * in` hidden channels and the
  centre 3x3 of the depthwise kernel (weight entanglement, once-for-all style). With `entangle=False` the two
  candidates have separate weights (the one-shot setting of the NAS-Bench-Macro paper).

A path runs at its real size (sliced weights, not masks), so a small subnet costs less. `export(arch)` returns
`NASBenchMacroNetwork` with plain layers holding copies of the sliced weights (and BN statistics).

Relaxed archs (`ArchWeights`, weights `[8 layers, 3 candidates]`): the `mix` mode of specs/ALGORITHMS.md §0.3
(weighted sum of candidate outputs; candidates a mask disallows are skipped); with `hard`, only the chosen
candidate runs and the other weights of its row are added as scalars so they still get a gradient (GDAS).
The single-op `entangle` superposition of TangleNAS is not implemented.

Parameter registry: `stem.*` -> `("stem",)`, `head.*`/`classifier.*` -> `("head",)`, and candidate modules
`layers.<i>.ops.<name>.*` -> `("layer", i, "l<i+1>", choice)`. An entangled `ops.mb` belongs to the largest
candidate (`mb_e6_k5`, whose full weight it is) in the registry, and `choice_parameters()` lists it under both
MBConv candidates, since `mb_e3_k3` trains a slice of it: per-candidate gradients of entangled weights overlap
(§0.4), and after a `mb_e3_k3` step only that slice carries a non-zero gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence

import torch
from torch import nn

from searchspaces import Arch, Space
from searchspaces.nasbench_macro import CANDIDATES, HEAD_WIDTH, LABELS, MB_SHAPES, STEM_WIDTH, MacroLayer, macro_layers

from .base import ArchWeights, ChoiceKey, Supernet
from .bn import batchnorms, check_mode, make_bn
from .elastic import ElasticMBConv

LARGEST_MB = "mb_e6_k5"


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, bn_mode: str, relu: bool) -> nn.Sequential:
    """Conv (no bias, padding k // 2) + affine BN [+ ReLU]: stem, head and the downsampling identity."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
              make_bn(c_out, True, bn_mode)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _drop_running_stats(module: nn.Module) -> None:
    """BN mode `batch`: BN layers keep no running statistics (elastic layers are built with them)."""
    for bn in batchnorms(module):
        bn.track_running_stats = False
        bn.running_mean = None
        bn.running_var = None
        bn.num_batches_tracked = None


class MacroSearchLayer(nn.Module):
    """One searchable layer holding its candidates in `ops`: `identity` (only where it has a downsampling conv),
    and `mb` (entangled) or `mb_e3_k3` + `mb_e6_k5` (separate)."""

    def __init__(self, layer: MacroLayer, entangle: bool, bn_mode: str):
        super().__init__()
        self.layer, self.entangle = layer, entangle
        self.ops = nn.ModuleDict()
        if not layer.keeps_shape:
            self.ops["identity"] = _conv_bn(layer.in_channels, layer.out_channels, 1, layer.stride, bn_mode, False)
        shapes = {"mb": MB_SHAPES[LARGEST_MB]} if entangle else MB_SHAPES
        for name, (expand, kernel) in shapes.items():
            self.ops[name] = ElasticMBConv(layer.in_channels, layer.out_channels, kernel, expand, layer.stride,
                                           "relu", use_se=False, residual=layer.keeps_shape, divisor=None)
        # module name -> the candidates that compute with its parameters
        self.users: dict[str, tuple[str, ...]] = {"identity": ("identity",)}
        self.users.update({"mb": tuple(MB_SHAPES)} if entangle else {c: (c,) for c in MB_SHAPES})

    def module_of(self, choice: Hashable) -> str:
        if choice == "identity":
            return "identity"
        return "mb" if self.entangle else str(choice)

    def forward(self, x: torch.Tensor, choice: Hashable) -> torch.Tensor:
        if choice == "identity":
            return self.ops["identity"](x) if "identity" in self.ops else x
        expand, kernel = MB_SHAPES[choice]
        return self.ops[self.module_of(choice)](x, kernel, expand)

    def export(self, choice: Hashable) -> nn.Module:
        """The plain module of `choice` with copies of its (sliced) weights."""
        if choice == "identity":
            return copy.deepcopy(self.ops["identity"]) if "identity" in self.ops else nn.Identity()
        expand, kernel = MB_SHAPES[choice]
        return self.ops[self.module_of(choice)].export(kernel, expand)


class NASBenchMacroNetwork(nn.Module):
    """The standalone network of one arch: stem, 8 plain layers (MBConv, downsampling conv + BN, or a skip),
    head and classifier. `arch` and `in_channels` are recorded for reference."""

    def __init__(self, arch: Arch, stem: nn.Module, layers: Sequence[nn.Module], head: nn.Module,
                 classifier: nn.Linear):
        super().__init__()
        self.arch = arch
        self.stem, self.layers, self.head, self.classifier = stem, nn.ModuleList(layers), head, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(x), 1), 1))


class NASBenchMacroSupernet(Supernet):
    """Weight-sharing NAS-Bench-Macro supernet: `net(x, arch)` runs the path of `arch` at its real size."""

    modes = ("single", "mix", "hard")

    def __init__(self, space: Space, num_classes: int = 10, in_channels: int = 3, bn_mode: str = "recalibrate",
                 entangle: bool = True):
        super().__init__()
        if space.name != "nasbench-macro":
            raise ValueError(f"NASBenchMacroSupernet needs the nasbench-macro space, got {space.name!r}")
        check_mode(bn_mode)
        self.space = space
        self.num_classes, self.in_channels, self.bn_mode, self.entangle = num_classes, in_channels, bn_mode, entangle
        # The layer layout does not depend on the input size (every conv keeps `(size - 1) // stride + 1`).
        layout = macro_layers()
        self.stem = _conv_bn(in_channels, STEM_WIDTH, 3, 1, bn_mode, True)
        self.layers = nn.ModuleList(MacroSearchLayer(layer, entangle, bn_mode) for layer in layout)
        self.head = _conv_bn(layout[-1].out_channels, HEAD_WIDTH, 1, 1, bn_mode, True)
        self.classifier = nn.Linear(HEAD_WIDTH, num_classes)
        if bn_mode == "batch":
            _drop_running_stats(self)

    def build_options(self) -> dict:
        return dict(num_classes=self.num_classes, in_channels=self.in_channels, bn_mode=self.bn_mode,
                    entangle=self.entangle)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(x), 1), 1))

    def forward(self, x: torch.Tensor, arch: Arch | ArchWeights) -> torch.Tensor:
        """The path of an `Arch`, or the `mix` relaxation of `ArchWeights` (`[8, 3]`; see the module docstring)."""
        x = self.stem(x)
        if isinstance(arch, ArchWeights):
            return self._head(self._relaxed(x, arch))
        for layer, choice in zip(self.layers, arch.choices):
            x = layer(x, choice)
        return self._head(x)

    def _relaxed(self, x: torch.Tensor, relaxed: ArchWeights) -> torch.Tensor:
        w = relaxed.weights
        if tuple(w.shape) != (len(LABELS), len(CANDIDATES)):
            raise ValueError(f"NAS-Bench-Macro arch weights have shape (8, 3), got {tuple(w.shape)}")
        for i, (layer, allowed) in enumerate(zip(self.layers, self.space.allowed)):
            if relaxed.hard is not None:
                k = relaxed.hard[i]
                x = w[i, k] * layer(x, CANDIDATES[k]) + (w[i].sum() - w[i, k])
                continue
            out = None
            for k, choice in enumerate(CANDIDATES):
                if choice in allowed:
                    term = w[i, k] * layer(x, choice)
                    out = term if out is None else out + term
            x = out
        return x

    # --- parameters per candidate ----------------------------------------------------------------
    def _registry_key(self, parts: list[str]) -> ChoiceKey:
        """`("layer", i, "l<i+1>", choice)` for candidate modules (an entangled MBConv under `mb_e6_k5`, the owner
        of its full weight); `("stem",)` and `("head",)` as in the base class."""
        if parts[0] == "layers":
            index = int(parts[1])
            return ChoiceKey("layer", index, LABELS[index], self.layers[index].users[parts[3]][-1])
        return super()._registry_key(parts)

    def choice_parameters(self) -> dict[tuple[str, Hashable], list[nn.Parameter]]:
        """`(label, choice) -> parameters that candidate computes with`. An entangled MBConv's parameters are
        listed under both `mb_e3_k3` (which uses a slice) and `mb_e6_k5`; a shape-keeping identity has none."""
        out: dict[tuple[str, Hashable], list[nn.Parameter]] = {
            (d.label, c): [] for d in self.space.decisions for c in d.candidates
        }
        for index, layer in enumerate(self.layers):
            for name, module in layer.ops.items():
                for choice in layer.users[name]:
                    out[(LABELS[index], choice)].extend(module.parameters())
        return out

    # --- export ----------------------------------------------------------------------------------
    def export(self, arch: Arch, inherit: bool = True) -> NASBenchMacroNetwork:
        """The standalone network of `arch` with copies of this supernet's (sliced) weights and BN statistics;
        with `inherit=False` freshly initialised (for training from scratch)."""
        if not self.space.root.contains(arch):
            raise ValueError(f"{arch!r} is not an arch of this supernet's space")
        ref = next(self.parameters())
        child = NASBenchMacroNetwork(
            arch, copy.deepcopy(self.stem), [layer.export(c) for layer, c in zip(self.layers, arch.choices)],
            copy.deepcopy(self.head), copy.deepcopy(self.classifier),
        ).to(device=ref.device, dtype=ref.dtype)
        if not inherit:
            for module in child.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
                    module.reset_parameters()
        child.train(self.training)
        return child

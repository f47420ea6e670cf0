"""NAS-Bench-Macro supernet (weight-entangled MBConv layers) and the standalone network it exports.

The network is the benchmark's (see `searchspaces.nasbench_macro`): stem conv 3x3 (32) + BN + ReLU; 8 searchable
layers in stages of 2, 3, 3 at 64, 128, 256 channels (the first layer of a stage has stride 2); head conv 1x1 to
1280 + BN + ReLU, global average pooling, linear classifier. Every BN is affine, as in the benchmark, so an
exported network has exactly the benchmark's parameter count.

Candidates of one searchable layer:

- `identity`: a skip where the shape is kept (no parameters); at the first layer of a stage a 1x1 conv with
  stride 2 + BN (the benchmark's downsampling identity), with its own weights.
- `mb_e3_k3`, `mb_e6_k5`: MobileNetV2 inverted residuals (hidden width exactly `in * e`, ReLU, no SE, residual
  where the shape is kept). With `share_weights=True` (default) a layer holds ONE `ElasticMBConv` of the largest
  candidate (expand 6, kernel 5) and `mb_e3_k3` runs its slice: the first `3 * in` hidden channels and the
  centre 3x3 of the depthwise kernel (shared sliced weights, once-for-all style). With `share_weights=False` the
  two candidates have separate weights (the one-shot setting of the NAS-Bench-Macro paper). The option was called
  `entangle` before; that name is still read, with a deprecation note.

A path runs at its real size (sliced weights, not masks), so a small subnet costs less. `export(arch)` returns
`NASBenchMacroNetwork` with plain layers holding copies of the sliced weights (and BN statistics).

Relaxed archs (`ArchWeights`, weights `[8 layers, 3 candidates]`) run in the build's `mode` (specs/ALGORITHMS.md
§0.3, `supernets.mixed`): `mix` (default) is the weighted sum of the candidate outputs (candidates a mask
disallows are skipped); `entangle` (TangleNAS, needs `share_weights`) runs the shared MBConv ONCE with the
superposition of its two slices (`ElasticMBConv.forward_superposed`: the depthwise kernel `a_33 * Pad(W[:3in,
3x3]) + a_65 * W`, the hidden channels beyond `3 * in` scaled by `a_65`) and adds `identity` as in `mix`. With
`hard`, only the chosen candidate runs (in `entangle`, the superposed MBConv when an MBConv is chosen) and the
other weights of its row are added as scalars so they still get a gradient (GDAS).

Parameter registry: `stem.*` -> `("stem",)`, `head.*`/`classifier.*` -> `("head",)`, and candidate modules
`layers.<i>.ops.<name>.*` -> `("layer", i, "l<i+1>", choice)`. An entangled `ops.mb` belongs to the largest
candidate (`mb_e6_k5`, whose full weight it is) in the registry, and `choice_parameters()` lists it under both
MBConv candidates, since `mb_e3_k3` trains a slice of it: per-candidate gradients of entangled weights overlap
(§0.4), and after a `mb_e3_k3` step only that slice carries a non-zero gradient.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Hashable, Sequence
from typing import Annotated

import torch
from torch import nn

from searchspaces import Arch, Space
from searchspaces.nasbench_macro import CANDIDATES, HEAD_WIDTH, LABELS, MB_SHAPES, STEM_WIDTH, MacroLayer, macro_layers
from searchspaces.options import Help

from .base import ArchWeights, ChoiceKey, Supernet
from .bn import batchnorms, check_mode, make_bn
from .build_options import BNMode, MixMode, ScaleByMass
from .elastic import ElasticMBConv
from .mixed import MixedOp, allowed_columns, combine, policy
from .registry import register_supernet

LARGEST_MB = "mb_e6_k5"


def _share_weights(share_weights: bool, entangle: bool | None) -> bool:
    """`share_weights`, or the deprecated `entangle` it replaced (read with a one-line note)."""
    if entangle is None:
        return share_weights
    warnings.warn("supernet.entangle is deprecated: it is now supernet.share_weights (shared sliced weights); "
                  "`entangle` names the TangleNAS mode supernet.mode=entangle", FutureWarning, stacklevel=3)
    if not isinstance(entangle, bool):
        raise ValueError(f"supernet.entangle={entangle!r} is not valid; accepted: true, false")
    if share_weights is not True and share_weights != entangle:
        raise ValueError(f"supernet.entangle={entangle} (deprecated) contradicts supernet.share_weights="
                         f"{share_weights}; give share_weights only")
    return entangle


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
    """One searchable layer holding its candidates in `ops` (a `MixedOp`): `identity` (a module only where it has a
    downsampling conv, else the input itself), and `mb` (shared weights: both MBConv candidates are slices of it)
    or `mb_e3_k3` + `mb_e6_k5` (separate weights)."""

    def __init__(self, layer: MacroLayer, share_weights: bool, bn_mode: str):
        super().__init__()
        self.layer, self.share_weights = layer, share_weights
        modules: dict[str, nn.Module] = {}
        if not layer.keeps_shape:
            modules["identity"] = _conv_bn(layer.in_channels, layer.out_channels, 1, layer.stride, bn_mode, False)
        shapes = {"mb": MB_SHAPES[LARGEST_MB]} if share_weights else MB_SHAPES
        for name, (expand, kernel) in shapes.items():
            modules[name] = ElasticMBConv(layer.in_channels, layer.out_channels, kernel, expand, layer.stride,
                                          "relu", use_se=False, residual=layer.keeps_shape, divisor=None)
        # each MBConv candidate runs as an (expand, kernel) slice: of the shared module, or all of its own
        slices = {c: ("mb" if share_weights else c, shape) for c, shape in MB_SHAPES.items()}
        self.ops = MixedOp(CANDIDATES, modules, slices, identity=("identity",))
        # module name -> the candidates that compute with its parameters
        self.users: dict[str, tuple[str, ...]] = {"identity": ("identity",)}
        self.users.update({"mb": tuple(MB_SHAPES)} if share_weights else {c: (c,) for c in MB_SHAPES})

    def module_of(self, choice: Hashable) -> str:
        if choice == "identity":
            return "identity"
        return "mb" if self.share_weights else str(choice)

    def forward(self, x: torch.Tensor, choice: Hashable) -> torch.Tensor:
        return self.ops.path(choice)(x)

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


# The build option of NASBenchMacroSupernet besides those of supernets.build_options.
ShareWeights = Annotated[bool, Help("one shared MBConv per layer (mb_e3_k3 a slice of mb_e6_k5); false: separate "
                                    "weights per candidate")]


class NASBenchMacroSupernet(Supernet):
    """Weight-sharing NAS-Bench-Macro supernet: `net(x, arch)` runs the path of `arch` at its real size."""

    space_name = "nasbench-macro"
    modes = ("single", "mix", "hard")
    relaxations = ("mix", "entangle")

    def __init__(self, space: Space, num_classes: int = 10, in_channels: int = 3, bn_mode: BNMode = "recalibrate",
                 share_weights: ShareWeights = True, mode: MixMode = "mix", scale_group_by_mass: ScaleByMass = False,
                 entangle: Annotated[bool | None, Help("deprecated name of share_weights")] = None):
        super().__init__()
        self._check_space(space)
        check_mode(bn_mode)
        share_weights = _share_weights(share_weights, entangle)
        self.check_options({"mode": mode, "share_weights": share_weights})
        self.space = space
        self.num_classes, self.in_channels, self.bn_mode = num_classes, in_channels, bn_mode
        self.share_weights = share_weights
        self.mode, self.policy = mode, policy(mode, scale_group_by_mass)
        # The layer layout does not depend on the input size (every conv keeps `(size - 1) // stride + 1`).
        layout = macro_layers()
        self.stem = _conv_bn(in_channels, STEM_WIDTH, 3, 1, bn_mode, True)
        self.layers = nn.ModuleList(MacroSearchLayer(layer, share_weights, bn_mode) for layer in layout)
        self.head = _conv_bn(layout[-1].out_channels, HEAD_WIDTH, 1, 1, bn_mode, True)
        self.classifier = nn.Linear(HEAD_WIDTH, num_classes)
        if bn_mode == "batch":
            _drop_running_stats(self)
        self._set_mask()

    def _set_mask(self) -> None:
        self._allowed = allowed_columns(self.space.allowed, [CANDIDATES] * len(LABELS))

    def _on_space_change(self) -> None:
        self._set_mask()

    @classmethod
    def check_options(cls, options) -> None:
        """`mode=entangle` superposes the one shared MBConv of a layer: it needs `share_weights`."""
        given = options.get("entangle")
        share = options.get("share_weights", True) if given is None else given
        if options.get("mode") == "entangle" and not share:
            raise ValueError("supernet.mode=entangle superposes the shared weights of mb_e3_k3 and mb_e6_k5, but "
                             "supernet.share_weights=false gives them separate ones; set share_weights=true or "
                             "mode=mix")

    def export_costs(self) -> dict:
        """The child is the benchmark's network (affine BN) whatever the build."""
        return {}

    def build_options(self) -> dict:
        return dict(num_classes=self.num_classes, in_channels=self.in_channels, bn_mode=self.bn_mode,
                    share_weights=self.share_weights, mode=self.mode,
                    scale_group_by_mass=getattr(self.policy, "scale_group_by_mass", False))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(x), 1), 1))

    def forward(self, x: torch.Tensor, arch: Arch | ArchWeights) -> torch.Tensor:
        """The path of an `Arch`, or a relaxed arch (`ArchWeights`, `[8, 3]`) in the build's mode (module docstring)."""
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
        for i, layer in enumerate(self.layers):
            hard = None if relaxed.hard is None else relaxed.hard[i]
            out, scalar = combine([self.policy(layer.ops, x, w, i, self._allowed[i], hard)])
            x = out if scalar is None else out + scalar
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


register_supernet(
    NASBenchMacroSupernet, renamed={"entangle": "share_weights"},
    # `nas bench build` trains the benchmark network with running BN statistics
    standalone=lambda settings, image_size: dict(bn_mode="running"),
)

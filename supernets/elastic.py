"""Elastic layers with weight entanglement (once-for-all / AutoFormer style).

Each layer owns one weight of the largest size; a candidate is a *slice* of it, computed at its real size:

- kernel: the centre `k x k` crop of the largest kernel (specs/ALGORITHMS.md §0.1);
- channels: the first `c` output channels; the input width is whatever the incoming tensor has, so the first
  `x.shape[1]` input channels are used;
- BN: the first `c` entries of the affine parameters and running statistics (shared across subnets, so that
  the `recalibrate` BN mode re-estimates them per subnet);
- SE: the squeeze width follows the active channels (`make_divisible(c / reduction)`), both convs sliced.

A sliced weight is a plain tensor view computed on every forward, never cached or wrapped in a Parameter, so
gradients reach the shared weight (§0.3). Slices overlap, so per-candidate gradients are not disjoint (§0.4).
Every layer has `export(...)` giving the plain PyTorch layer of one candidate with the sliced weights copied;
an exported network therefore computes what the supernet computes for that arch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from searchspaces.mobilenet import make_divisible

from .base import Index
from .mixed import group_factor


def centre_taps(size: int, kernel: int) -> tuple[slice, slice]:
    """The (rows, columns) slices of the centre `kernel x kernel` taps of a `size x size` kernel (both odd)."""
    if kernel > size or kernel % 2 == 0:
        raise ValueError(f"kernel {kernel} must be odd and at most {size}")
    start = (size - kernel) // 2
    return slice(start, start + kernel), slice(start, start + kernel)


def centre_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre `kernel x kernel` taps of a `[..., K, K]` weight (K and kernel odd)."""
    return weight[(..., *centre_taps(weight.shape[-1], kernel))]


def kernel_superposition(weights: Mapping[int, torch.Tensor], size: int) -> torch.Tensor:
    """The `[size, size]` mask `sum_k weights[k] * Pad(1_{k x k})`: a `size x size` kernel times it is the
    weighted sum of its zero-padded centre crops (TangleNAS's superposed kernel, specs/ALGORITHMS.md §3.1), and at a
    one-hot weight exactly the zero-padded crop. Keyed by kernel size, never by position."""
    mask: torch.Tensor | None = None
    for kernel, weight in weights.items():
        if kernel > size or kernel % 2 == 0:
            raise ValueError(f"kernel {kernel} must be odd and at most {size}")
        offset = torch.arange(size, device=weight.device) - size // 2
        radius = torch.maximum(offset[:, None].abs(), offset[None, :].abs())  # Chebyshev distance from the centre
        term = weight * (radius <= kernel // 2).to(weight.dtype)
        mask = term if mask is None else mask + term
    if mask is None:
        raise ValueError("a superposition needs the weight of at least one kernel")
    return mask


class SlicedKernels:
    """Mixin for an `nn.Sequential` op whose convs at positions `sliced` hold the largest kernel of an entangled
    group (NB201's 1x1 inside the 3x3 conv, DARTS's 3x3 inside the 5x5 separable/dilated convs): candidate `k` is
    the op with the centre `k x k` taps of those kernels and the same dilation, padding `dilation * (k - 1) // 2`
    (so every candidate keeps the output size); every other layer (pointwise convs, BN, a conv bias) is shared
    whole. `forward_slice(x, k)` runs one candidate, `forward_superposed(x, {k: a_k})` ONE op at the largest kernel
    with `W * kernel_superposition(a)` (a plain tensor recomputed from the parameter on every call)."""

    sliced: tuple[int, ...] = ()

    @property
    def max_kernel(self) -> int:
        return self[self.sliced[0]].kernel_size[0]

    def _run(self, x: torch.Tensor, kernel_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        for i, layer in enumerate(self):
            if i in self.sliced:
                weight = kernel_of(layer.weight)
                padding = layer.dilation[0] * (weight.shape[-1] - 1) // 2
                x = F.conv2d(x, weight, layer.bias, layer.stride, padding, layer.dilation, layer.groups)
            else:
                x = layer(x)
        return x

    def forward_slice(self, x: torch.Tensor, spec: int) -> torch.Tensor:
        if spec == self.max_kernel:
            return self(x)
        return self._run(x, lambda weight: centre_crop(weight, spec))

    def forward_superposed(self, x: torch.Tensor, weights: Mapping[int, torch.Tensor],
                           scale_by_mass: bool = False) -> torch.Tensor:
        mask = kernel_superposition(weights, self.max_kernel)
        mass = None
        for weight in weights.values():
            mass = weight if mass is None else mass + weight
        return self._run(x, lambda weight: weight * mask) * group_factor(mass, scale_by_mass)

    def slice_index(self, spec: int) -> list[tuple[nn.Parameter, Index]]:
        """What candidate `spec` computes with: the centre taps of the sliced kernels, every other parameter whole."""
        out: list[tuple[nn.Parameter, Index]] = []
        for i, layer in enumerate(self):
            for name, p in layer.named_parameters(recurse=True):
                taps = centre_taps(self.max_kernel, spec) if i in self.sliced and name == "weight" else None
                out.append((p, (slice(None), slice(None), *taps) if taps else ()))
        return out

    def slice_state(self, spec: int) -> dict[str, torch.Tensor]:
        """The state dict of the standalone op of candidate `spec` (same layout, cropped kernels), copied."""
        state = {key: value.detach().clone() for key, value in self.state_dict().items()}
        for i in self.sliced:
            state[f"{i}.weight"] = centre_crop(state[f"{i}.weight"], spec).clone()
        return state


def crop_to_input(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Drop the taps of a `[..., kh, kw]` kernel (odd, padding `k // 2`) that lie more than `height - 1` rows or
    `width - 1` columns from the centre: they only ever meet zero padding, so the output is the same (bit for bit),
    while oneDNN is up to 100x slower on depthwise kernels larger than their input (5x5 on a 1x1 map)."""
    kh, kw = weight.shape[-2:]
    eh, ew = min(kh, 2 * height - 1), min(kw, 2 * width - 1)
    if (eh, ew) == (kh, kw):
        return weight
    top, left = (kh - eh) // 2, (kw - ew) // 2
    return weight[..., top:top + eh, left:left + ew]


class HSwish(nn.Module):
    """Hard swish `x * relu6(x + 3) / 6` (MobileNetV3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)


def make_activation(name: str) -> nn.Module:
    """`relu`, `relu6`, `h_swish` or `none`."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "h_swish":
        return HSwish()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; accepted: relu, relu6, h_swish, none")


class ElasticConv2d(nn.Conv2d):
    """A dense conv over the largest `(out, in, K, K)` weight; a call uses `weight[:out, :x.shape[1]]`, centre
    crop `kernel`, padding `kernel // 2`."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1, bias: bool = False):
        super().__init__(max_in, max_out, max_kernel, stride=stride, padding=max_kernel // 2, bias=bias)

    def sliced(self, in_channels: int, out_channels: int | None = None, kernel: int | None = None):
        out_channels = out_channels or self.out_channels
        kernel = kernel or self.kernel_size[0]
        weight = centre_crop(self.weight[:out_channels, :in_channels], kernel)
        bias = self.bias[:out_channels] if self.bias is not None else None
        return weight, bias

    def forward(self, x: torch.Tensor, out_channels: int | None = None, kernel: int | None = None) -> torch.Tensor:
        weight, bias = self.sliced(x.shape[1], out_channels, kernel)
        return F.conv2d(x, weight, bias, self.stride, weight.shape[-1] // 2)

    def export(self, in_channels: int, out_channels: int | None = None, kernel: int | None = None) -> nn.Conv2d:
        weight, bias = self.sliced(in_channels, out_channels, kernel)
        conv = nn.Conv2d(in_channels, weight.shape[0], weight.shape[-1], stride=self.stride,
                         padding=weight.shape[-1] // 2, bias=bias is not None)
        with torch.no_grad():
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv


class ElasticDepthwiseConv2d(nn.Conv2d):
    """A depthwise conv over `max_channels` with the largest kernel; a call runs the first `x.shape[1]` channels
    with the centre `kernel x kernel` crop. `kernel_mask` (a `[k, k]` tensor) multiplies the cropped kernel: the
    differentiable kernel choice of ShiftNAS's matrix mapping."""

    def __init__(self, max_channels: int, max_kernel: int, stride: int = 1):
        super().__init__(max_channels, max_channels, max_kernel, stride=stride, padding=max_kernel // 2,
                         groups=max_channels, bias=False)

    def sliced(self, channels: int, kernel: int) -> torch.Tensor:
        return centre_crop(self.weight[:channels], kernel)

    def forward(self, x: torch.Tensor, kernel: int | None = None,
                kernel_mask: torch.Tensor | None = None) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.sliced(channels, kernel or self.kernel_size[0])
        if kernel_mask is not None:
            weight = weight * kernel_mask
        weight = crop_to_input(weight, x.shape[-2], x.shape[-1])
        return F.conv2d(x, weight, None, self.stride, (weight.shape[-2] // 2, weight.shape[-1] // 2), 1, channels)

    def export(self, channels: int, kernel: int) -> nn.Conv2d:
        conv = nn.Conv2d(channels, channels, kernel, stride=self.stride, padding=kernel // 2, groups=channels,
                         bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.sliced(channels, kernel))
        return conv


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first `x.shape[1]` channels of the largest layer: sliced affine parameters and sliced
    running statistics. The counter `num_batches_tracked` is shared by all widths (as in once-for-all). It keeps
    every BN-mode switch of `supernets.bn` working, because those only flip `training`/`track_running_stats`
    and `momentum`, which this forward honours exactly like `nn.BatchNorm2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels == self.num_features:
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep_stats = not self.training or self.track_running_stats
        mean = self.running_mean[:channels] if self.running_mean is not None and keep_stats else None
        var = self.running_var[:channels] if self.running_var is not None and keep_stats else None
        weight = self.weight[:channels] if self.weight is not None else None
        bias = self.bias[:channels] if self.bias is not None else None
        return F.batch_norm(x, mean, var, weight, bias, use_batch, factor, self.eps)

    def export(self, channels: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum, affine=self.affine,
                            track_running_stats=self.track_running_stats)
        with torch.no_grad():
            if self.affine:
                bn.weight.copy_(self.weight[:channels])
                bn.bias.copy_(self.bias[:channels])
            if self.track_running_stats:
                bn.running_mean.copy_(self.running_mean[:channels])
                bn.running_var.copy_(self.running_var[:channels])
                bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticLinear(nn.Linear):
    """A linear layer over the largest weight; a call uses `weight[:out, :x.shape[-1]]`."""

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        out_features = out_features or self.out_features
        bias = self.bias[:out_features] if self.bias is not None else None
        return F.linear(x, self.weight[:out_features, :x.shape[-1]], bias)

    def export(self, in_features: int, out_features: int | None = None) -> nn.Linear:
        out_features = out_features or self.out_features
        linear = nn.Linear(in_features, out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.weight[:out_features, :in_features])
            if self.bias is not None:
                linear.bias.copy_(self.bias[:out_features])
        return linear


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation of MobileNetV3 (reduce conv + ReLU, expand conv + hard sigmoid, both with bias);
    the standalone form that `ElasticSE.export` returns."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.expand = nn.Conv2d(squeeze, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(y))))


def se_squeeze(channels: int, reduction: int = 4) -> int:
    """Squeeze width of an SE block over `channels` (once-for-all: `make_divisible(channels // 4, 8)`)."""
    return make_divisible(channels // reduction, 8)


class ElasticSE(nn.Module):
    """Squeeze-and-excitation whose squeeze width follows the active channels: `se_squeeze(x.shape[1])`."""

    def __init__(self, max_channels: int, reduction: int = 4):
        super().__init__()
        self.reduction = reduction
        self.reduce = ElasticConv2d(max_channels, se_squeeze(max_channels, reduction), bias=True)
        self.expand = ElasticConv2d(se_squeeze(max_channels, reduction), max_channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y, se_squeeze(channels, self.reduction)))
        return x * F.hardsigmoid(self.expand(y, channels))

    def forward_masked(self, x: torch.Tensor, squeeze_mask: torch.Tensor) -> torch.Tensor:
        """The SE at its largest width with the squeeze units scaled by `squeeze_mask` (`[squeeze]`, >= 0): the
        superposition of the squeeze widths of several candidates (`ElasticMBConv.forward_superposed`)."""
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y) * squeeze_mask.view(1, -1, 1, 1).to(y.dtype))
        return x * F.hardsigmoid(self.expand(y, x.shape[1]))

    def export(self, channels: int) -> SqueezeExcite:
        squeeze = se_squeeze(channels, self.reduction)
        se = SqueezeExcite(channels, squeeze)
        se.reduce = self.reduce.export(channels, squeeze)
        se.expand = self.expand.export(squeeze, channels)
        return se


class MBConv(nn.Module):
    """A standalone inverted-residual block: [1x1 expand, BN, act], depthwise kxk (stride), BN, act, [SE],
    1x1 project, BN; identity shortcut when `residual`. What `ElasticMBConv.export` returns."""

    def __init__(self, expand: nn.Sequential | None, depthwise: nn.Sequential, se: nn.Module | None,
                 project: nn.Sequential, residual: bool):
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.se = se
        self.project = project
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class ElasticMBConv(nn.Module):
    """An inverted-residual block with elastic kernel and expand ratio over one set of largest weights.

    Hidden width for expand ratio `e`: `make_divisible(round(in * e), divisor)` (once-for-all), or exactly
    `in * e` with `divisor=None` (NAS-Bench-Macro). `expand_ratio == 1` blocks have no expand conv. The block
    computes at the real size of the candidate. Optional ShiftNAS masks (matrix mapping, §4.2) are multiplied
    in at that size: `channel_mask` (`[hidden]`) on the hidden activations before the projection,
    `kernel_mask` (`[k, k]`) on the depthwise kernel, `gate` on the residual branch; one-hot masks leave the
    output unchanged. Every BN follows `track_running_stats` (False for the `batch` BN mode).
    """

    def __init__(self, in_channels: int, out_channels: int, max_kernel: int, max_expand: float, stride: int,
                 activation: str, use_se: bool, residual: bool, divisor: int | None = 8,
                 fixed_expand: bool = False, track_running_stats: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.divisor, self.activation_name, self.residual = divisor, activation, residual
        self.has_expand = not (fixed_expand and max_expand == 1)
        hidden = self.hidden_channels(max_expand)
        if self.has_expand:
            self.expand_conv = ElasticConv2d(in_channels, hidden)
            self.expand_bn = ElasticBatchNorm2d(hidden, track_running_stats=track_running_stats)
        self.depthwise = ElasticDepthwiseConv2d(hidden, max_kernel, stride)
        self.depthwise_bn = ElasticBatchNorm2d(hidden, track_running_stats=track_running_stats)
        self.se = ElasticSE(hidden) if use_se else None
        self.project = ElasticConv2d(hidden, out_channels)
        self.project_bn = ElasticBatchNorm2d(out_channels, track_running_stats=track_running_stats)
        self.act = make_activation(activation)

    def hidden_channels(self, expand: float) -> int:
        if not self.divisor:
            return int(round(self.in_channels * expand))
        return make_divisible(round(self.in_channels * expand), self.divisor)

    # --- what one candidate trains (Supernet.choice_slices) --------------------------------------
    def kernel_slices(self, kernel: int) -> list[tuple[nn.Parameter, Index]]:
        """The taps kernel `kernel` computes with: the centre `kernel x kernel` of the depthwise kernel, over all
        hidden channels (channels beyond the active expand ratio simply carry no gradient in a step)."""
        return [(self.depthwise.weight, (slice(None), slice(None), *centre_taps(self.depthwise.kernel_size[0],
                                                                                 kernel)))]

    def expand_slices(self, expand: float) -> list[tuple[nn.Parameter, Index]]:
        """What expand ratio `expand` computes with: its first `h = hidden_channels(expand)` hidden channels in
        the expand conv (output rows) and its BN, the depthwise kernel (all taps) and its BN, the SE convs
        (`h` channels, squeeze width `se_squeeze(h)`, as `ElasticSE` slices them) and the input columns of the
        projection. The projection's BN does not depend on the expand ratio and belongs to no candidate."""
        h = slice(0, self.hidden_channels(expand))
        out: list[tuple[nn.Parameter, Index]] = []
        if self.has_expand:
            out += [(self.expand_conv.weight, (h,)), (self.expand_bn.weight, (h,)), (self.expand_bn.bias, (h,))]
        out += [(self.depthwise.weight, (h,)), (self.depthwise_bn.weight, (h,)), (self.depthwise_bn.bias, (h,))]
        if self.se is not None:
            q = slice(0, se_squeeze(h.stop, self.se.reduction))
            out += [(self.se.reduce.weight, (q, h)), (self.se.reduce.bias, (q,)),
                    (self.se.expand.weight, (h, q)), (self.se.expand.bias, (h,))]
        out.append((self.project.weight, (slice(None), h)))
        return [(p, index) for p, index in out if p is not None]  # BN without affine parameters

    def forward(self, x: torch.Tensor, kernel: int, expand: float, channel_mask: torch.Tensor | None = None,
                kernel_mask: torch.Tensor | None = None, gate: torch.Tensor | None = None) -> torch.Tensor:
        """The block at kernel `kernel` and expand ratio `expand`; `gate` (a scalar, ShiftNAS's depth mask)
        scales the residual branch: `x + gate * F(x)`."""
        y = x
        if self.has_expand:
            y = self.act(self.expand_bn(self.expand_conv(x, self.hidden_channels(expand))))
        y = self.act(self.depthwise_bn(self.depthwise(y, kernel, kernel_mask)))
        if self.se is not None:
            y = self.se(y)
        if channel_mask is not None:
            y = y * channel_mask.view(1, -1, 1, 1).to(y.dtype)
        y = self.project_bn(self.project(y))
        if gate is not None:
            y = y * gate.to(y.dtype)
        return x + y if self.residual else y

    # --- an entangled group of (expand, kernel) candidates (supernets.mixed.Sliceable) ----------------
    def forward_slice(self, x: torch.Tensor, spec: tuple[float, int]) -> torch.Tensor:
        """Candidate `spec = (expand, kernel)` at its real size: `forward(x, kernel, expand)`."""
        expand, kernel = spec
        return self(x, kernel, expand)

    def forward_superposed(self, x: torch.Tensor, weights: Mapping[Hashable, torch.Tensor],
                           scale_by_mass: bool = False) -> torch.Tensor:
        """TangleNAS's superposition of candidates `(expand, kernel) -> a` (keyed by value) in ONE block call at
        the largest size. Each weight the candidates slice becomes `sum_m a_m * Pad(Slice_m(W))`, a plain tensor
        recomputed on every call:

        - the depthwise kernel: `W * sum_m a_m 1[c < h_m] 1[tap within k_m]` (channel c, `h_m` the hidden width);
        - the hidden channels the expand ratio slices: the activations after the depthwise block are scaled by
          `sum_m a_m 1[c < h_m]` before the SE block and the projection, i.e. the input columns of both are
          superposed (the channel-masked expand of the elastic layers); the SE's squeeze units likewise by
          `sum_m a_m 1[q < se_squeeze(h_m)]`.

        The expand conv and the BNs run at the largest width: a BN normalises a scaled channel back, so weighting
        them would only add work. A residual block's skip belongs to every candidate, so it is weighted by the
        total `sum_m a_m`; the rest of the output is multiplied by `group_factor` (0 when every weight is 0, the
        total with `scale_by_mass`). At a one-hot weight every channel beyond the candidate's width and every tap
        beyond its kernel contributes exactly zero, so the output is the candidate's (`forward_slice`), up to
        rounding; in training mode the BN running statistics of the wider channels are updated too."""
        specs = list(weights)
        return self.superposed(x, specs, torch.stack([weights[spec] for spec in specs]), scale_by_mass)

    def superposed(self, x: torch.Tensor, specs: list[tuple[float, int]], a: torch.Tensor,
                   scale_by_mass: bool = False) -> torch.Tensor:
        """`forward_superposed` with the candidates' weights stacked: `a[m]` is the weight of `specs[m]`."""
        hidden, size = self.depthwise.weight.shape[0], self.depthwise.kernel_size[0]
        device, dtype = a.device, a.dtype
        channel = torch.arange(hidden, device=device)
        widths = torch.stack([channel < self.hidden_channels(e) for e, _ in specs]).to(dtype)  # [M, hidden]
        offset = torch.arange(size, device=device) - size // 2
        radius = torch.maximum(offset[:, None].abs(), offset[None, :].abs())
        taps = torch.stack([radius <= k // 2 for _, k in specs]).to(dtype)  # [M, K, K]
        kernel_mask = torch.einsum("m,mc,mij->cij", a, widths, taps)
        channel_mask = (a @ widths).view(1, -1, 1, 1)
        y = x
        if self.has_expand:
            y = self.act(self.expand_bn(self.expand_conv(x)))
        weight = crop_to_input(self.depthwise.weight * kernel_mask[:, None], y.shape[-2], y.shape[-1])
        y = F.conv2d(y, weight, None, self.depthwise.stride, (weight.shape[-2] // 2, weight.shape[-1] // 2), 1, hidden)
        y = self.act(self.depthwise_bn(y)) * channel_mask.to(y.dtype)
        if self.se is not None:
            squeeze = torch.arange(self.se.reduce.out_channels, device=device)
            units = torch.stack([squeeze < se_squeeze(self.hidden_channels(e), self.se.reduction) for e, _ in specs])
            y = self.se.forward_masked(y, a @ units.to(dtype))
        mass = a.sum()
        y = self.project_bn(self.project(y)) * group_factor(mass, scale_by_mass)
        return mass * x + y if self.residual else y  # each candidate's own skip, weighted: sum_m a_m (x + F_m(x))

    def export(self, kernel: int, expand: float) -> MBConv:
        hidden = self.hidden_channels(expand) if self.has_expand else self.in_channels
        expand_layers = None
        if self.has_expand:
            expand_layers = nn.Sequential(self.expand_conv.export(self.in_channels, hidden),
                                          self.expand_bn.export(hidden), make_activation(self.activation_name))
        depthwise = nn.Sequential(self.depthwise.export(hidden, kernel), self.depthwise_bn.export(hidden),
                                  make_activation(self.activation_name))
        se = self.se.export(hidden) if self.se is not None else None
        project = nn.Sequential(self.project.export(hidden, self.out_channels),
                                self.project_bn.export(self.out_channels))
        return MBConv(expand_layers, depthwise, se, project, self.residual)

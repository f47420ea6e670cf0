"""Counting passes over a real network: multiply-adds and parameters, to check the analytic costs of a space.

`count_flops` runs one forward pass with hooks on every `nn.Conv2d` and `nn.Linear` and adds their multiply-adds
for one input, so it measures what the network actually computes (real feature-map sizes, real groups).
The convention is the one of the analytic `flops` of the spaces (NAS-Bench-Macro's and once-for-all's counters):

- conv: `out_h * out_w * k_h * k_w * in / groups * out` per image;
- linear: `in * out` per row (times the number of rows, for inputs with extra leading dimensions);
- biases only with `bias=True` (one add per output element); BatchNorm, activations, additions and pooling are
  never counted.

Count a standalone network (`supernet.export(arch)`), not a supernet: elastic layers slice their weights inside
`forward`, so their module attributes do not describe the computation and they are refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _check_plain(module: nn.Module) -> None:
    for base in (nn.Conv2d, nn.Linear):
        if isinstance(module, base) and type(module).forward is not base.forward:
            raise ValueError(
                f"cannot count {type(module).__name__}: it computes a slice of its weight; count the standalone "
                f"network of an arch (supernet.export(arch)) instead"
            )


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int], bias: bool = False, pools: bool = False) -> int:
    """Multiply-adds of convolutions and linear layers for ONE input of shape `input_shape` (without the batch
    dimension, e.g. `(3, 32, 32)`), measured with forward hooks during one forward pass in eval mode.

    `bias=True` adds one operation per output element of every layer that has a bias (NB201's convention);
    the default leaves biases out (NAS-Bench-Macro's and once-for-all's convention). `pools=True` adds k*k per
    output element of every max/average pooling window (not global pooling): the DARTS space's and NB201's `macs`.
    A space declares its convention (`Space.flops_convention`), so `count_flops(child, shape,
    **vars(space.flops_convention))` checks its `flops`.
    """
    total = 0

    def pool_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size
        k_h, k_w = (k, k) if isinstance(k, int) else k
        total += output[0].numel() * k_h * k_w

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        k_h, k_w = module.kernel_size
        per_output = (module.in_channels // module.groups) * k_h * k_w
        total += output[0].numel() * per_output + (output[0].numel() if bias and module.bias is not None else 0)

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        rows = output[0].numel() // module.out_features
        total += rows * module.in_features * module.out_features
        total += output[0].numel() if bias and module.bias is not None else 0

    handles = []
    for module in model.modules():
        _check_plain(module)
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif pools and isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            handles.append(module.register_forward_hook(pool_hook))
    was_training = model.training
    try:
        ref = next(iter(model.parameters()), None)
        # two images, so that BN layers normalising with batch statistics accept 1x1 feature maps; hooks count one
        x = torch.zeros(2, *input_shape, device=ref.device if ref is not None else None,
                        dtype=ref.dtype if ref is not None else None)
        model.eval()
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total)


def count_params(model: nn.Module) -> int:
    """Number of parameters of `model` (each shared parameter counted once)."""
    return sum(p.numel() for p in model.parameters())

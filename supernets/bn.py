"""BatchNorm evaluation modes of a supernet (specs/ALGORITHMS.md §0.5).

- `batch`: BN without running statistics; every forward normalises with the statistics of its own batch
  (PA&DA, GM-NAS RSWS). Results then depend on the evaluation batch size, which is recorded with them.
- `running`: running statistics accumulated over all sampled paths during training (TangleNAS, DARTS).
- `recalibrate`: reset the statistics and re-estimate them for one subnet on a fixed set of training batches
  (cumulative average, train mode, no gradient), then evaluate with them (OFA-style elastic spaces).

A supernet built with tracked statistics (`running`/`recalibrate`) can be evaluated in any mode; one built in
`batch` mode has no statistics to use, so only `batch` is possible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

BN_MODES: tuple[str, ...] = ("batch", "running", "recalibrate")


def check_mode(mode: str) -> str:
    if mode not in BN_MODES:
        raise ValueError(f"unknown BN mode {mode!r}; accepted: {', '.join(BN_MODES)}")
    return mode


def make_bn(channels: int, affine: bool, mode: str) -> nn.BatchNorm2d:
    """A BatchNorm2d built for a BN mode: `batch` keeps no running statistics."""
    return nn.BatchNorm2d(channels, affine=affine, track_running_stats=check_mode(mode) != "batch")


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def tracks_stats(module: nn.Module) -> bool:
    """Whether the module's BN layers keep running statistics."""
    return any(bn.track_running_stats for bn in batchnorms(module))


def check_eval_mode(module: nn.Module, mode: str) -> None:
    """Raise a clear error when `mode` needs running statistics the module does not keep."""
    check_mode(mode)
    if mode != "batch" and not tracks_stats(module):
        raise ValueError(
            f"BN mode {mode!r} needs a supernet built with running statistics (bn_mode running or recalibrate); "
            "this one was built with bn_mode batch, so evaluate it with bn_mode batch"
        )


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Normalise with batch statistics without touching any running statistics, then restore the BN layers."""
    saved = [(bn, bn.training, bn.track_running_stats) for bn in batchnorms(module)]
    try:
        for bn, _, _ in saved:
            bn.training = True
            bn.track_running_stats = False  # F.batch_norm then receives no running buffers to update
        yield
    finally:
        for bn, training, track in saved:
            bn.training = training
            bn.track_running_stats = track


@torch.no_grad()
def recalibrate(
    module: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[torch.Tensor],
) -> int:
    """Re-estimate BN running statistics with `forward(x)` over `batches` (cumulative average).

    Statistics of BN layers the forward does not reach are reset too, so no statistic of another subnet
    leaks into the result. Returns the number of batches used. The module is left in eval mode.
    """
    bns = batchnorms(module)
    momenta = [bn.momentum for bn in bns]
    was_training = module.training
    for bn in bns:
        if not bn.track_running_stats:
            raise ValueError("recalibration needs BN layers with running statistics")
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration batches
    module.train()
    count = 0
    try:
        for x in batches:
            forward(x)
            count += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        module.train(was_training)
    module.eval()
    return count

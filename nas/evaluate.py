"""Scoring archs with inherited weights: accuracy of one path of the supernet on a device-resident split.

The evaluation data stays on the device and archs are evaluated back to back without rebuilding anything.
BN modes (specs/ALGORITHMS.md 0.5): `batch` normalises with each eval batch (the eval batch size is part of
the result), `running` uses the statistics accumulated in training, `recalibrate` re-estimates them for each
arch on a fixed, seeded set of training images and then restores the training statistics, so evaluating
never changes the supernet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

import supernets
from searchspaces import Arch

from .runtime import autocast


@contextlib.contextmanager
def _preserved_bn_stats(net: nn.Module) -> Iterator[None]:
    """Restore every BN running statistic after the block (recalibration overwrites them)."""
    saved = {
        name: buf.clone() for name, buf in net.named_buffers()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }
    try:
        yield
    finally:
        state = dict(net.named_buffers())
        with torch.no_grad():
            for name, value in saved.items():
                state[name].copy_(value)


@torch.no_grad()
def accuracy(model: nn.Module, split, batch_size: int, device: torch.device, amp: bool = False) -> float:
    """Top-1 accuracy (%) of a standalone model in eval mode on a device-resident split."""
    return accuracy_and_loss(model, split, batch_size, device, amp)[0]


@torch.no_grad()
def accuracy_and_loss(model: nn.Module, split, batch_size: int, device: torch.device,
                      amp: bool = False) -> tuple[float, float]:
    """Top-1 accuracy (%) and mean cross-entropy of a standalone model in eval mode on a device-resident split.

    The loss separates models that classify the same images correctly (accuracy on a few hundred images ties
    often); one host sync at the end."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    for batch in split.batches(batch_size, augment=False):
        with autocast(device, amp):
            logits = model(batch.x)
        correct += (logits.argmax(1) == batch.y).sum()
        loss += F.cross_entropy(logits.float(), batch.y, reduction="sum").double()
    return 100.0 * correct.item() / len(split), loss.item() / len(split)


class ArchEvaluator:
    """`evaluator(arch) -> top-1 accuracy (%)` on one split with the supernet's inherited weights."""

    def __init__(self, net: supernets.Supernet, split, batch_size: int = 512, bn_mode: str = "batch",
                 calib_split=None, calib_batches: int = 10, calib_batch_size: int = 200,
                 calib_seed: int = 0, amp: bool = False):
        supernets.check_eval_mode(net, bn_mode)
        self.net, self.split, self.batch_size, self.bn_mode, self.amp = net, split, batch_size, bn_mode, amp
        self.device = next(net.parameters()).device
        self.calib: list[torch.Tensor] = []
        if bn_mode == "recalibrate":
            if calib_split is None:
                raise ValueError("BN mode recalibrate needs training data to recalibrate on")
            generator = torch.Generator().manual_seed(calib_seed)
            count = min(len(calib_split), calib_batches * calib_batch_size)
            order = torch.randperm(len(calib_split), generator=generator)[:count]
            self.calib = [b.x for b in calib_split.batches(calib_batch_size, order=order, augment=False)]

    @property
    def description(self) -> dict:
        """What the score depends on, recorded with every result."""
        info = {"bn_mode": self.bn_mode, "eval_batch_size": self.batch_size, "num_samples": len(self.split)}
        if self.bn_mode == "recalibrate":
            info["calib_images"] = sum(len(x) for x in self.calib)
        return info

    @torch.no_grad()
    def __call__(self, arch: Arch) -> float:
        net = self.net
        was_training = net.training
        with contextlib.ExitStack() as stack:
            if self.bn_mode == "recalibrate":
                stack.enter_context(_preserved_bn_stats(net))
                supernets.recalibrate(net, lambda x: net(x, arch), self.calib)
            net.eval()
            if self.bn_mode == "batch":
                stack.enter_context(supernets.batch_statistics(net))
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            for batch in self.split.batches(self.batch_size, augment=False):
                with autocast(self.device, self.amp):
                    logits = net(batch.x, arch)
                correct += (logits.argmax(1) == batch.y).sum()
        net.train(was_training)
        return 100.0 * correct.item() / len(self.split)

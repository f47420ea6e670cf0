"""A dataset kept whole as tensors on the training device, and its batch iterator.

Small image datasets (CIFAR: 150 MB of uint8) fit on any accelerator, so the training loop never
waits for a host-side loader: batches are slices or `index_select`s of device tensors, augmentation
runs on the device (`nas.data.augment`), and randomness is drawn once per epoch from a CPU generator
so that runs are reproducible whatever the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch

from nas.data.augment import Augment, crop_flip, draw_params
from nas.errors import UserError


class Batch(NamedTuple):
    """One batch: normalised float32 images, int64 labels, and each sample's index in its source split."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


class DeviceDataset:
    """Images (uint8 N x C x H x W), labels and source indices on one device, with per-channel mean/std.

    `indices[i]` is sample i's position in its original source split (e.g. the 50k CIFAR train set);
    samplers that keep per-sample statistics (PA&DA) key on it, so it survives `subset`.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        mean: torch.Tensor | Sequence[float],
        std: torch.Tensor | Sequence[float],
        augment: Augment | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        n, channels = images.shape[0], images.shape[1]
        if labels.shape != (n,) or indices.shape != (n,):
            raise ValueError(
                f"labels {tuple(labels.shape)} and indices {tuple(indices.shape)} must both have shape ({n},)"
            )
        device = images.device
        self.images = images
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.indices = indices.to(device=device, dtype=torch.int64)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).to(device)
        self.std = torch.as_tensor(std, dtype=torch.float32).to(device)
        if self.mean.shape != (channels,) or self.std.shape != (channels,):
            raise ValueError(f"mean and std need one value per channel ({channels})")
        self.augment = augment
        self._mean4 = self.mean.view(1, channels, 1, 1)
        self._std4 = self.std.view(1, channels, 1, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (
            f"DeviceDataset(n={len(self)}, shape={tuple(self.images.shape[1:])}, "
            f"device={self.device}, augment={self.augment})"
        )

    @property
    def device(self) -> torch.device:
        """The device every tensor of this dataset lives on."""
        return self.images.device

    @property
    def in_channels(self) -> int:
        """Number of image channels C."""
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        """Image height (= width)."""
        return self.images.shape[2]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 `(v/255 - mean) / std`, on the images' device."""
        return images.to(torch.float32).div_(255.0).sub_(self._mean4).div_(self._std4)

    def subset(self, positions: torch.Tensor) -> DeviceDataset:
        """The samples at `positions` (int64 positions in this dataset), keeping their source indices."""
        positions = torch.as_tensor(positions, dtype=torch.int64).to(self.device)
        return DeviceDataset(
            self.images.index_select(0, positions),
            self.labels.index_select(0, positions),
            self.indices.index_select(0, positions),
            self.mean,
            self.std,
            self.augment,
        )

    def with_augment(self, augment: Augment | None) -> DeviceDataset:
        """The same samples (shared tensors, no copy) with another augmentation, e.g. train's on valid."""
        return DeviceDataset(self.images, self.labels, self.indices, self.mean, self.std, augment)

    def num_batches(self, batch_size: int, drop_last: bool = False, *, num_samples: int | None = None) -> int:
        """How many batches `batches` yields for an epoch of `num_samples` (default: len(self)) samples."""
        _check_batch_size(batch_size)
        n = len(self) if num_samples is None else num_samples
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        augment: bool = True,
        order: torch.Tensor | None = None,
    ) -> Iterator[Batch]:
        """Iterate over one epoch in batches of `batch_size`.

        The epoch visits `order` (int64 positions into this dataset, repeats allowed: an importance
        sampler's resampled list) if given, else a `torch.randperm` from `generator` if `shuffle`, else
        the stored order. Augmentation (if `augment` and the dataset has one) draws all of the epoch's
        crop offsets and flips from `generator` up front, so an epoch is a pure function of the
        generator state. All per-batch work is device-side: no host syncs, no per-sample Python.
        """
        _check_batch_size(batch_size)
        n = len(self)
        positions: torch.Tensor | None = None
        if order is not None:
            positions = self._check_order(order)
        elif shuffle:
            gen_device = generator.device if generator is not None else torch.device("cpu")
            positions = torch.randperm(n, generator=generator, device=gen_device).to(self.device)
        count = n if positions is None else positions.shape[0]
        aug = self.augment if augment and self.augment is not None and self.augment.active else None
        offsets = flips = None
        if aug is not None:
            offsets, flips = draw_params(count, aug, generator, self.device)
        return self._iterate(positions, count, batch_size, drop_last, offsets, flips, aug)

    def _check_order(self, order: torch.Tensor) -> torch.Tensor:
        if not isinstance(order, torch.Tensor) or order.dim() != 1 or order.is_floating_point():
            raise ValueError("order must be a 1-D integer tensor of positions into the dataset")
        positions = order.to(device=self.device, dtype=torch.int64)
        # One check per epoch (a single host sync); an out-of-range position would otherwise surface
        # as an opaque device-side assert in the middle of an epoch.
        if positions.numel() and bool(((positions < 0) | (positions >= len(self))).any()):
            raise ValueError(f"order holds positions outside [0, {len(self)})")
        return positions

    def _iterate(
        self,
        positions: torch.Tensor | None,
        count: int,
        batch_size: int,
        drop_last: bool,
        offsets: torch.Tensor | None,
        flips: torch.Tensor | None,
        aug: Augment | None,
    ) -> Iterator[Batch]:
        stop = count - count % batch_size if drop_last else count
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, count)
            if positions is None:
                images = self.images[start:end]
                labels = self.labels[start:end]
                index = self.indices[start:end]
            else:
                pos = positions[start:end]
                images = self.images.index_select(0, pos)
                labels = self.labels.index_select(0, pos)
                index = self.indices.index_select(0, pos)
            if aug is not None:
                images = crop_flip(
                    images,
                    None if offsets is None else offsets[start:end],
                    None if flips is None else flips[start:end],
                    aug.pad,
                )
            yield Batch(self.normalize(images), labels, index)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch size must be a positive integer, got {batch_size!r}.")

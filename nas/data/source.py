"""`RawData`: one dataset's arrays as its reader produced them, before any split or device move.

Readers (digits, synthetic, cifar, imagenet16) return this; `nas.data.bundle` turns it into the
train/valid/test `DeviceDataset`s. Arrays are made read-only because they are cached and shared
between loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nas.data.augment import Augment


@dataclass(frozen=True)
class RawData:
    """A train pool and a test set as uint8 N x C x H x W arrays with int64 labels and source indices.

    `pool_indices` / `test_indices` are each sample's position in its original source split
    (default 0..N-1); the validation split is carved out of the pool later, seeded by `split_seed`.
    """

    pool_images: np.ndarray
    pool_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment | None
    source: str
    pool_indices: np.ndarray | None = None
    test_indices: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in ("pool", "test"):
            images = np.ascontiguousarray(getattr(self, f"{part}_images"), dtype=np.uint8)
            labels = np.asarray(getattr(self, f"{part}_labels"), dtype=np.int64)
            indices = getattr(self, f"{part}_indices")
            if indices is None:
                indices = np.arange(len(labels), dtype=np.int64)
            indices = np.asarray(indices, dtype=np.int64)
            if images.ndim != 4 or images.shape[2] != images.shape[3]:
                raise ValueError(f"{part} images must be N x C x H x H, got {images.shape}")
            if not len(images) == len(labels) == len(indices):
                raise ValueError(f"{part}: {len(images)} images, {len(labels)} labels, {len(indices)} ids")
            for name, array in (("images", images), ("labels", labels), ("indices", indices)):
                array.setflags(write=False)
                object.__setattr__(self, f"{part}_{name}", array)
        if self.pool_images.shape[1:] != self.test_images.shape[1:]:
            shapes = f"{self.pool_images.shape} vs {self.test_images.shape}"
            raise ValueError(f"pool and test images differ in shape: {shapes}")

    @property
    def in_channels(self) -> int:
        """Number of image channels."""
        return int(self.pool_images.shape[1])

    @property
    def image_size(self) -> int:
        """Image height (= width)."""
        return int(self.pool_images.shape[2])

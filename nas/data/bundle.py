"""`DataBundle` and the seeded train/valid split that turns `RawData` into device datasets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nas.data.augment import Augment
from nas.data.source import RawData
from nas.data.tensors import DeviceDataset
from nas.errors import UserError


@dataclass
class DataBundle:
    """Everything a run needs from a dataset: the three splits on the device and a description.

    `valid` is None when `valid_fraction` is 0. Only `train` carries the dataset's augmentation;
    `valid` and `test` have none so that evaluation is deterministic (use `valid.with_augment(...)`
    for bi-level methods that want augmented validation batches). `info` is JSON-serialisable and
    goes into the run directory.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    train: DeviceDataset
    valid: DeviceDataset | None
    test: DeviceDataset
    info: dict


def split_pool(pool_size: int, valid_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of positions 0..pool_size-1 into sorted (train, valid) position arrays.

    The valid part has round(valid_fraction * pool_size) samples (at least 1 when the fraction is
    positive); both parts are sorted so that a split depends on the seed only, never on call order.
    """
    n_valid = 0 if valid_fraction == 0 else max(1, int(round(valid_fraction * pool_size)))
    if n_valid >= pool_size:
        raise UserError(
            f"valid_fraction {valid_fraction} leaves no training samples out of {pool_size}; "
            "use a smaller fraction."
        )
    perm = np.random.default_rng(split_seed).permutation(pool_size)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def make_bundle(
    name: str, raw: RawData, *, valid_fraction: float, split_seed: int, device: torch.device
) -> DataBundle:
    """Split `raw`'s pool into train/valid with `split_seed` and move all three splits to `device`."""
    train_pos, valid_pos = split_pool(len(raw.pool_labels), valid_fraction, split_seed)

    def dataset(
        images: np.ndarray, labels: np.ndarray, indices: np.ndarray, augment: Augment | None
    ) -> DeviceDataset:
        # Fancy indexing copies, so the cached read-only arrays are never shared with the tensors.
        return DeviceDataset(
            torch.from_numpy(images).to(device),
            torch.from_numpy(labels).to(device),
            torch.from_numpy(indices).to(device),
            raw.mean,
            raw.std,
            augment,
        )

    def part(positions: np.ndarray, augment: Augment | None) -> DeviceDataset:
        return dataset(
            raw.pool_images[positions], raw.pool_labels[positions], raw.pool_indices[positions], augment
        )

    train = part(train_pos, raw.augment)
    valid = part(valid_pos, None) if len(valid_pos) else None
    test = dataset(raw.test_images.copy(), raw.test_labels.copy(), raw.test_indices.copy(), None)
    info = {
        "name": name,
        "num_classes": raw.num_classes,
        "in_channels": raw.in_channels,
        "image_size": raw.image_size,
        "source": raw.source,
        "sizes": {
            "pool": len(raw.pool_labels),
            "train": len(train),
            "valid": len(valid_pos),
            "test": len(test),
        },
        "valid_fraction": valid_fraction,
        "split_seed": split_seed,
        "augment": raw.augment.to_dict() if raw.augment is not None else None,
        "mean": [float(v) for v in raw.mean],
        "std": [float(v) for v in raw.std],
        "device": str(device),
        **raw.extra,
    }
    return DataBundle(name, raw.num_classes, raw.in_channels, raw.image_size, train, valid, test, info)

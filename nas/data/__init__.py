"""Datasets as tensors on the training device: `load(name, ...)` returns a `DataBundle`.

    from nas import data
    bundle = data.load("cifar10", data_dir="~/data", valid_fraction=0.5, device="cuda")
    for x, y, index in bundle.train.batches(256, shuffle=True, generator=gen):
        ...

Every dataset fits in device memory, so batching and augmentation happen on the device without a
host-side loader; `index` is each sample's position in its source split (for per-sample samplers).
"""

from nas.data.augment import Augment
from nas.data.bundle import DataBundle
from nas.data.download import DOWNLOADS
from nas.data.registry import DATA_DIR_ENV, DATASETS, clear_cache, default_data_dir, load
from nas.data.tensors import Batch, DeviceDataset

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DOWNLOADS",
    "Augment",
    "Batch",
    "DataBundle",
    "DeviceDataset",
    "clear_cache",
    "default_data_dir",
    "load",
]

"""ImageNet16-120: the NAS-Bench-201 16x16 downsampled ImageNet, restricted to classes 1..120.

The files (`train_data_batch_1..10`, `val_data`) come from the downsampled-ImageNet release, which
needs a login, so there is no download: the user points --data-dir at them. Labels in the files are
1-based ImageNet classes; NAS-Bench-201 keeps labels 1..120 and shifts them to 0..119.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nas.data.augment import Augment
from nas.data.pickles import read_batch
from nas.data.source import RawData
from nas.errors import UserError

SUBFOLDER = "ImageNet16"
TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
TEST_FILE = "val_data"
NUM_CLASSES = 120
AUGMENT = Augment(pad=2, flip=True)
MEAN = tuple(x / 255 for x in (122.68, 116.66, 104.01))
STD = tuple(x / 255 for x in (63.22, 61.26, 65.09))


def locate_imagenet16(data_dir: Path) -> Path:
    """`data_dir/ImageNet16` or `data_dir`, whichever holds all eleven files."""
    names = (*TRAIN_FILES, TEST_FILE)
    for folder in (data_dir / SUBFOLDER, data_dir):
        if all((folder / n).is_file() for n in names):
            return folder
    raise UserError(
        f"imagenet16-120 not found: expected train_data_batch_1 .. train_data_batch_10 and val_data in "
        f"{data_dir / SUBFOLDER}/ or {data_dir}/ (it cannot be downloaded automatically; "
        "get the NAS-Bench-201 ImageNet16 files and pass --data-dir)."
    )


def read_imagenet16(data_dir: Path) -> RawData:
    """Read the 120-class train pool and test set; indices count positions after the class filter."""
    folder = locate_imagenet16(data_dir)
    pool_images, pool_labels = _read_filtered([folder / f for f in TRAIN_FILES])
    test_images, test_labels = _read_filtered([folder / TEST_FILE])
    return RawData(
        pool_images=pool_images,
        pool_labels=pool_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=NUM_CLASSES,
        mean=MEAN,
        std=STD,
        augment=AUGMENT,
        source=str(folder.resolve()),
        extra={"label_filter": f"1..{NUM_CLASSES} (shifted to 0-based)"},
    )


def _read_filtered(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in paths:
        # Filter file by file: the full train set is ~1 GB, the 120-class part about an eighth of it.
        data, label = read_batch(path, "labels", channels=3, size=16)
        keep = (label >= 1) & (label <= NUM_CLASSES)
        images.append(data[keep])
        labels.append(label[keep] - 1)
    return np.concatenate(images), np.concatenate(labels)

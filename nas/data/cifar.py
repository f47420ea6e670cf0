"""CIFAR-10 and CIFAR-100 in their standard python-format archives.

Looked up in `data_dir` as the extracted folder (`cifar-10-batches-py/`, `cifar-100-python/`), as
`data_dir` itself being that folder, or as the `.tar.gz` archive (verified and extracted in place);
fetched from the official site with `download=True`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.data import download as remote
from nas.data.archives import extract_folder, verify_md5
from nas.data.augment import Augment
from nas.data.pickles import read_batch
from nas.data.source import RawData
from nas.errors import UserError

AUGMENT = Augment(pad=4, flip=True)


@dataclass(frozen=True)
class CifarFormat:
    """File layout and statistics of one CIFAR variant."""

    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


# Mean/std are the NAS-Bench-201 values (per-dataset), so supernets see the inputs the benchmark's
# stand-alone networks were trained on.
FORMATS: dict[str, CifarFormat] = {
    "cifar10": CifarFormat(
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        num_classes=10,
        mean=tuple(x / 255 for x in (125.3, 123.0, 113.9)),
        std=tuple(x / 255 for x in (63.0, 62.1, 66.7)),
    ),
    "cifar100": CifarFormat(
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        num_classes=100,
        mean=tuple(x / 255 for x in (129.3, 124.1, 112.4)),
        std=tuple(x / 255 for x in (68.2, 65.4, 70.4)),
    ),
}


def locate_cifar(name: str, data_dir: Path, download: bool) -> Path:
    """The extracted folder of `name`, extracting a local archive or downloading it when needed."""
    fmt = FORMATS[name]
    folder = data_dir / fmt.folder
    if folder.is_dir():
        return folder
    if all((data_dir / f).is_file() for f in (*fmt.train_files, *fmt.test_files)):
        return data_dir  # --data-dir points at the extracted folder itself, whatever its name
    archive = data_dir / fmt.archive
    if archive.is_file():
        if name in remote.DOWNLOADS:
            verify_md5(archive, remote.DOWNLOADS[name].md5)
        return extract_folder(archive, fmt.folder, data_dir)
    if download:
        source = remote.DOWNLOADS[name]
        with remote.downloaded(source.url, source.md5, data_dir) as fetched:
            return extract_folder(fetched, fmt.folder, data_dir)
    raise UserError(
        f"{name} not found: looked for {folder}/ and {archive}; "
        "pass --download to fetch it or --data-dir to point at the folder that holds it."
    )


def read_cifar(name: str, data_dir: Path, download: bool = False) -> RawData:
    """Read the 50k train pool and 10k test set of `name` ('cifar10' or 'cifar100') from `data_dir`."""
    fmt = FORMATS[name]
    folder = locate_cifar(name, data_dir, download)
    pool_images, pool_labels = _read_files(folder, fmt.train_files, fmt)
    test_images, test_labels = _read_files(folder, fmt.test_files, fmt)
    return RawData(
        pool_images=pool_images,
        pool_labels=pool_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=fmt.num_classes,
        mean=fmt.mean,
        std=fmt.std,
        augment=AUGMENT,
        source=str(folder.resolve()),
    )


def _read_files(folder: Path, files: tuple[str, ...], fmt: CifarFormat) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_batch(folder / f, fmt.label_key, channels=3, size=32) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if len(labels) and (labels.min() < 0 or labels.max() >= fmt.num_classes):
        raise UserError(
            f"{folder} has labels in [{labels.min()}, {labels.max()}]; "
            f"expected 0..{fmt.num_classes - 1} for {fmt.folder}."
        )
    return images, labels

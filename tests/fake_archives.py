"""Tiny dataset files in the real on-disk formats (CIFAR python batches, NB201 ImageNet16 pickles).

The images are random but known, so a test can compare what the readers return pixel for pixel,
and image 0 of each file carries a fixed pattern (R = column ramp, G = 0, B = 255) that a reader
mixing up CHW and HWC, or rows and columns, cannot reproduce.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
        10,
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}


def pattern_image(size: int) -> np.ndarray:
    """3 x size x size uint8: red = column index * 7, green = 0, blue = 255."""
    image = np.zeros((3, size, size), dtype=np.uint8)
    image[0] = (np.arange(size, dtype=np.uint8) * 7)[None, :]
    image[2] = 255
    return image


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    images[0] = pattern_image(size)
    return images


def _dump(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar_files(
    name: str, n_per_file: int = 20, seed: int = 0
) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """Pickled batch files of a fake `name` ('cifar10'/'cifar100') and the arrays they hold.

    Returns ({relative path: file bytes}, {"train_images", "train_labels", "test_images", "test_labels"}).
    cifar10 files use bytes keys (as `pickle.load(encoding="bytes")` sees the originals); cifar100
    files use str keys (as `encoding="latin1"` sees them), so both spellings are exercised.
    """
    folder, train_files, test_files, label_key, num_classes = CIFAR_LAYOUT[name]
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    arrays: dict[str, list] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    for split, names in (("train", train_files), ("test", test_files)):
        for file in names:
            images = _images(rng, n_per_file, 32)
            labels = rng.integers(0, num_classes, size=n_per_file)
            labels[:2] = (0, num_classes - 1)
            batch = {"data": images.reshape(n_per_file, -1), label_key: labels.tolist(), "batch_label": file}
            if name == "cifar100":
                batch["coarse_labels"] = (labels // 5).tolist()
            else:
                batch = {k.encode(): v for k, v in batch.items()}
            files[f"{folder}/{file}"] = pickle.dumps(batch, protocol=2)
            arrays[f"{split}_images"].append(images)
            arrays[f"{split}_labels"].append(labels)
    return files, {k: np.concatenate(v) for k, v in arrays.items()}


def write_cifar(root: Path, name: str, **kwargs) -> dict[str, np.ndarray]:
    """Write the extracted folder of a fake `name` under `root`; returns the arrays it holds."""
    files, arrays = cifar_files(name, **kwargs)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return arrays


def write_cifar_tar_gz(path: Path, name: str, **kwargs) -> dict[str, np.ndarray]:
    """Write a fake `name` as a .tar.gz laid out like the official archive; returns its arrays."""
    files, arrays = cifar_files(name, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        folder = CIFAR_LAYOUT[name][0]
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return arrays


def write_imagenet16(folder: Path, n_per_file: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Write `train_data_batch_1..10` and `val_data` (labels 1..200, 1-based) into `folder`.

    Returns the raw arrays ("train_images", "train_labels", "test_images", "test_labels") before
    any class filtering, labels still 1-based.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, list] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    names = [(f"train_data_batch_{i}", "train") for i in range(1, 11)] + [("val_data", "test")]
    for file, split in names:
        images = _images(rng, n_per_file, 16)
        labels = rng.integers(1, 201, size=n_per_file)
        labels[:4] = (1, 120, 121, 200)  # both edges of the kept range and two dropped classes
        batch = {"data": images.reshape(n_per_file, -1), "labels": labels.tolist(), "mean": None}
        _dump(folder / file, batch)
        arrays[f"{split}_images"].append(images)
        arrays[f"{split}_labels"].append(labels)
    return {k: np.concatenate(v) for k, v in arrays.items()}

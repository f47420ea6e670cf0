"""`load(name, ...)`: the one entry point from a dataset name and options to a `DataBundle`.

Raw arrays are read once per process and cached by (name, data directory), so a sweep of runs or
repeated `load` calls with other split seeds or devices pay the file reading only once.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from nas.data.bundle import DataBundle, make_bundle
from nas.data.cifar import read_cifar
from nas.data.digits import read_digits
from nas.data.imagenet16 import read_imagenet16
from nas.data.source import RawData
from nas.data.synthetic import read_synthetic
from nas.errors import UserError

DATASETS: tuple[str, ...] = ("digits", "synthetic", "cifar10", "cifar100", "imagenet16-120")
DATA_DIR_ENV = "SUPERNAS_DATA_DIR"

_CACHE: dict[tuple, RawData] = {}


def default_data_dir() -> Path:
    """Where file datasets live without a data_dir: $SUPERNAS_DATA_DIR, else ~/.cache/supernas/data."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "supernas" / "data"


def clear_cache() -> None:
    """Forget every cached raw dataset (frees host memory; the next load reads the files again)."""
    _CACHE.clear()


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    valid_fraction: float = 0.2,
    split_seed: int = 0,
    device: str | torch.device = "cpu",
    synthetic_size: int = 512,
    synthetic_classes: int = 10,
    synthetic_image_size: int = 8,
) -> DataBundle:
    """Load dataset `name` (one of DATASETS), split its pool into train/valid, and put all splits on `device`.

    `valid_fraction` of the train pool (seeded by `split_seed`) becomes `valid` (None at 0); the test
    set is fixed. `data_dir` and `download` matter only for the file-based datasets; the synthetic_*
    arguments only for `synthetic`. Bad values raise UserError before anything is read.
    """
    key = _canonical_name(name)
    _check_valid_fraction(valid_fraction)
    _check_split_seed(split_seed)
    dev = _check_device(device)
    raw = _raw(key, data_dir, download, synthetic_size, synthetic_classes, synthetic_image_size)
    return make_bundle(key, raw, valid_fraction=float(valid_fraction), split_seed=int(split_seed), device=dev)


def _raw(
    name: str,
    data_dir: str | os.PathLike | None,
    download: bool,
    synthetic_size: int,
    synthetic_classes: int,
    synthetic_image_size: int,
) -> RawData:
    if name == "digits":
        key: tuple = (name,)
    elif name == "synthetic":
        key = (name, synthetic_size, synthetic_classes, synthetic_image_size)
    else:
        directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        key = (name, str(directory.resolve()))
    if key in _CACHE:
        return _CACHE[key]
    if name == "digits":
        raw = read_digits()
    elif name == "synthetic":
        raw = read_synthetic(synthetic_size, synthetic_classes, synthetic_image_size)
    elif name in ("cifar10", "cifar100"):
        raw = read_cifar(name, directory, download)
    else:
        raw = read_imagenet16(directory)
    _CACHE[key] = raw
    return raw


def _canonical_name(name: str) -> str:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}.")
    return key


def _check_valid_fraction(value: float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 <= value < 1:
        raise UserError(f"valid_fraction must be a number in [0, 1), got {value!r}.")


def _check_split_seed(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"split_seed must be a non-negative integer, got {value!r}.")


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)  # fails here, clearly, if the device is absent (e.g. cuda on a CPU box)
    except (RuntimeError, AssertionError, TypeError) as err:
        raise UserError(
            f"device {str(device)!r} is not available here ({err}); use cpu, cuda or cuda:N."
        ) from err
    return dev

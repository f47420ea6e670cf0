"""Reading the pickled batch files that CIFAR and downsampled ImageNet are distributed as.

Both formats are dicts with a flat `data` array (N x C*H*W uint8, channel-major: all R, then G,
then B, each row-major) and a label list. The official CIFAR files are Python 2 pickles, hence
`encoding="latin1"`; keys may come back as str or bytes depending on who wrote the file, so both
are accepted. Pickles can run code: only point --data-dir at files from a source you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from nas.errors import UserError


def read_batch(path: Path, label_key: str, channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file into (images uint8 N x channels x size x size, labels int64 N)."""
    if not path.is_file():
        raise UserError(f"dataset file {path} is missing; the dataset folder is incomplete.")
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="latin1")
        data = np.asarray(_get(batch, "data"), dtype=np.uint8)
        labels = np.asarray(_get(batch, label_key), dtype=np.int64).reshape(-1)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise UserError(f"{path} is not a readable {label_key!r} batch file ({err}).") from err
    pixels = channels * size * size
    if data.ndim != 2 or data.shape[1] != pixels or len(labels) != len(data):
        raise UserError(
            f"{path} holds data of shape {data.shape} with {len(labels)} labels; "
            f"expected N x {pixels} with N labels."
        )
    # The flat rows are CHW already; the reshape is free and keeps channel order.
    return data.reshape(-1, channels, size, size), labels


def _get(batch: dict, key: str):
    if key in batch:
        return batch[key]
    return batch[key.encode()]

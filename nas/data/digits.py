"""`digits`: scikit-learn's bundled 8x8 handwritten digits, the offline default dataset.

It ships inside scikit-learn (no download) and loads in well under a second, so every command and
test can run without network or data files. 1797 images: a fixed hold-out of 297 is the test set,
the other 1500 are the pool that `valid_fraction` splits.
"""

from __future__ import annotations

import numpy as np

from nas.data.augment import Augment
from nas.data.source import RawData

TEST_SIZE = 297
TEST_SPLIT_SEED = 0  # fixed, independent of split_seed: the test set never moves
AUGMENT = Augment(pad=1, flip=False)  # flipping a digit can change its meaning (2 vs 5-ish shapes)


def read_digits() -> RawData:
    """Read the digits, scale 0..16 to 0..255 uint8 (1 channel), and hold out the fixed test set."""
    from sklearn.datasets import load_digits  # local import: scikit-learn is slow to import

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    perm = np.random.default_rng(TEST_SPLIT_SEED).permutation(len(labels))
    test_idx, pool_idx = np.sort(perm[:TEST_SIZE]), np.sort(perm[TEST_SIZE:])
    # Normalisation statistics come from the pool only, so the test set does not leak into them.
    pool = images[pool_idx].astype(np.float64) / 255.0
    return RawData(
        pool_images=images[pool_idx],
        pool_labels=labels[pool_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
        num_classes=10,
        mean=(float(pool.mean()),),
        std=(float(pool.std()),),
        augment=AUGMENT,
        source="sklearn.datasets.load_digits",
        pool_indices=pool_idx,
        test_indices=test_idx,
        extra={"test_split_seed": TEST_SPLIT_SEED},
    )

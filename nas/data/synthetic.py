"""`synthetic`: deterministic, learnable random images for smoke tests of the whole pipeline.

Each class has a fixed random RGB prototype; a sample is its class prototype plus Gaussian noise,
so a network can learn it in a few steps and a broken training loop shows up as chance accuracy.
"""

from __future__ import annotations

import numpy as np

from nas.data.augment import Augment
from nas.data.source import RawData
from nas.errors import UserError

SEED = 0
NOISE_STD = 48.0  # in pixel units; prototypes span 0..255, so classes overlap but stay separable
AUGMENT = Augment(pad=1, flip=False)  # prototypes are not mirror-symmetric


def read_synthetic(size: int, num_classes: int, image_size: int) -> RawData:
    """`size` pool and `max(size // 4, 1)` test images, 3 x image_size x image_size, `num_classes` classes."""
    for name, value, low in (
        ("synthetic_size", size, 2),
        ("synthetic_classes", num_classes, 2),
        ("synthetic_image_size", image_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name} must be an integer >= {low}, got {value!r}.")
    if size < num_classes:
        raise UserError(
            f"synthetic_size ({size}) must be at least synthetic_classes ({num_classes}) "
            "so that every class has a sample."
        )
    test_size = max(size // 4, 1)
    rng = np.random.default_rng(SEED)
    prototypes = rng.uniform(0.0, 255.0, size=(num_classes, 3, image_size, image_size))
    total = size + test_size
    labels = rng.permutation(np.arange(total) % num_classes).astype(np.int64)
    noise = rng.normal(0.0, NOISE_STD, size=(total, 3, image_size, image_size))
    images = np.clip(np.rint(prototypes[labels] + noise), 0, 255).astype(np.uint8)
    pool = images[:size].astype(np.float64) / 255.0
    return RawData(
        pool_images=images[:size],
        pool_labels=labels[:size],
        test_images=images[size:],
        test_labels=labels[size:],
        num_classes=num_classes,
        mean=tuple(float(v) for v in pool.mean(axis=(0, 2, 3))),
        std=tuple(float(max(v, 1e-3)) for v in pool.std(axis=(0, 2, 3))),
        augment=AUGMENT,
        source=f"synthetic(seed={SEED})",
        extra={"synthetic": {"size": size, "classes": num_classes, "image_size": image_size, "seed": SEED}},
    )

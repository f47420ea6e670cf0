"""Batched, on-device data augmentation: random crop with zero padding and horizontal flip.

The whole batch is transformed with two `gather`s, never a Python loop over samples, so the
transform runs where the images live (GPU) and costs about as much as a copy of the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Training augmentation of one dataset: crop after zero-padding by `pad` pixels, optional h-flip.

    This is the standard CIFAR recipe (RandomCrop(size, padding=pad) + RandomHorizontalFlip) applied
    to raw uint8 pixels, so the padding is black before normalisation, exactly as in torchvision.
    """

    pad: int
    flip: bool

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise ValueError(f"Augment.pad must be >= 0, got {self.pad}")

    @property
    def active(self) -> bool:
        """Whether this augmentation changes anything at all."""
        return self.pad > 0 or self.flip

    def to_dict(self) -> dict:
        """JSON-serialisable form, recorded in run directories."""
        return asdict(self)


def draw_params(
    count: int, augment: Augment, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Draw crop offsets (count x 2: row, col in [0, 2*pad]) and flip flags (count,) for `count` samples.

    Drawn on the generator's device (CPU by convention, so results do not depend on the accelerator)
    and moved to `device` in one transfer per epoch. Returns None for a part that is switched off.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    offsets = flips = None
    if augment.pad > 0:
        offsets = torch.randint(
            0, 2 * augment.pad + 1, (count, 2), generator=generator, device=gen_device
        ).to(device)
    if augment.flip:
        flips = (torch.randint(0, 2, (count,), generator=generator, device=gen_device) == 1).to(device)
    return offsets, flips


def crop_flip(
    images: torch.Tensor, offsets: torch.Tensor | None, flips: torch.Tensor | None, pad: int
) -> torch.Tensor:
    """Crop each image of `images` (B x C x H x W) from its zero-padded copy, then flip the flagged ones.

    Sample i becomes `padded_i[:, r:r+H, c:c+W]` with `(r, c) = offsets[i]` (offset `pad` is the identity),
    mirrored left-right where `flips[i]`. Works for any dtype; the output has the input's shape.
    """
    if offsets is None and flips is None:
        return images
    b, c, h, w = images.shape
    cols = torch.arange(w, device=images.device).expand(b, w)
    if offsets is not None and pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad))
        rows = offsets[:, :1] + torch.arange(h, device=images.device)
        source = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
        cols = offsets[:, 1:] + cols
    else:
        source = images
    if flips is not None:
        # Flipping the crop reads its columns right to left.
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    return source.gather(3, cols[:, None, None, :].expand(b, c, h, w))

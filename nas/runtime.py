"""Device choice, seeding and per-epoch random streams: the parts that make a run reproducible."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import UserError

# Independent random streams derived from the run seed; a stream never depends on how much another consumed.
STREAM_INIT, STREAM_DATA, STREAM_MONITOR, STREAM_SEARCH, STREAM_CALIB, STREAM_ARCH, STREAM_GLOBAL = 1, 2, 3, 4, 5, 6, 7


def derive_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for one stream of a run (numpy SeedSequence: well mixed, stable across versions)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that shuffles and augments one epoch; a resumed epoch gets the same one."""
    return torch.Generator().manual_seed(derive_seed(seed, STREAM_DATA, epoch))


def seed_epoch_globals(seed: int, epoch: int) -> None:
    """Reseed torch's global generators (dropout, anything that draws without a generator) for one epoch, so
    an epoch resumed from a checkpoint draws what the uninterrupted run drew."""
    torch.manual_seed(derive_seed(seed, STREAM_GLOBAL, epoch))


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch (weight init draws from torch's global generator)."""
    random.seed(seed)
    np.random.seed(derive_seed(seed, STREAM_INIT) % 2**32)
    torch.manual_seed(derive_seed(seed, STREAM_INIT))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def select_device(spec: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; an explicit device that is absent is a user error."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"train.device={spec} but this machine has no CUDA device; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"train.device={spec} but only {torch.cuda.device_count()} CUDA device(s) exist; use cuda:0..."
            )
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"train.device={spec} but MPS is not available here; use auto or cpu")
    return device


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision context: float16 on CUDA (with a GradScaler), bfloat16 elsewhere."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)

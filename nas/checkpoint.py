"""Checkpoints: written atomically, read with `weights_only=True` (no arbitrary code from a file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .io import atomic_write


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a checkpoint so that a crash mid-write leaves the previous one intact."""
    return atomic_write(path, lambda fh: torch.save(state, fh), mode="wb")


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save` (tensors and plain Python data only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a corrupt or foreign file
        raise UserError(f"checkpoint {str(path)!r} cannot be read safely ({type(exc).__name__})") from None

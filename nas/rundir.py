"""The run directory: everything needed to reproduce and inspect a run, written atomically.

    config.yaml        resolved, validated config (written before anything runs)
    environment.json   command, seeds, package versions, git SHA, device
    metrics.csv        one row per epoch
    checkpoints/       last.pt (every epoch) and optional epoch_NNN.pt
    arch.json          the chosen arch and its score
    summary.json       final figures and status
    log.txt            what the console showed
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import config as cfg
from .errors import UserError
from .io import atomic_write_json, atomic_write_rows, atomic_write_text
from .schema import defaults

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_run_dir(config: dict, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{config['space']['name']}-{config['strategy']['name']}-{config['data']['name']}-s{config['seed']}"
    path = Path(root) / base
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{base}-{suffix}"
    return path


def create(path: str | Path, config: dict, text: str | None = None) -> Path:
    """Make a new run directory and save the resolved config first (`text`, or the search config's YAML); an
    existing non-empty one is refused."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(
            f"run directory {str(path)!r} already exists and is not empty; continue it with --resume {path} "
            "or choose another --out"
        )
    path.mkdir(parents=True, exist_ok=True)
    (path / "checkpoints").mkdir(exist_ok=True)
    atomic_write_text(path / "config.yaml", cfg.dump(config) if text is None else text)
    return path


def load_config(path: str | Path) -> dict:
    """The saved config of an existing run directory, validated again."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise UserError(f"{str(path)!r} is not a run directory (no config.yaml); give the directory a search wrote")
    config = cfg.load_yaml(path / "config.yaml")
    if isinstance(config, dict) and "split" not in config:  # a run written before few-shot splitting: one-shot
        config["split"] = defaults()["split"]
    cfg.validate(config)
    return cfg.complete(config)  # a run written before config.yaml listed every build option


def git_sha(root: Path = PROJECT_ROOT) -> str | None:
    """The commit of the project source (with `-dirty` when it has uncommitted changes), if it is a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(argv: Sequence[str], device: str) -> dict[str, Any]:
    import numpy
    import torch

    from . import __version__

    return {
        "command": ["nas", *argv],
        "supernas": __version__,
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_environment(path: Path, info: dict[str, Any]) -> None:
    """Append this invocation to environment.json (a resumed run keeps the history of its invocations)."""
    target = path / "environment.json"
    history = json.loads(target.read_text()) if target.is_file() else []
    atomic_write_json(target, [*history, info])


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv from all rows so far (columns: union of keys, first-seen order)."""
    atomic_write_rows(path / "metrics.csv", rows, lambda v: f"{v:.6g}" if isinstance(v, float) else v)

"""`nas train`: train a final architecture from scratch with its space's evaluation recipe.

The network and the recipe are registered with the space's supernet (`supernets.entry(space).eval_network`,
`.final_recipe`). DARTS archs use the DARTS CIFAR recipe (C=36, 20 layers, auxiliary tower weight 0.4, drop-path
0.2 growing linearly over the epochs, cutout 16, 600 epochs, SGD 0.025 cosine to 0, momentum 0.9, weight decay
3e-4, batch 96, clip 5); NB201 archs the NAS-Bench-201 recipe (C=16, N=5 cells per stage as `layers`, 200 epochs,
SGD 0.1 Nesterov cosine to 0, weight decay 5e-4, batch 256, no clipping). Every value can be overridden.
Like a search, a training run keeps its settings first, checkpoints every epoch atomically and resumes exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

import searchspaces
import supernets

from . import checkpoint, rundir
from . import data as datasets
from .engine import Schedule
from .errors import UserError
from .evaluate import accuracy
from .io import atomic_write_json
from .progress import ETA, Reporter, format_seconds
from .runtime import derive_seed, epoch_generator, seed_everything, select_device
from .supervised import train_epoch

STREAM_CUTOUT, STREAM_DROP_PATH = 13, 14

def recipes() -> dict[str, dict[str, Any]]:
    """`space -> recipe` of every space whose supernet registers a final-training network and its recipe (the
    values of FinalSettings that differ per space)."""
    return {e.space: dict(e.final_recipe) for e in supernets.entries() if e.final_recipe is not None}


@dataclass(frozen=True)
class FinalSettings:
    """Everything a final training run depends on (saved as config.yaml of its run directory)."""

    space: str
    arch: str
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    valid_fraction: float = 0.0
    split_seed: int = 0
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    C: int = 36
    layers: int = 20
    auxiliary_weight: float = 0.4
    drop_path: float = 0.2
    cutout: int = 16
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    eval_batch_size: int = 512
    eval_every: int = 1

    @classmethod
    def for_space(cls, space: str, arch: str, **values: Any) -> FinalSettings:
        return cls(space=space, arch=arch, **{**recipes()[space], **values})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_arch(space_name: str | None, text: str) -> tuple[str, str]:
    """`(space, canonical arch)` from an arch string, an arch.json, or a run directory holding one."""
    path = Path(text)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError:  # an arch string longer than a file name can be
        is_dir = exists = False
    if is_dir:
        path = path / "arch.json"
    if path.suffix == ".json" and path.is_file():
        info = json.loads(path.read_text())
        space_name = space_name or info.get("space")
        text = info["arch"]
    elif exists:
        raise UserError(f"{text!r} holds no arch.json; give an arch string, an arch.json or a search run directory")
    if space_name is None:
        raise UserError("--space is needed with an arch string (it is read from arch.json otherwise)")
    available = recipes()
    if space_name not in available:
        raise UserError(f"nas train has no recipe for space {space_name!r}; accepted: {', '.join(available)}")
    return space_name, searchspaces.get(space_name).parse(text).to_string()


def build_network(settings: FinalSettings, num_classes: int, in_channels: int) -> torch.nn.Module:
    """The network `settings` trains: its space's registered evaluation network. Options the network does not
    take (NB201 has no drop-path) are a user error, raised before any run directory is written."""
    arch = searchspaces.get(settings.space).parse(settings.arch)
    try:
        return supernets.build_eval_network(arch, C=settings.C, layers=settings.layers, num_classes=num_classes,
                                            auxiliary=settings.auxiliary_weight > 0, in_channels=in_channels,
                                            drop_path=settings.drop_path)
    except ValueError as exc:
        raise UserError(f"{exc}; set a value the {settings.space} evaluation network accepts") from None


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a size x size square (clipped at the border) at a uniform random centre of every image (DeVries &
    Taylor 2017, as in DARTS's training), vectorised on the device."""
    b, _, h, w = x.shape
    centre = torch.rand(b, 2, generator=generator).to(x.device, non_blocking=True)
    cy, cx = (centre[:, 0] * h).long(), (centre[:, 1] * w).long()
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    inside_y = (rows >= (cy - size // 2).clamp(min=0)[:, None]) & (rows < (cy + size // 2).clamp(max=h)[:, None])
    inside_x = (cols >= (cx - size // 2).clamp(min=0)[:, None]) & (cols < (cx + size // 2).clamp(max=w)[:, None])
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


def _count_params(model: torch.nn.Module) -> int:
    """Parameters without the auxiliary head (the convention of DARTS's reported sizes)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name)


def train_final(settings: FinalSettings, run_path: Path, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train the arch of `settings` from scratch into `run_path`; returns the summary."""
    s = settings
    reporter = Reporter(run_path / "log.txt", quiet=quiet)
    try:
        device = select_device(s.device)
        seed_everything(s.seed, deterministic=True)
        bundle = datasets.load(s.dataset, data_dir=s.data_dir, download=s.download, valid_fraction=s.valid_fraction,
                               split_seed=s.split_seed, device=device)
        model = build_network(s, bundle.num_classes, bundle.in_channels).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, nesterov=s.nesterov,
                                    weight_decay=s.weight_decay)
        steps = bundle.train.num_batches(s.batch_size, drop_last=True)
        if steps == 0:
            raise UserError(f"the training split has {len(bundle.train)} samples, fewer than one batch of "
                            f"{s.batch_size}; lower batch_size")
        schedule = Schedule(s.lr, s.lr_min, s.epochs, steps, per_step=False)
        scaler = torch.amp.GradScaler("cuda", enabled=s.amp and device.type == "cuda")
        rows: list[dict[str, Any]] = []
        start = 0
        last = run_path / "checkpoints" / "last.pt"
        if resume and last.is_file():
            state = checkpoint.load(last, map_location=device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            rows, start = list(state["rows"]), state["epoch"]
            reporter.info(f"resuming {run_path} after epoch {start}/{s.epochs}")
        params = _count_params(model)
        reporter.info(f"training {s.space} arch {s.arch} on {bundle.name}: {params:,} parameters "
                      f"(auxiliary head excluded), {s.epochs} epochs, device {device}")
        eta = ETA(s.epochs, start)
        for epoch in range(start, s.epochs):
            started = time.perf_counter()
            if s.drop_path > 0:  # only networks with drop-path accept drop_path > 0 (build_eval_network)
                model.drop_path_prob = s.drop_path * epoch / s.epochs
            lr = schedule(epoch, 0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            generator = epoch_generator(s.seed, epoch)
            torch.manual_seed(derive_seed(s.seed, STREAM_DROP_PATH, epoch))  # drop-path masks: resumable
            cut_generator = torch.Generator().manual_seed(derive_seed(s.seed, STREAM_CUTOUT, epoch))
            transform = functools.partial(cutout, size=s.cutout, generator=cut_generator) if s.cutout > 0 else None
            train_loss, train_acc = train_epoch(model, bundle.train, optimizer, scaler, batch_size=s.batch_size,
                                                generator=generator, device=device, amp=s.amp,
                                                grad_clip=s.grad_clip, transform=transform,
                                                aux_weight=s.auxiliary_weight)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc}
            if (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs:
                row["test_acc"] = accuracy(model, bundle.test, s.eval_batch_size, device, s.amp)
            row["epoch_time_s"] = round(time.perf_counter() - started, 3)
            rows.append(row)
            checkpoint.save(last, {"format": 1, "epoch": epoch + 1, "rows": rows, "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()})
            rundir.write_metrics(run_path, rows)
            remaining = eta.remaining(epoch + 1)
            reporter.info(f"epoch {epoch + 1}/{s.epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.2f}%"
                          + (f"  test {row['test_acc']:.2f}%" if "test_acc" in row else "")
                          + (f"  ETA {format_seconds(remaining)}" if remaining and epoch + 1 < s.epochs else ""))
        tested = [r["test_acc"] for r in rows if "test_acc" in r]
        summary = {
            "status": "complete", "space": s.space, "arch": s.arch, "dataset": bundle.name, "params": params,
            "params_with_auxiliary": sum(p.numel() for p in model.parameters()),
            "final_test_acc": tested[-1] if tested else None, "best_test_acc": max(tested) if tested else None,
            "epochs": s.epochs, "seed": s.seed, "data": bundle.info,
        }
        atomic_write_json(run_path / "summary.json", summary)
        reporter.info(f"final test accuracy {summary['final_test_acc']:.2f}%  ({params:,} parameters)")
        reporter.info(f"run directory: {run_path}")
        return summary
    finally:
        reporter.close()


def settings_text(settings: FinalSettings) -> str:
    return yaml.safe_dump({"train_final": settings.as_dict()}, sort_keys=False)


def load_settings(run_path: Path) -> FinalSettings:
    try:
        values = yaml.safe_load((run_path / "config.yaml").read_text())["train_final"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        raise UserError(f"{str(run_path)!r} is not a run directory of nas train (no train_final in config.yaml)") \
            from None
    return FinalSettings(**values)

"""The training loop: SGD + cosine schedule, clipping, optional AMP, strategy hooks, per-epoch checkpoints.

The loop keeps its bookkeeping on the device (loss and accuracy sums are tensors) and synchronises with the
host only every `train.log_every` steps for the progress line and once at the end of an epoch. Every random
draw is either from the strategy's own generator (saved in checkpoints) or from a generator derived from
(seed, epoch), so a run resumed from its last checkpoint reproduces the uninterrupted run exactly on CPU.

A step trains the paths of `strategy.sample_step()` (one for single-path strategies, several for the sandwich
rule): forward and backward per path, gradients summed over the paths (as BigNAS/once-for-all accumulate them),
then one clip (its factor goes to `strategy.after_backward` as `StepContext.clip_factor`) and one optimizer
step. The logged loss and accuracy are path 0's, on the labels. What each path is trained on is the strategy's
`loss(LossContext)` (default: the mean label cross-entropy; PA&DA's importance weights, the sandwich rule's
in-place distillation from path 0): the loop itself names no strategy-specific objective.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import strategies
import supernets

from . import checkpoint
from .progress import ETA, Reporter, format_seconds
from .runtime import STREAM_ARCH, autocast, derive_seed, epoch_generator, seed_epoch_globals

CHECKPOINT_FORMAT = 1


def cosine_lr(base: float, minimum: float, progress: float) -> float:
    """Cosine annealing from `base` (progress 0) to `minimum` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return minimum + (base - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_coefficient(total_norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """The factor `clip_grad_norm_` multiplies every gradient by, from the total norm it returns: the same
    expression as torch's (`min(max_norm / (total + 1e-6), 1)`), hence the same value, and still on the device."""
    return torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)


@dataclass
class Schedule:
    """Learning rate as a pure function of the position in training: nothing to checkpoint."""

    lr: float
    lr_min: float
    epochs: int
    steps_per_epoch: int
    per_step: bool
    warmup_epochs: int = 0

    def __call__(self, epoch: int, step_in_epoch: int) -> float:
        if epoch < self.warmup_epochs:
            done = epoch * self.steps_per_epoch + step_in_epoch + 1
            return self.lr * done / (self.warmup_epochs * self.steps_per_epoch)
        if self.per_step:
            total = (self.epochs - self.warmup_epochs) * self.steps_per_epoch
            done = (epoch - self.warmup_epochs) * self.steps_per_epoch + step_in_epoch
        else:  # reference: CosineAnnealingLR(T_max=epochs) stepped once per epoch
            total, done = self.epochs - self.warmup_epochs, epoch - self.warmup_epochs
        return cosine_lr(self.lr, self.lr_min, done / max(total, 1))


class PathCosts:
    """Host-side record of an analytic cost (e.g. FLOPs) of every discrete path a strategy trains: one entry per
    path per step, in order. Evidence of what a sampler concentrates on (the sampled-FLOPs histogram).

    `ArchWeights` with `hard` set (straight-through samples) count as `decode(hard)`; relaxed ones without `hard`,
    and hard ones that `decode` maps to None (no arch of the space), have no discrete arch and are skipped. Costs
    are cached by arch (bounded), so recording costs a dict lookup per path and never touches the device. The
    record is part of the checkpoint: a resumed run continues it.
    """

    CACHE_SIZE = 50_000

    def __init__(self, cost: Callable[[Any], int], decode: Callable[[Sequence[int]], Any | None]):
        self.cost, self.decode = cost, decode
        self._cache: dict[Any, int] = {}
        self.epochs: list[int] = []
        self.steps: list[int] = []
        self.paths: list[int] = []
        self.values: list[int] = []

    def __len__(self) -> int:
        return len(self.values)

    def record(self, epoch: int, step: int, paths: Sequence[Any]) -> None:
        """Append the cost of every discrete path of global step `step`."""
        for position, path in enumerate(paths):
            if isinstance(path, supernets.ArchWeights):
                path = None if path.hard is None else self.decode(path.hard)
                if path is None:
                    continue
            value = self._cache.get(path)
            if value is None:
                if len(self._cache) >= self.CACHE_SIZE:
                    self._cache.clear()
                value = self._cache[path] = int(self.cost(path))
            self.epochs.append(epoch)
            self.steps.append(step)
            self.paths.append(position)
            self.values.append(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: torch.tensor(getattr(self, name), dtype=torch.int64)
                for name in ("epochs", "steps", "paths", "values")}

    def load_state_dict(self, state: dict[str, torch.Tensor] | None) -> None:
        """Restore a record; None (a checkpoint written without one) starts an empty record."""
        for name in ("epochs", "steps", "paths", "values"):
            setattr(self, name, [] if state is None else [int(v) for v in state[name].tolist()])


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    global_step: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains a supernet with a strategy on a device-resident training split."""

    def __init__(self, config: dict, net: supernets.Supernet, strategy: strategies.Strategy, train_split,
                 device: torch.device, reporter: Reporter, checkpoint_dir: Path | None = None,
                 monitor: Callable[[int], dict[str, float]] | None = None,
                 on_epoch: Callable[[TrainState], None] | None = None, valid_split=None,
                 path_costs: PathCosts | None = None):
        self.config, self.net, self.strategy, self.train_split = config, net, strategy, train_split
        self.path_costs = path_costs
        self.valid_split = valid_split
        if strategy.uses_arch_step and (valid_split is None or len(valid_split) == 0):
            raise ValueError(f"strategy {strategy.name} updates its architecture on a validation split; "
                             "set data.valid_fraction > 0")
        self.device, self.reporter, self.checkpoint_dir = device, reporter, checkpoint_dir
        self.monitor, self.on_epoch = monitor, on_epoch
        tc = config["train"]
        self.tc = tc
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            self.params, lr=tc["lr"], momentum=tc["momentum"], nesterov=tc["nesterov"] and tc["momentum"] > 0,
            weight_decay=tc["weight_decay"],
        )
        self.amp = bool(tc["amp"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and device.type == "cuda")
        self.steps_per_epoch = train_split.num_batches(tc["batch_size"], tc["drop_last"])
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training split has {len(train_split)} samples, fewer than one batch of {tc['batch_size']}"
            )
        self.schedule = Schedule(tc["lr"], tc["lr_min"], tc["epochs"], self.steps_per_epoch,
                                 tc["lr_step"] == "step", tc["warmup_epochs"])
        self.state = TrainState()

    # --- checkpoints -----------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.state.epoch,
            "global_step": self.state.global_step,
            "rows": self.state.rows,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "strategy": self.strategy.state_dict(),
            **({"path_costs": self.path_costs.state_dict()} if self.path_costs is not None else {}),
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["strategy"])
        if self.path_costs is not None:
            self.path_costs.load_state_dict(state.get("path_costs"))
        self.state = TrainState(state["epoch"], state["global_step"], list(state["rows"]))

    def save_checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        state = self.checkpoint_state()
        checkpoint.save(self.checkpoint_dir / "last.pt", state)
        keep = self.tc["keep_every"]
        if keep and self.state.epoch % keep == 0:
            checkpoint.save(self.checkpoint_dir / f"epoch_{self.state.epoch:03d}.pt", state)

    # --- training --------------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> TrainState:
        """Train from `state.epoch` to `until` (default `train.epochs`: a few-shot split stops a supernet at its
        split epoch; the schedule always runs over `train.epochs`), checkpointing after every epoch."""
        epochs, seed = self.tc["epochs"], self.config["seed"]
        stop = epochs if until is None else min(until, epochs)
        eta = ETA(stop * self.steps_per_epoch, self.state.global_step)
        for epoch in range(self.state.epoch, stop):
            started = time.perf_counter()
            seed_epoch_globals(seed, epoch)
            row = self._train_epoch(epoch, epoch_generator(seed, epoch), eta)
            row.update(self.strategy.on_epoch_end(epoch))
            if self.monitor is not None:
                row.update(self.monitor(epoch + 1))
            row["epoch_time_s"] = round(time.perf_counter() - started, 3)
            self.state.epoch = epoch + 1
            self.state.rows.append(row)
            self.save_checkpoint()
            if self.on_epoch is not None:
                self.on_epoch(self.state)
            remaining = eta.remaining(self.state.global_step)
            self.reporter.info(
                f"epoch {epoch + 1}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.2f}%"
                + (f"  monitor acc {row['monitor_acc']:.2f}%" if "monitor_acc" in row else "")
                + (f"  kendall tau {row['kendall_tau']:.3f}" if "kendall_tau" in row else "")
                + f"  lr {row['lr']:.4g}  {row['epoch_time_s']:.1f}s"
                + (f"  ETA {format_seconds(remaining)}" if remaining is not None and epoch + 1 < epochs else "")
            )
        return self.state

    def _valid_stream(self, epoch: int):
        """Endless validation batches for architecture steps, reshuffled every pass, seeded by (seed, epoch)."""
        size = self.tc["batch_size"]
        drop_last = len(self.valid_split) >= size
        for cycle in range(10**9):
            generator = torch.Generator().manual_seed(derive_seed(self.config["seed"], STREAM_ARCH, epoch, cycle))
            yield from self.valid_split.batches(size, shuffle=True, generator=generator, drop_last=drop_last,
                                                augment=False)

    def _loss_scale(self) -> float:
        """The current float16 loss scale (1.0 without one); syncs with the device, so strategies call it only
        when they need it."""
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    def _forward_backward(self, paths: Sequence[Any], batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of every path of one step, gradients accumulated (summed) in `.grad`; each path
        is trained on `strategy.loss(...)`.

        Returns path 0's detached logits and per-sample label cross-entropy (what the epoch row logs).
        """
        strategy = self.strategy
        first = None
        for position, arch in enumerate(paths):
            with autocast(self.device, self.amp):
                logits = self.net(batch.x, arch)
                per_sample = F.cross_entropy(logits.float(), batch.y, reduction="none")
                loss = strategy.loss(strategies.LossContext(
                    position=position, arch=arch, logits=logits, y=batch.y, index=batch.index,
                    per_sample_loss=per_sample, lead_logits=None if first is None else first[0]))
            self.scaler.scale(loss).backward()
            if position == 0:
                first = (logits.detach(), per_sample.detach())
        if first is None:
            raise ValueError(f"strategy {strategy.name} returned no path for a training step")
        return first

    def _train_epoch(self, epoch: int, generator: torch.Generator, eta: ETA) -> dict[str, Any]:
        net, tc, strategy = self.net, self.tc, self.strategy
        net.train()
        order = strategy.epoch_order(epoch, len(self.train_split))
        batches = self.train_split.batches(
            tc["batch_size"], shuffle=True, generator=generator, drop_last=tc["drop_last"], augment=True,
            order=order,
        )
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        lr = self.schedule(epoch, 0)
        valid_batches = self._valid_stream(epoch) if strategy.uses_arch_step else None
        for step, batch in enumerate(batches):
            lr = self.schedule(epoch, step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if valid_batches is not None:  # the architecture step comes first, as in DARTS
                strategy.arch_step(next(valid_batches), strategies.ArchStepContext(
                    epoch=epoch, step=self.state.global_step, train_batch=batch, lr=lr, optimizer=self.optimizer))
            paths = strategy.sample_step()
            if self.path_costs is not None:
                self.path_costs.record(epoch, self.state.global_step, paths)
            self.optimizer.zero_grad(set_to_none=True)
            logits, per_sample = self._forward_backward(paths, batch)
            # Unscale always (a no-op without float16 loss scaling): strategies read true gradients, clipped or not.
            self.scaler.unscale_(self.optimizer)
            clip_factor: torch.Tensor | float = 1.0
            if tc["grad_clip"] > 0:
                total_norm = torch.nn.utils.clip_grad_norm_(self.params, tc["grad_clip"], foreach=True)
                clip_factor = clip_coefficient(total_norm, tc["grad_clip"])
            strategy.after_backward(strategies.StepContext(
                epoch=epoch, step=self.state.global_step, arch=paths[0], x=batch.x, y=batch.y, index=batch.index,
                logits=logits, per_sample_loss=per_sample, paths=tuple(paths), loss_scale=self._loss_scale,
                clip_factor=clip_factor,
            ))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state.global_step += 1
            n = batch.y.shape[0]
            seen += n
            loss_sum += per_sample.sum()
            correct += (logits.argmax(1) == batch.y).sum()
            if (step + 1) % tc["log_every"] == 0 and self.reporter.tty and not self.reporter.quiet:
                remaining = eta.remaining(self.state.global_step)
                self.reporter.live(
                    f"epoch {epoch + 1}/{tc['epochs']}  step {step + 1}/{self.steps_per_epoch}"
                    f"  loss {loss_sum.item() / seen:.4f}"
                    + (f"  ETA {format_seconds(remaining)}" if remaining is not None else "")
                )
        return {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_sum.item() / max(seen, 1),
            "train_acc": 100.0 * correct.item() / max(seen, 1),
            "steps": self.steps_per_epoch,
        }

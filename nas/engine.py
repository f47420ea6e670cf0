"""The training loop: SGD + cosine schedule, clipping, optional AMP, strategy hooks, per-epoch checkpoints.

The loop keeps its bookkeeping on the device (loss and accuracy sums are tensors) and synchronises with the
host only every `train.log_every` steps for the progress line and once at the end of an epoch. Every random
draw is either from the strategy's own generator (saved in checkpoints) or from a generator derived from
(seed, epoch), so a run resumed from its last checkpoint reproduces the uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import strategies
import supernets

from . import checkpoint
from .progress import ETA, Reporter, format_seconds
from .runtime import STREAM_ARCH, autocast, derive_seed, epoch_generator

CHECKPOINT_FORMAT = 1


def cosine_lr(base: float, minimum: float, progress: float) -> float:
    """Cosine annealing from `base` (progress 0) to `minimum` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return minimum + (base - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


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
                 on_epoch: Callable[[TrainState], None] | None = None, valid_split=None):
        self.config, self.net, self.strategy, self.train_split = config, net, strategy, train_split
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
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["strategy"])
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
    def fit(self) -> TrainState:
        """Train from `state.epoch` to `train.epochs`, checkpointing after every epoch."""
        epochs, seed = self.tc["epochs"], self.config["seed"]
        eta = ETA(epochs * self.steps_per_epoch, self.state.global_step)
        for epoch in range(self.state.epoch, epochs):
            started = time.perf_counter()
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
            arch = strategy.sample()
            weights = strategy.sample_weights(arch, batch.index)
            with autocast(self.device, self.amp):
                logits = net(batch.x, arch)
                per_sample = F.cross_entropy(logits.float(), batch.y, reduction="none")
                loss = per_sample.mean() if weights is None else (per_sample * weights).mean()
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if tc["grad_clip"] > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, tc["grad_clip"], foreach=True)
            strategy.after_backward(strategies.StepContext(
                epoch=epoch, step=self.state.global_step, arch=arch, x=batch.x, y=batch.y, index=batch.index,
                logits=logits.detach(), per_sample_loss=per_sample.detach(),
            ))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state.global_step += 1
            n = batch.y.shape[0]
            seen += n
            loss_sum += per_sample.detach().sum()
            correct += (logits.detach().argmax(1) == batch.y).sum()
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

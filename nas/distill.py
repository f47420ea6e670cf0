"""The distillation trainer: one SuperLM learns from a frozen teacher on unlabeled token sequences.

This is the training loop of supernets whose input is text (`supernets.entry(space).inputs == "text"`), where the
strategy (`inputs = "text"`) brings the objective: per step the teacher runs once without gradients, then every
student of `strategy.students(global_step)` runs, is scored by `strategy.distill_loss(student, teacher)` and
back-propagates (gradients accumulate over the students), then one clip and one AdamW step (§6.5). AdamW takes no
weight decay on biases and LayerNorm weights; the learning rate decays linearly from `train.lr` to `train.lr_min`
over all steps after `train.warmup_epochs` of linear warm-up (the reference: none).

Bookkeeping stays on the device (the step's losses are summed as tensors; one host sync per `train.log_every`
steps for the progress line and one per epoch). Each epoch's order comes from a generator of (seed, epoch), the
students from the strategy's (seed, step) stream, so a run resumed from `last.pt` repeats the uninterrupted one.

`HeldOut` scores a student by its distillation loss on held-out sequences with the teacher's outputs computed once:
the loss curves of the largest and smallest students after every epoch, and the task-agnostic search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from searchspaces import Arch

from . import checkpoint
from .engine import TrainState
from .progress import ETA, Reporter, format_seconds
from .runtime import epoch_generator

CHECKPOINT_FORMAT = 1


def adamw(net: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as the reference builds it: eps 1e-8, weight decay on every weight but biases and LayerNorms."""
    decay, plain = [], []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (plain if name.endswith("bias") or "norm" in name.lower() else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}],
                             lr=lr, eps=1e-8)


def linear_lr(base: float, minimum: float, done: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then linear decay from `base` to `minimum` at step `total`."""
    if done < warmup:
        return base * (done + 1) / warmup
    return minimum + (base - minimum) * max(0.0, 1.0 - (done - warmup) / max(total - warmup, 1))


@dataclass
class TeacherOutputs:
    """The teacher's last-layer Q, K, V of a fixed set of sequences, computed once, kept on the device."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    hidden: torch.Tensor


class HeldOut:
    """Held-out distillation loss of students with inherited weights (lower is better).

    The teacher's outputs on the held-out sequences are computed once; a student costs one forward pass over
    them in batches of `batch_size`, in eval mode, without gradients."""

    def __init__(self, teacher: torch.nn.Module, teacher_arch: Arch, tokens: torch.Tensor,
                 loss: Callable[[Any, Any], torch.Tensor], batch_size: int, device: torch.device):
        self.tokens, self.loss, self.batch_size = tokens.to(device), loss, batch_size
        self.teacher_batches = []
        teacher.eval()
        with torch.no_grad():
            for start in range(0, len(self.tokens), batch_size):
                out = teacher(self.tokens[start:start + batch_size], teacher_arch)
                self.teacher_batches.append(TeacherOutputs(out.query, out.key, out.value, out.hidden))

    def __call__(self, net: torch.nn.Module, arch: Arch) -> float:
        """The mean distillation loss of `arch` over the held-out sequences (weighted by batch size)."""
        was_training = net.training
        net.eval()
        total = torch.zeros((), device=self.tokens.device)
        with torch.no_grad():
            for index, start in enumerate(range(0, len(self.tokens), self.batch_size)):
                batch = self.tokens[start:start + self.batch_size]
                total += self.loss(net(batch, arch), self.teacher_batches[index]) * len(batch)
        net.train(was_training)
        return float(total) / len(self.tokens)


class DistillTrainer:
    """Trains one SuperLM (`net`, over its sub-space) from `teacher` with a text strategy (see the module
    docstring); `fit()` checkpoints every epoch to `checkpoint_dir/last.pt`. Rows of metrics carry `label` (the
    sub-space's name) and the held-out loss of its largest and smallest students, before training (epoch 0) and
    after every epoch."""

    def __init__(self, config: dict, net: torch.nn.Module, teacher: torch.nn.Module, strategy, train_tokens:
                 torch.Tensor, held_out: HeldOut, device: torch.device, reporter: Reporter, label: str,
                 checkpoint_dir: Path | None = None, on_epoch: Callable[[TrainState], None] | None = None):
        self.config, self.net, self.teacher, self.strategy = config, net, teacher, strategy
        self.train_tokens, self.held_out, self.device, self.reporter = train_tokens, held_out, device, reporter
        self.label, self.checkpoint_dir, self.on_epoch = label, checkpoint_dir, on_epoch
        tc = self.tc = config["train"]
        self.teacher_arch = teacher.largest()
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.optimizer = adamw(net, tc["lr"], tc["weight_decay"])
        self.steps_per_epoch = len(train_tokens) // tc["batch_size"]
        limit = strategy.opts.get("epoch_steps")
        if limit is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, limit)
        if self.steps_per_epoch == 0:
            raise ValueError(f"the text holds {len(train_tokens)} training sequences, fewer than one batch of "
                             f"{tc['batch_size']}; give more text or a smaller train.batch_size")
        self.total_steps = tc["epochs"] * self.steps_per_epoch
        self.warmup_steps = tc["warmup_epochs"] * self.steps_per_epoch
        self.state = TrainState()
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.eval()

    # --- checkpoints ------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "epoch": self.state.epoch, "global_step": self.state.global_step,
                "rows": self.state.rows, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "strategy": self.strategy.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.strategy.load_state_dict(state["strategy"])
        self.state = TrainState(state["epoch"], state["global_step"], list(state["rows"]))

    def _save(self) -> None:
        if self.checkpoint_dir is not None:
            checkpoint.save(self.checkpoint_dir / "last.pt", self.checkpoint_state())

    # --- training -----------------------------------------------------------------------------------
    def curve_point(self) -> dict[str, float]:
        """Held-out loss of the sub-space's largest and smallest students now."""
        return {"heldout_largest": self.held_out(self.net, self.strategy.largest),
                "heldout_smallest": self.held_out(self.net, self.strategy.smallest)}

    def fit(self) -> TrainState:
        """Train from `state.epoch` to `train.epochs`, one checkpoint per epoch."""
        epochs = self.tc["epochs"]
        if not self.state.rows:
            self.state.rows.append({"subspace": self.label, "epoch": 0, "step": 0, **self.curve_point()})
        eta = ETA(epochs * self.steps_per_epoch, self.state.global_step)
        for epoch in range(self.state.epoch, epochs):
            started = time.perf_counter()
            row = self._train_epoch(epoch, eta)
            row.update(self.curve_point())
            row["epoch_time_s"] = round(time.perf_counter() - started, 3)
            self.state.epoch = epoch + 1
            self.state.rows.append(row)
            self._save()
            if self.on_epoch is not None:
                self.on_epoch(self.state)
            remaining = eta.remaining(self.state.global_step)
            self.reporter.info(
                f"{self.label} epoch {epoch + 1}/{epochs}  loss {row['train_loss']:.4f}  held-out: largest "
                f"{row['heldout_largest']:.4f} smallest {row['heldout_smallest']:.4f}  lr {row['lr']:.3g}  "
                f"{row['epoch_time_s']:.1f}s" + (f"  ETA {format_seconds(remaining)}"
                                                 if remaining is not None and epoch + 1 < epochs else ""))
        return self.state

    def _train_epoch(self, epoch: int, eta: ETA) -> dict[str, Any]:
        tc, net, strategy = self.tc, self.net, self.strategy
        net.train()
        size = tc["batch_size"]
        order = torch.randperm(len(self.train_tokens), generator=epoch_generator(self.config["seed"], epoch))
        students = 2 + strategy.opts["random_students"]
        sums = torch.zeros(students, device=self.device)
        counts = torch.zeros(students, device=self.device)
        lr = self.tc["lr"]
        for step in range(self.steps_per_epoch):
            lr = linear_lr(tc["lr"], tc["lr_min"], self.state.global_step, self.total_steps, self.warmup_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = self.train_tokens[order[step * size:(step + 1) * size]].to(self.device, non_blocking=True)
            with torch.no_grad():
                target = self.teacher(batch, self.teacher_arch)
            self.optimizer.zero_grad(set_to_none=True)
            for position, arch in enumerate(strategy.students(self.state.global_step)):
                loss = strategy.distill_loss(net(batch, arch), target)
                loss.backward()
                sums[position] += loss.detach()
                counts[position] += 1
            if tc["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(self.params, tc["grad_clip"], foreach=True)
            self.optimizer.step()
            self.state.global_step += 1
            if (step + 1) % tc["log_every"] == 0 and self.reporter.tty and not self.reporter.quiet:
                remaining = eta.remaining(self.state.global_step)
                self.reporter.live(f"{self.label} epoch {epoch + 1}/{tc['epochs']}  step {step + 1}/"
                                   f"{self.steps_per_epoch}  loss {float(sums.sum() / counts.sum()):.4f}"
                                   + (f"  ETA {format_seconds(remaining)}" if remaining is not None else ""))
        means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.nan).tolist()  # nan: no such student
        return {"subspace": self.label, "epoch": epoch + 1, "step": self.state.global_step, "lr": lr,
                "train_loss": float(sums.sum() / counts.sum()), "loss_largest": means[0],
                "loss_smallest": means[1], "steps": self.steps_per_epoch}

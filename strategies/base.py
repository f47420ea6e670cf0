"""The strategy hook protocol: the engine calls these hooks and never branches on a strategy's name.

Order of calls (nas.engine, nas.pipeline):

    strategy = strategies.get(name, **options)     # options validated; nothing built yet
    strategy.setup(supernet, space, seed, data, epochs, cost_task)   # once, before training (not by `nas rank`)

and in one training step:

    paths = strategy.sample_step()                 # the paths of this step; default [strategy.sample()]
    for i, arch in enumerate(paths):               # gradients are SUMMED over the paths (BigNAS/OFA sandwich)
        logits = supernet(x, arch)
        loss = strategy.loss(LossContext(...))     # default: the mean label cross-entropy; PA&DA weights it per
        backward                                   # sample, the sandwich rule distils paths 1.. from path 0
    clip global grad norm                          # factor c = min(1, max_norm / (total_norm + 1e-6))
    strategy.after_backward(ctx)                   # grads here are AFTER clipping (PA&DA reads them there);
                                                   # the optimizer step does not modify .grad, so they also
                                                   # equal the post-step gradients. ctx.clip_factor is c:
                                                   # the gradients before clipping are .grad / c
    optimizer.step()
    strategy.arch_step(valid_batch, ctx)           # BEFORE each step, only when `uses_arch_step` (DARTS, GDAS)

and once per epoch `epoch_order(...)` before and `on_epoch_end(epoch)` after the steps. The engine names no
strategy and builds no strategy-specific loss: whatever shapes the objective lives in `loss`.

A single-path strategy implements `sample` only. A multi-path strategy (sandwich) overrides `sample_step`; its
`after_backward` still runs once per step, after all paths, with `ctx.arch` = path 0, `ctx.logits` and
`ctx.per_sample_loss` of path 0 (its label cross-entropy, the loss that metrics.csv logs), `ctx.paths` = all paths
of the step and the gradients summed over them.

`cost_task` (an argument of `setup`, kept as `self.cost_task`) holds the arguments of the space's analytic costs
for this run (`space.params(arch, **cost_task)`, `space.flops(...)`): num_classes, in_channels, image_size and the
supernet options the costs depend on (NB201 C/N, MobileNet width_mult/schedule). It is empty (the spaces'
defaults) when a strategy is set up without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from searchspaces import Arch, Space
from searchspaces.options import Option
from supernets import Supernet


@dataclass
class ArchStepContext:
    """What an architecture step may use besides its validation batch (DARTS's unrolled step needs all of it)."""

    epoch: int
    step: int
    train_batch: Any  # the training batch of this step (x, y, index)
    lr: float  # the weights' current learning rate
    optimizer: torch.optim.Optimizer  # the weights' optimizer (momentum buffers, weight decay)


@dataclass
class LossContext:
    """What `Strategy.loss` may read for one path of a step: its position in `sample_step()`'s list, the path, the
    batch, the path's logits (with gradient) and its per-sample label cross-entropy (with gradient, float32), and
    path 0's detached logits for the paths after it (None for path 0 itself)."""

    position: int
    arch: Any
    logits: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # dataset index of every sample of the batch
    per_sample_loss: torch.Tensor  # shape [batch]
    lead_logits: torch.Tensor | None = None  # path 0's logits, detached; None at position 0


@dataclass
class StepContext:
    """What a strategy may read in `after_backward`: the step's batch, outputs, (clipped) gradients and the clip
    factor that recovers the unclipped ones."""

    epoch: int
    step: int  # global step, counted from 0 over the whole run
    arch: Any  # an Arch, or ArchWeights for relaxed strategies
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # dataset index of every sample of the batch
    logits: torch.Tensor  # detached
    per_sample_loss: torch.Tensor  # detached, shape [batch]
    paths: tuple = ()  # every path of this step (multi-path strategies); `arch` is paths[0]
    # The loss scale of mixed precision (float16 on CUDA): gradients of parameters outside the supernet's optimizer
    # (a strategy's own modules) are still multiplied by it. A call, because reading it syncs with the device.
    loss_scale: Callable[[], float] = lambda: 1.0
    # The factor the global gradient clipping multiplied every gradient by in this step, as `clip_grad_norm_`
    # applies it: min(1, max_norm / (total_norm + 1e-6)), a 0-d tensor on the device (reading its value syncs),
    # or the float 1.0 when clipping is off. `.grad / clip_factor` is the gradient before clipping (for a factor
    # > 0; the factor is 0 only when the total norm is infinite, a step the float16 loss scaler skips).
    clip_factor: torch.Tensor | float = 1.0


class Strategy:
    """Base class with no-op hooks; a sampler overrides `sample` and whatever else it needs.

    Subclasses declare their options in `OPTIONS`, name -> typed `searchspaces.options.Option` (default, range or
    choices, help): the config validator accepts exactly these, `__init__` refuses a value outside them in one
    sentence (ValueError), and `self.opts` is the plain `name -> value` dict of the defaults with the given values.
    Every random draw goes through `self.rng` (a numpy Generator) so that `state_dict` captures it and a
    resumed run continues the same sequence.
    """

    name: str = "base"
    OPTIONS: dict[str, Option] = {}
    uses_arch_step: bool = False
    # Whether the strategy reads the validation split itself (ENAS rewards its controller there); the config then
    # refuses data.valid_fraction=0, as it does for `uses_arch_step`.
    needs_valid_split: bool = False
    # Whether `derive` gives the final arch (a study of picked archs may then run without a search).
    derives_arch: bool = False
    # What the strategy trains on: "image" (the engine's labelled batches) or "text" (token ids: the strategy brings a
    # distillation objective, and the face runs its distillation trainer, nas/distill.py). It must match the
    # supernet's `inputs` (supernets.registry).
    inputs: str = "image"
    # How many archs the last `derive` scored with the shared weights (ENAS: its samples), for `arch.json`.
    derive_scored: int = 0

    def __init__(self, **opts: Any):
        unknown = sorted(set(opts) - set(self.OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)} for strategy {self.name!r}; accepted: "
                f"{', '.join(sorted(self.OPTIONS)) or 'none'}"
            )
        for key, value in opts.items():
            self.OPTIONS[key].check(f"strategy.{key}", value)  # OptionError, a ValueError of one sentence
        self.opts: dict[str, Any] = {**self.defaults(), **opts}
        self.rng = np.random.default_rng(0)
        self.space: Space | None = None
        self.supernet: Supernet | None = None
        self.cost_task: dict[str, Any] = {}  # given to `setup` (see the module docstring)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """`option -> default` of the options this class declares."""
        return {key: option.default for key, option in cls.OPTIONS.items()}

    # --- lifecycle -------------------------------------------------------------------------------
    def mode(self) -> str:
        """How this strategy gives paths to the supernet: `single`, `mix` or `hard` (`supernets.Supernet.modes`)."""
        return "single"

    def check_space(self, space: Space) -> None:
        """Raise ValueError (one sentence) when this strategy cannot run on `space`; checked with the config."""

    def setup(self, supernet: Supernet, space: Space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        """Called once before training with the run's seed, data bundle, number of epochs (for schedules) and cost
        task (the arguments of the space's analytic costs for this run); seeds the strategy's own generator from
        the run seed. Subclasses call it first and may then read `self.cost_task`."""
        self.supernet, self.space = supernet, space
        self.cost_task = dict(cost_task or {})
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))

    def epoch_order(self, epoch: int, num_samples: int) -> torch.Tensor | None:
        """Positions of the training samples for this epoch (an importance sampler's draw), or None to shuffle."""
        return None

    def sample(self) -> Arch:  # pragma: no cover - abstract
        raise NotImplementedError

    def probe(self, rng: np.random.Generator) -> Any:
        """The path on which a few-shot split compares a unit's candidates (GM-NAS's `theta`, specs/ALGORITHMS.md
        §2.2): by default a uniform valid path of the (sub-)space, drawn from `rng` (the caller's generator, so the
        strategy's own sequence is untouched). Relaxed strategies give their current masked weights instead."""
        return self.space.sample(rng, valid_only=True)

    def sample_step(self) -> list[Any]:
        """The paths trained in this step, gradients accumulated over them before one optimizer step; path 0 is
        the one logged. Default: one path, `sample()`."""
        return [self.sample()]

    def loss(self, ctx: LossContext) -> torch.Tensor:
        """The scalar one path of the step is trained on. Default: the mean label cross-entropy. Runs inside the
        engine's autocast region; what it returns is scaled (mixed precision) and back-propagated."""
        return ctx.per_sample_loss.mean()

    def after_backward(self, ctx: StepContext) -> None:
        """Gradients of this step are available (after clipping; divide by `ctx.clip_factor` for the gradients
        before it)."""

    def arch_step(self, batch: Any, ctx: ArchStepContext) -> None:
        """One architecture-parameter update on a validation batch (gradient methods, controllers)."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """End-of-epoch update; returns scalars worth logging in metrics.csv (may be empty)."""
        return {}

    def report(self) -> dict[str, Any]:
        """JSON-ready data worth keeping in the run directory (`strategy.json`), e.g. an `alpha_history`."""
        return {}

    def derive(self, max_flops: float | None = None) -> Arch | None:
        """The strategy's own final arch (gradient methods; ShiftNAS's generator for a FLOPs budget), or None:
        search with inherited weights instead. `max_flops` is the run's budget (`search.max_flops`), if any."""
        return None

    # --- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: options and the generator state (plain types only)."""
        return {"opts": dict(self.opts), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

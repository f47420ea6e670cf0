"""The strategy hook protocol: the engine calls these hooks and never branches on a strategy's name.

Order of calls in one training step (nas.engine):

    arch = strategy.sample()                       # a path for this step
    logits = supernet(x, arch); loss = mean(CE * strategy.sample_weights(arch, index))  # weights: usually None
    backward; clip global grad norm
    strategy.after_backward(ctx)                   # grads here are AFTER clipping (PA&DA reads them there);
                                                   # the optimizer step does not modify .grad, so they also
                                                   # equal the post-step gradients
    optimizer.step()
    strategy.arch_step(valid_batch, ctx)           # BEFORE each step, only when `uses_arch_step` (DARTS, GDAS)

and once per epoch `epoch_order(...)` before and `on_epoch_end(epoch)` after the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from searchspaces import Arch, Space
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
class StepContext:
    """What a strategy may read in `after_backward`: the step's batch, outputs and (clipped) gradients."""

    epoch: int
    step: int  # global step, counted from 0 over the whole run
    arch: Any  # an Arch, or ArchWeights for relaxed strategies
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # dataset index of every sample of the batch
    logits: torch.Tensor  # detached
    per_sample_loss: torch.Tensor  # detached, shape [batch]


class Strategy:
    """Base class with no-op hooks; a sampler overrides `sample` and whatever else it needs.

    Subclasses declare their options with defaults in `OPTIONS`; the config validator accepts exactly these.
    Every random draw goes through `self.rng` (a numpy Generator) so that `state_dict` captures it and a
    resumed run continues the same sequence.
    """

    name: str = "base"
    OPTIONS: dict[str, Any] = {}
    uses_arch_step: bool = False

    def __init__(self, **opts: Any):
        unknown = sorted(set(opts) - set(self.OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)} for strategy {self.name!r}; accepted: "
                f"{', '.join(sorted(self.OPTIONS)) or 'none'}"
            )
        self.opts: dict[str, Any] = {**self.OPTIONS, **opts}
        self.rng = np.random.default_rng(0)
        self.space: Space | None = None
        self.supernet: Supernet | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def setup(self, supernet: Supernet, space: Space, seed: int, data: Any = None, epochs: int | None = None) -> None:
        """Called once before training with the run's seed, data bundle and number of epochs (for schedules);
        seeds the strategy's own generator from the run seed."""
        self.supernet, self.space = supernet, space
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))

    def epoch_order(self, epoch: int, num_samples: int) -> torch.Tensor | None:
        """Positions of the training samples for this epoch (an importance sampler's draw), or None to shuffle."""
        return None

    def sample(self) -> Arch:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_weights(self, arch: Arch, index: torch.Tensor) -> torch.Tensor | None:
        """Per-sample loss weights for this step (importance sampling corrections), or None for a plain mean."""
        return None

    def after_backward(self, ctx: StepContext) -> None:
        """Gradients of this step are available (after clipping)."""

    def arch_step(self, batch: Any, ctx: ArchStepContext) -> None:
        """One architecture-parameter update on a validation batch (gradient methods, controllers)."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """End-of-epoch update; returns scalars worth logging in metrics.csv (may be empty)."""
        return {}

    def report(self) -> dict[str, Any]:
        """JSON-ready data worth keeping in the run directory (`strategy.json`), e.g. an `alpha_history`."""
        return {}

    def derive(self) -> Arch | None:
        """The strategy's own final arch (gradient methods), or None: search with inherited weights instead."""
        return None

    # --- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: options and the generator state (plain types only)."""
        return {"opts": dict(self.opts), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

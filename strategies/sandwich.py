"""The sandwich rule (Yu et al., BigNAS 2020; Cai et al., once-for-all 2020): every step trains the largest arch,
the smallest arch and `n` uniformly sampled archs of the (possibly restricted) space on the same batch, gradients
summed over the paths, then one optimizer step.

Training the two extremes every step bounds the whole space from above and below; the largest path usually
improves fastest and, with in-place distillation (BigNAS; on by default here as in BigNAS and once-for-all's
progressive shrinking), it is the teacher of the others: the smaller paths learn from its detached soft
predictions, which regularises them and transfers what the largest has learnt. The largest path always learns
from the labels. The engine sums the gradients of the paths `sample_step` returns; `loss` shapes each path's
objective (the distillation), so the engine names none (see `strategies.base`).

Largest and smallest are the space's `largest(**task)`/`smallest(**task)` (by parameter count for NB201, the
maximal/minimal choices for MobileNet), computed once in `setup` with the run's cost task.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from searchspaces import Arch, Space
from searchspaces.options import flag, integer, number
from supernets import Supernet

from .base import LossContext, Strategy
from .registry import register_strategy


@register_strategy("sandwich rule (BigNAS/OFA): largest + smallest + n uniform paths per step, in-place distillation")
class SandwichStrategy(Strategy):
    """Largest + smallest + `n` uniform paths per step; the smaller ones optionally distilled from the largest.

    Options: `n` uniform paths per step (BigNAS and once-for-all use 2); `inplace_distill` (default true): paths
    other than the largest learn from the largest path's detached soft predictions; `distill_weight` in [0, 1]:
    their loss is `(1 - w) * CE(labels) + w * soft-CE(teacher)` (1: soft labels only, as BigNAS);
    `reject_disconnected`: the uniform paths are resampled while their output is unreachable (NB201).
    """

    name = "sandwich"
    OPTIONS = {
        "n": integer(2, "uniform paths per step besides the two extremes (BigNAS, OFA: 2)", 0),
        "inplace_distill": flag(True, "paths other than the largest learn from its detached soft predictions "
                                      "(BigNAS)"),
        "distill_weight": number(1.0, "their loss: (1 - w) * CE(labels) + w * soft-CE(largest); 1 = soft labels "
                                      "only", 0.0, 1.0),
        "reject_disconnected": flag(False, "resample uniform paths whose output is unreachable (NB201)"),
    }

    def __init__(self, **opts: Any):
        super().__init__(**opts)
        weight = self.opts["distill_weight"]
        self.distill_weight = float(weight) if self.opts["inplace_distill"] else 0.0
        self.largest: Arch | None = None
        self.smallest: Arch | None = None

    def setup(self, supernet: Supernet, space: Space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        """Seed the generator and find the extremes of the space once, with the run's cost task."""
        super().setup(supernet, space, seed, data, epochs, cost_task)
        self.largest = space.largest(**self.cost_task)
        self.smallest = space.smallest(**self.cost_task)

    def sample(self) -> Arch:
        """One uniform path (the `n` middle paths of a step; also what the post-training search sees)."""
        return self.space.sample(self.rng, valid_only=bool(self.opts["reject_disconnected"]))

    def sample_step(self) -> list[Arch]:
        """[largest, smallest, n uniform]: path 0 (the largest) is logged and is the distillation teacher."""
        return [self.largest, self.smallest, *(self.sample() for _ in range(int(self.opts["n"])))]

    def loss(self, ctx: LossContext) -> torch.Tensor:
        """Path 0 (the largest) learns from the labels; with `distill_weight` w > 0 the others learn from
        `(1 - w) * CE(labels) + w * soft-CE(p0)`, p0 the detached softmax of path 0's logits (in-place distillation).
        """
        if ctx.lead_logits is None or self.distill_weight == 0.0:
            return ctx.per_sample_loss.mean()
        teacher = F.softmax(ctx.lead_logits.float(), dim=1)
        soft = -(teacher * F.log_softmax(ctx.logits.float(), dim=1)).sum(1)
        weight = self.distill_weight
        objective = soft if weight == 1.0 else (1.0 - weight) * ctx.per_sample_loss + weight * soft
        return objective.mean()

    def report(self) -> dict[str, Any]:
        """The extremes this run trained every step (strategy.json)."""
        return {"strategy": self.name, "largest": self.largest.to_string(), "smallest": self.smallest.to_string(),
                "paths_per_step": 2 + int(self.opts["n"]), "distill_weight": self.distill_weight}

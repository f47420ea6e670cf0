"""Uniform single-path sampling (SPOS, Guo et al. 2020): every step one arch, each decision uniform."""

from __future__ import annotations

from searchspaces import Arch
from searchspaces.options import flag

from .base import Strategy
from .registry import register_strategy


@register_strategy("SPOS: one uniformly sampled path per step")
class UniformStrategy(Strategy):
    """SPOS: a fresh uniform arch per step; `reject_disconnected` resamples archs whose output is unreachable.

    The reference SPOS/PA&DA baselines do not reject disconnected archs (default off); GM-NAS RSWS does.
    """

    name = "uniform"
    OPTIONS = {
        "reject_disconnected": flag(False, "resample archs whose output is unreachable (NB201); the reference SPOS "
                                           "and PA&DA baselines train disconnected archs too"),
    }

    def sample(self) -> Arch:
        return self.space.sample(self.rng, valid_only=bool(self.opts["reject_disconnected"]))

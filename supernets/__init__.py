"""Supernets: HOW shared weights compute a chosen arch (torch).

    net = supernets.build(space, num_classes=10, C=16, N=5, bn_mode="batch")
    logits = net(x, arch)
    child = net.export(arch)   # standalone nn.Module with the inherited weights
    model = supernets.build_eval_network(arch)   # the network to train an arch from scratch (DARTS, NB201)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from searchspaces import Space

from .base import ArchWeights, ChoiceKey, ChoiceSlices, Index, Supernet
from .bn import BN_MODES, batch_statistics, check_eval_mode, recalibrate
from .darts import RELAXED_ROWS, DartsSupernet, build_eval_network
from .darts_ops import DartsNetwork
from .mobilenet import MobileNetNetwork, MobileNetSupernet
from .nasbench_macro import NASBenchMacroNetwork, NASBenchMacroSupernet
from .nb201 import NB201Network, NB201Supernet

_BUILDERS: dict[str, Callable[..., Supernet]] = {
    "nb201": NB201Supernet,
    "darts": DartsSupernet,
    "mobilenet": MobileNetSupernet,
    "nasbench-macro": NASBenchMacroSupernet,
}

OPTIONS: dict[str, dict[str, Any]] = {
    "nb201": {"C": 16, "N": 5, "affine": False, "bn_mode": "batch"},
    "darts": {"C": 16, "layers": 8, "affine": False, "bn_mode": "batch", "stem_multiplier": 3},
    "mobilenet": {"width_mult": 1.0, "schedule": "cifar", "bn_mode": "recalibrate", "dropout": 0.1},
    "nasbench-macro": {"bn_mode": "recalibrate", "entangle": True},
}


def modes(space_name: str) -> tuple[str, ...]:
    """How the supernet of a space can run a path: `single`, `mix` and/or `hard` (see `Supernet.modes`)."""
    builder = _BUILDERS.get(space_name)
    return getattr(builder, "modes", ("single",)) if builder is not None else ()


def choice_gradients(space_name: str) -> bool:
    """Whether the supernet of a space names what each candidate trains (`Supernet.choice_slices`), so that
    per-candidate gradients can be read; False for a space without a supernet."""
    builder = _BUILDERS.get(space_name)
    return bool(getattr(builder, "choice_gradients", False)) if builder is not None else False


def build(space: Space, num_classes: int = 10, **opts: Any) -> Supernet:
    """The supernet of `space` for a task with `num_classes` outputs; `opts` are the space's build options."""
    try:
        builder = _BUILDERS[space.name]
    except KeyError:
        raise ValueError(f"no supernet for space {space.name!r}; available: {', '.join(_BUILDERS)}") from None
    unknown = sorted(set(opts) - set(OPTIONS[space.name]) - {"in_channels"})
    if unknown:
        raise ValueError(
            f"unknown supernet option(s) {', '.join(unknown)} for space {space.name!r}; accepted: "
            f"{', '.join(sorted(OPTIONS[space.name]))}, in_channels"
        )
    return builder(space, num_classes=num_classes, **opts)


__all__ = [
    "ArchWeights", "batch_statistics", "BN_MODES", "build", "build_eval_network", "check_eval_mode",
    "choice_gradients", "ChoiceKey", "ChoiceSlices", "Index", "modes",
    "DartsNetwork", "DartsSupernet", "MobileNetNetwork", "MobileNetSupernet", "NASBenchMacroNetwork",
    "NASBenchMacroSupernet", "NB201Network", "NB201Supernet", "OPTIONS", "RELAXED_ROWS", "recalibrate", "Supernet",
]

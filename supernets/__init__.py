"""Supernets: HOW shared weights compute a chosen arch (torch).

    net = supernets.build(space, num_classes=10, C=16, N=5, bn_mode="batch", mode="entangle")
    logits = net(x, arch)                        # one path
    logits = net(x, ArchWeights(weights))        # a relaxed arch, in the build's mode (mix or entangle)
    child = net.export(arch)   # standalone nn.Module with the inherited weights
    model = supernets.build_eval_network(arch)   # the network to train an arch from scratch (DARTS, NB201)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from searchspaces import Space

from . import mixed
from .base import ArchWeights, ChoiceKey, ChoiceSlices, Index, Supernet
from .bn import BN_MODES, batch_statistics, check_eval_mode, recalibrate
from .darts import RELAXED_ROWS, DartsSupernet, build_eval_network
from .darts_ops import DartsNetwork
from .mixed import MODES, Entangle, Mix, MixedOp, Sliceable
from .mobilenet import MobileNetNetwork, MobileNetSupernet
from .nasbench_macro import NASBenchMacroNetwork, NASBenchMacroSupernet
from .nb201 import NB201Network, NB201Supernet

_BUILDERS: dict[str, Callable[..., Supernet]] = {
    "nb201": NB201Supernet,
    "darts": DartsSupernet,
    "mobilenet": MobileNetSupernet,
    "nasbench-macro": NASBenchMacroSupernet,
}

# Build options per space with their defaults. `mode` is the build mode of relaxed archs (`mix` or `entangle`,
# specs/ALGORITHMS.md §0.3), the same key on every space; `scale_group_by_mass` is TangleNAS's group-mass flag
# (§3.5 item 2) where an entangled group competes with other candidates of its decision.
OPTIONS: dict[str, dict[str, Any]] = {
    "nb201": {"C": 16, "N": 5, "affine": False, "bn_mode": "batch", "mode": "mix", "scale_group_by_mass": False},
    "darts": {"C": 16, "layers": 8, "affine": False, "bn_mode": "batch", "stem_multiplier": 3, "mode": "mix",
              "scale_group_by_mass": False},
    "mobilenet": {"width_mult": 1.0, "schedule": "cifar", "bn_mode": "recalibrate", "dropout": 0.1, "mode": "mix"},
    # `entangle` is the deprecated name of `share_weights` (None: not given), still read with a note
    "nasbench-macro": {"bn_mode": "recalibrate", "share_weights": True, "mode": "mix", "scale_group_by_mass": False,
                       "entangle": None},
}


def modes(space_name: str) -> tuple[str, ...]:
    """The kinds of path the supernet of a space accepts, as `Strategy.mode()` names them: `single`, `mix` (relaxed
    weights, run in the build's `mode`) and/or `hard` (see `Supernet.modes`)."""
    builder = _BUILDERS.get(space_name)
    return getattr(builder, "modes", ("single",)) if builder is not None else ()


def relaxations(space_name: str) -> tuple[str, ...]:
    """The build modes (`supernet.mode`) in which the supernet of a space runs relaxed archs."""
    builder = _BUILDERS.get(space_name)
    return getattr(builder, "relaxations", ()) if builder is not None else ()


def check(space_name: str, options: Mapping[str, Any], path: str | None = None, who: str = "the strategy") -> None:
    """Raise ValueError (one sentence) when the supernet options `options` of a space are contradictory or name an
    unknown `mode`, or when `who`, which gives paths of kind `path` (`Strategy.mode()`), cannot run on a supernet
    built with them (relaxed archs in a build mode the space lacks). Cheap: nothing is built."""
    if space_name not in _BUILDERS:
        raise ValueError(f"no supernet for space {space_name!r}; available: {', '.join(_BUILDERS)}")
    mode = options.get("mode", OPTIONS[space_name].get("mode", "mix"))
    if mode not in MODES:
        raise ValueError(f"supernet.mode={mode!r} is not valid; accepted: {', '.join(MODES)}")
    if space_name == "nasbench-macro" and mode == "entangle":
        given = options.get("entangle")
        share = options.get("share_weights", True if given is None else given)
        if not share:
            raise ValueError("supernet.mode=entangle superposes the shared weights of mb_e3_k3 and mb_e6_k5, but "
                             "supernet.share_weights=false gives them separate ones; set share_weights=true or "
                             "mode=mix")
    available = relaxations(space_name)
    if path == "mix" and mode not in available:
        raise ValueError(f"{who} runs the supernet in 'mix' mode, which the {space_name} supernet does not with "
                         f"supernet.mode={mode} (it runs relaxed archs with supernet.mode={' or '.join(available)}); "
                         f"set supernet.mode={available[0]}")


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
    check(space.name, opts)
    return builder(space, num_classes=num_classes, **opts)


__all__ = [
    "ArchWeights", "batch_statistics", "BN_MODES", "build", "build_eval_network", "check", "check_eval_mode",
    "choice_gradients", "ChoiceKey", "ChoiceSlices", "Entangle", "Index", "Mix", "mixed", "MixedOp", "MODES", "modes",
    "relaxations", "Sliceable",
    "DartsNetwork", "DartsSupernet", "MobileNetNetwork", "MobileNetSupernet", "NASBenchMacroNetwork",
    "NASBenchMacroSupernet", "NB201Network", "NB201Supernet", "OPTIONS", "RELAXED_ROWS", "recalibrate", "Supernet",
]

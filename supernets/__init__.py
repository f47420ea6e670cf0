"""Supernets: HOW shared weights compute a chosen arch (torch).

    net = supernets.build(space, num_classes=10, C=16, N=5, bn_mode="batch", mode="entangle")
    logits = net(x, arch)                        # one path
    logits = net(x, ArchWeights(weights))        # a relaxed arch, in the build's mode (mix or entangle)
    child = net.export(arch)   # standalone nn.Module with the inherited weights
    model = supernets.build_eval_network(arch)   # the network to train an arch from scratch (DARTS, NB201)

Each supernet module registers its supernet once (`supernets.registry.register_supernet`); importing the module
below is its registration line. Everything else reads the registry (`entry(space_name)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from searchspaces import Arch, Space
from searchspaces.options import Option

from . import mixed
from .base import ArchWeights, ChoiceKey, ChoiceSlices, Index, Supernet
from .bn import BN_MODES, batch_statistics, check_eval_mode, recalibrate
from .mixed import MODES, Entangle, Mix, MixedOp, Sliceable
from .registry import INPUT_KINDS, PATH_KINDS, Capabilities, SupernetEntry, entries, entry, names, register_supernet

# isort: off
# The registration lines: importing a supernet module registers the supernet of its space.
from .nb201 import NB201Network, NB201Supernet
from .darts import RELAXED_ROWS, DartsSupernet
from .darts_ops import DartsNetwork
from .mobilenet import MobileNetNetwork, MobileNetSupernet
from .nasbench_macro import NASBenchMacroNetwork, NASBenchMacroSupernet
from .transformer import ElasticBert, TransformerSupernet
# isort: on


def check(space_name: str, options: Mapping[str, Any], path: str | None = None, who: str = "the strategy") -> None:
    """Raise ValueError (one sentence) when a supernet option of `options` is outside what its annotation accepts
    (`SupernetEntry.check`: a range, the choices), when the options contradict each other, or when `who`, which
    gives paths of kind `path` (`Strategy.mode()`), cannot run on a supernet built with them (relaxed archs in a
    build mode the space lacks). Cheap: nothing is built."""
    registered = entry(space_name)
    registered.check(options)
    resolved = registered.resolve(options)
    mode = resolved.get("mode", "mix")
    registered.builder.check_options(resolved)
    caps = registered.capabilities
    if path == "mix" and not caps.runs(path, mode):
        available = caps.relaxations
        raise ValueError(f"{who} runs the supernet in 'mix' mode, which the {space_name} supernet does not with "
                         f"supernet.mode={mode} (it runs relaxed archs with supernet.mode={' or '.join(available)}); "
                         f"set supernet.mode={available[0]}")


def build(space: Space, num_classes: int = 10, **opts: Any) -> Supernet:
    """The supernet of `space` for a task with `num_classes` outputs; `opts` are the space's build options."""
    registered = entry(space.name)
    unknown = sorted(set(opts) - set(registered.accepted()) - {"in_channels"})
    if unknown:
        raise ValueError(
            f"unknown supernet option(s) {', '.join(unknown)} for space {space.name!r}; accepted: "
            f"{', '.join(sorted(registered.options))}, in_channels"
        )
    check(space.name, opts)
    return registered.builder(space, num_classes=num_classes, **opts)


def build_eval_network(arch: Arch, C: int | None = None, layers: int | None = None, num_classes: int = 10,
                       auxiliary: bool = True, in_channels: int = 3, drop_path: float = 0.0):
    """The standalone network to train `arch` from scratch (`nas train`): its space's registered `eval_network`
    (DARTS: the CIFAR evaluation network, C=36 and 20 layers unless given, auxiliary head, drop-path; NB201: the
    benchmark's network, `layers` its N)."""
    available = [e.space for e in entries() if e.eval_network is not None]
    try:
        network = entry(arch.space.name).eval_network
    except ValueError:
        network = None
    if network is None:
        raise ValueError(f"no evaluation network for space {arch.space.name!r}; available: {', '.join(available)}")
    return network(arch, C=C, layers=layers, num_classes=num_classes, auxiliary=auxiliary, in_channels=in_channels,
                   drop_path=drop_path)


__all__ = [
    "ArchWeights", "batch_statistics", "BN_MODES", "build", "build_eval_network", "Capabilities", "check",
    "check_eval_mode", "ChoiceKey", "ChoiceSlices", "entries", "entry", "Entangle", "Index", "Mix", "mixed", "MixedOp",
    "MODES", "names", "Option", "PATH_KINDS", "register_supernet", "Sliceable", "SupernetEntry",
    "DartsNetwork", "DartsSupernet", "MobileNetNetwork", "MobileNetSupernet", "NASBenchMacroNetwork",
    "NASBenchMacroSupernet", "NB201Network", "NB201Supernet", "RELAXED_ROWS", "recalibrate", "Supernet",
    "ElasticBert", "INPUT_KINDS", "TransformerSupernet",
]

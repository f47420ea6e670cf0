"""Search spaces: WHAT can be chosen. Pure Python + numpy; no torch.

    import searchspaces
    space = searchspaces.get("nb201")
    arch = space.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|")
    arch = space.sample(np.random.default_rng(0)); arch.to_string()
"""

from __future__ import annotations

from .core import Arch, Decision, Space, SpaceError
from .darts import DartsSpace
from .mobilenet import MobileNetSpace
from .nasbench_macro import NASBenchMacroSpace
from .nb201 import NB201Space

_REGISTRY: dict[str, type[Space]] = {
    "nb201": NB201Space,
    "darts": DartsSpace,
    "mobilenet": MobileNetSpace,
    "nasbench-macro": NASBenchMacroSpace,
}

DESCRIPTIONS: dict[str, str] = {
    "nb201": "NAS-Bench-201 cell: 6 edges x 5 ops, 15,625 archs, one genotype for all 15 cells",
    "darts": "DARTS cell: normal + reduction cell, 4 nodes x 2 (input, op) pairs, 7 ops, ~1.1e18 genotypes",
    "mobilenet": "once-for-all MobileNetV3: 5 stages, depth {2,3,4}, kernel {3,5,7}, expand {3,4,6} per block",
    "nasbench-macro": "NAS-Bench-Macro: 8 layers x {identity, MBConv e3 k3, MBConv e6 k5}, 6,561 codes, CIFAR network",
}


def names() -> tuple[str, ...]:
    """Registered space names."""
    return tuple(_REGISTRY)


def get(name: str) -> Space:
    """A fresh, unrestricted space by name."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise SpaceError(f"unknown search space {name!r}; accepted: {', '.join(_REGISTRY)}") from None


__all__ = [
    "Arch", "Decision", "Space", "SpaceError", "NB201Space", "DartsSpace", "MobileNetSpace", "NASBenchMacroSpace",
    "get", "names", "DESCRIPTIONS",
]

"""Search spaces: WHAT can be chosen. Pure Python + numpy; no torch.

    import searchspaces
    space = searchspaces.get("nb201")
    arch = space.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|")
    arch = space.sample(np.random.default_rng(0)); arch.to_string()

A space registers itself with `@register_space(description, example)` on its class (`searchspaces.registry`);
importing its module below is its registration line. Everything else finds spaces through `get`, `names` and
`entry`.
"""

from __future__ import annotations

from .core import Arch, Decision, FlopsConvention, Space, SpaceError
from .registry import SpaceEntry, entries, entry, register_space

# isort: off
# The registration lines: importing a space module registers its space, in this order.
from .nb201 import NB201Space
from .darts import DartsSpace
from .mobilenet import MobileNetSpace
from .nasbench_macro import NASBenchMacroSpace
from .transformer import TransformerSpace
# isort: on


def names() -> tuple[str, ...]:
    """Registered space names."""
    return tuple(e.name for e in entries())


def get(name: str) -> Space:
    """A fresh, unrestricted space by name."""
    return entry(name).create()


def descriptions() -> dict[str, str]:
    """`name -> one-line description` of every registered space (`nas list`)."""
    return {e.name: e.description for e in entries()}


DESCRIPTIONS: dict[str, str] = descriptions()  # the spaces registered above; later registrations: descriptions()

__all__ = [
    "Arch", "Decision", "FlopsConvention", "Space", "SpaceEntry", "SpaceError", "NB201Space", "DartsSpace",
    "MobileNetSpace", "NASBenchMacroSpace", "TransformerSpace",
    "descriptions", "entries", "entry", "get", "names", "register_space",
]

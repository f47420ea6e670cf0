"""The types of the build options several supernets share, as their constructors annotate them.

A supernet's constructor is the one place a build option's default is written; its annotation says what the option
accepts and what it does (`Annotated[T, Between(...) | OneOf(...), Help(...)]`, `searchspaces.options`), and the
registry (`supernets.registry`) reads both into the option that config validation, `supernets.build` and
`nas config keys` use. Options of one supernet only are annotated in its own module.
"""

from __future__ import annotations

from typing import Annotated

from searchspaces.options import Help, OneOf

from .bn import BN_MODES
from .mixed import MODES

BNMode = Annotated[str, OneOf(*BN_MODES), Help(
    "BatchNorm statistics: batch (each batch its own, none kept), running (accumulated over the sampled paths) "
    "or recalibrate (re-estimated per subnet before it is scored)")]
MixMode = Annotated[str, OneOf(*MODES), Help(
    "how relaxed archs run: mix (weighted sum of the candidates' outputs, DARTS) or entangle (one op with the "
    "superposed weights of a group, TangleNAS)")]
ScaleByMass = Annotated[bool, Help("mode=entangle: multiply a group's output by its total weight (TangleNAS)")]
Affine = Annotated[bool, Help("learnable affine weights in the BatchNorm of the searched cells")]


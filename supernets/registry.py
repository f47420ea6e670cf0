"""The registry of supernets: what shared weights do with a registered space, in one registration per space.

A supernet module ends with one `register_supernet(TheSupernet, ...)` call. The registration carries:

- the builder (the `Supernet` class) and its build options, read from the builder's signature: the constructor is
  the one place a default is written, and its annotations say what is accepted
  (`dropout: Annotated[float, Between(0.0, 1.0, hi_open=True), Help("...")] = 0.1`), so that every option is a
  typed `searchspaces.options.Option` (`options`) that config validation, `supernets.build` and `nas config keys`
  read;
- the capabilities the class declares (`Capabilities`): the kinds of path its `forward` takes, the build modes in
  which it runs relaxed archs, whether `choice_slices` names what each candidate trains; checked when it registers;
- the stand-alone network `nas bench build` trains (`standalone`: the build options of an exported child that
  trains from scratch), the network `nas train` trains (`eval_network`) and its training recipe (`final_recipe`);
- a small build for tests and smoke runs (`smoke`, `smoke_image_size`): the registry tests run every registered
  supernet at it, so a new space gets them without writing any.

The face (`nas`) looks everything up here; it never names a space. This package may import `searchspaces` (whose
own registry holds what is true of a space without torch); nothing here imports `strategies` or `nas`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from searchspaces.options import Option, from_annotation

from .base import Supernet
from .mixed import MODES

# The kinds of path a strategy gives a supernet (`Strategy.mode()`): an Arch, relaxed weights, a hard sample.
PATH_KINDS: tuple[str, ...] = ("single", "mix", "hard")
# What a supernet's forward takes: images (labelled classification) or token ids (distillation on text).
INPUT_KINDS: tuple[str, ...] = ("image", "text")
# Arguments of every builder that are not build options: the space and the task.
_TASK_ARGUMENTS = ("self", "space", "num_classes", "in_channels")


@dataclass(frozen=True)
class Capabilities:
    """What a supernet declares it can run (class attributes `modes`, `relaxations`, `choice_gradients` of
    `Supernet`), checked for known names when it registers."""

    paths: tuple[str, ...]  # the kinds of path `forward` takes (PATH_KINDS)
    relaxations: tuple[str, ...]  # build modes (`supernet.mode`) in which relaxed archs run (supernets.mixed.MODES)
    choice_gradients: bool  # whether `choice_slices()` names what each candidate trains (PA&DA needs it)

    def accepts(self, path: str) -> bool:
        """Whether a strategy giving paths of kind `path` can run on this supernet in some build mode."""
        return path in self.paths and (path != "mix" or bool(self.relaxations))

    def runs(self, path: str, mode: str) -> bool:
        """Whether paths of kind `path` run on a supernet built with `supernet.mode=mode`."""
        return self.accepts(path) and (path != "mix" or mode in self.relaxations)


@dataclass(frozen=True)
class SupernetEntry:
    """The registration of the supernet of one space (see the module docstring)."""

    space: str
    builder: type[Supernet]
    options: Mapping[str, Option]
    capabilities: Capabilities
    # former option names still read (old name -> new name); not listed among `options`, never filled in
    renamed: Mapping[str, str] = field(default_factory=dict)
    # the typed options of the former names (their own arguments of the builder)
    former: Mapping[str, Option] = field(default_factory=dict)
    # `(settings, image_size) -> build options` of the network `nas bench build` trains from scratch (the exported
    # child of a supernet built with them); `settings` are nas.standalone.StandaloneSettings as a mapping. None:
    # the space's archs are not trained stand-alone from their supernet (DARTS trains its evaluation network).
    standalone: Callable[[Mapping[str, Any], int], dict[str, Any]] | None = None
    # `(arch, C, layers, num_classes, auxiliary, in_channels, drop_path) -> nn.Module`: the network `nas train`
    # trains from scratch; None: the space has no final-training network.
    eval_network: Callable[..., nn.Module] | None = None
    # the values of nas.final.FinalSettings that train `eval_network` (None exactly when eval_network is None)
    final_recipe: Mapping[str, Any] | None = None
    smoke: Mapping[str, Any] = field(default_factory=dict)  # options of a small build for tests and smoke runs
    smoke_image_size: int = 8  # the smallest input the smoke build takes
    # what `forward` takes: "image" (batches of images; the engine's labelled training) or "text" (token ids; a
    # distillation objective that a strategy with `inputs = "text"` brings, nas/distill.py)
    inputs: str = "image"

    def defaults(self) -> dict[str, Any]:
        """`option -> default` of every build option."""
        return {name: option.default for name, option in self.options.items()}

    def accepted(self) -> tuple[str, ...]:
        """Every option name a build accepts: the options, then former names still read."""
        return (*self.options, *self.renamed)

    def option(self, name: str) -> Option:
        """The typed option `name`, a current or a former one (KeyError for neither)."""
        return self.options[name] if name in self.options else self.former[name]

    def check(self, given: Mapping[str, Any]) -> None:
        """Raise OptionError (a ValueError, one sentence `supernet.<name>=<value> is not valid; accepted: ...`) for
        the first value of `given` its option does not accept; names that are no option are left to the caller."""
        for key, value in given.items():
            if key in self.options or key in self.former:
                self.option(key).check(f"supernet.{key}", value)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The full build options of `given` (a run's `supernet` section): the defaults of the options that are not
        given, except an option whose former name is given (the builder reads that one), then `given`."""
        named = {self.renamed[k] for k in given if k in self.renamed}
        return {**{k: v for k, v in self.defaults().items() if k not in named}, **given}


_ENTRIES: dict[str, SupernetEntry] = {}


def _options(builder: type[Supernet]) -> dict[str, Option]:
    """The typed build options of a builder from its constructor's signature: every keyword argument with a default,
    besides the space and the task (`num_classes`, `in_channels`), typed by its annotation (`from_annotation`)."""
    signature = inspect.signature(builder.__init__)
    try:
        hints = typing.get_type_hints(builder.__init__, include_extras=True)
    except (NameError, TypeError) as exc:
        raise TypeError(f"{builder.__name__}: the annotations of its build options do not evaluate: {exc}") from None
    out = {}
    for name, parameter in signature.parameters.items():
        if name in _TASK_ARGUMENTS or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{builder.__name__}: build option {name!r} needs a default")
        if name not in hints:
            raise TypeError(f"{builder.__name__}: build option {name!r} needs an annotation (its type)")
        try:
            out[name] = from_annotation(hints[name], parameter.default)
        except TypeError as exc:
            raise TypeError(f"{builder.__name__}: build option {name!r}: {exc}") from None
    return out


def register_supernet(builder: type[Supernet], *, space: str | None = None, renamed: Mapping[str, str] | None = None,
                      standalone: Callable[[Mapping[str, Any], int], dict[str, Any]] | None = None,
                      eval_network: Callable[..., nn.Module] | None = None,
                      final_recipe: Mapping[str, Any] | None = None, smoke: Mapping[str, Any] | None = None,
                      smoke_image_size: int = 8, inputs: str = "image") -> SupernetEntry:
    """Register `builder` as the supernet of space `space` (default: `builder.space_name`); see SupernetEntry for the
    rest. Declared capabilities, option names and the recipe are checked here, at import."""
    space = space or builder.space_name
    if space in _ENTRIES and _ENTRIES[space].builder is not builder:
        raise TypeError(f"space {space!r} has two supernets: {_ENTRIES[space].builder.__name__} and {builder.__name__}")
    caps = Capabilities(tuple(builder.modes), tuple(builder.relaxations), bool(builder.choice_gradients))
    unknown = [p for p in caps.paths if p not in PATH_KINDS] + [m for m in caps.relaxations if m not in MODES]
    if unknown or "single" not in caps.paths:
        raise TypeError(f"{builder.__name__} declares unknown or missing modes {unknown}; paths are {PATH_KINDS} "
                        f"(single always), relaxations {MODES}")
    options = _options(builder)
    renamed = dict(renamed or {})
    for old, new in renamed.items():
        if new not in options or old not in options:
            raise TypeError(f"{builder.__name__}: the renamed option {old!r} -> {new!r} must both be arguments")
    former = {k: v for k, v in options.items() if k in renamed}
    options = {k: v for k, v in options.items() if k not in renamed}
    if "mode" in options and options["mode"].values() != MODES:
        raise TypeError(f"{builder.__name__}: the build option mode takes supernets.mixed.MODES ({MODES}); annotate it "
                        "supernets.mixed.MixMode")
    if (eval_network is None) != (final_recipe is None):
        raise TypeError(f"{builder.__name__}: eval_network and final_recipe are registered together")
    unknown_smoke = sorted(set(smoke or {}) - set(options))
    if unknown_smoke:
        raise TypeError(f"{builder.__name__}: smoke options {unknown_smoke} are not build options")
    if inputs not in INPUT_KINDS:
        raise TypeError(f"{builder.__name__}: inputs={inputs!r} is not one of {INPUT_KINDS}")
    entry_ = SupernetEntry(space, builder, MappingProxyType(options), caps, MappingProxyType(renamed),
                           MappingProxyType(former), standalone,
                           eval_network, None if final_recipe is None else MappingProxyType(dict(final_recipe)),
                           MappingProxyType(dict(smoke or {})), smoke_image_size, inputs)
    _ENTRIES[space] = entry_
    return entry_


def entry(space: str) -> SupernetEntry:
    """The supernet registration of space `space`; ValueError (one sentence) when the space has no supernet."""
    try:
        return _ENTRIES[space]
    except (KeyError, TypeError):
        raise ValueError(f"no supernet for space {space!r}; spaces with a supernet: {', '.join(_ENTRIES)}") from None


def entries() -> tuple[SupernetEntry, ...]:
    """Every supernet registration, in registration order."""
    return tuple(_ENTRIES.values())


def names() -> tuple[str, ...]:
    """The spaces that have a supernet."""
    return tuple(_ENTRIES)

"""Run configuration: YAML presets, dotted overrides, validation, the resolved config of a run.

Resolution order (later wins): the schema's defaults (`nas.schema`, the one place they are written; `nas config
keys` lists them) < `configs/spaces/<space>.yaml` <
`configs/strategies/<strategy>.yaml` < `configs/datasets/<dataset>.yaml` < `configs/spaces/<space>/<dataset>.yaml`
(a space's setting for one dataset, e.g. NB201's small-image macro on digits) < `--config FILE` < the named
command-line flags < `--set key=value`. The space, strategy and dataset names themselves are taken from the
same layers first, so presets follow what the user asked for. Every key is validated by its typed option (the
run sections' in `nas.schema.SCHEMA`, a supernet's from its constructor's annotations, a strategy's `OPTIONS`); a
bad one stops the run with one sentence that names the key, the value and what is accepted. The resolved config
lists every key, the supernet's build options and the strategy's options included, so that config.yaml records
what the run used.
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

import searchspaces
import strategies
import supernets
from searchspaces.options import Option, OptionError

from .errors import UserError
from .schema import SCHEMA, SECTIONS, defaults

Config = dict[str, Any]


class _Loader(yaml.SafeLoader):
    """The safe loader, also reading `1e-3` as a number (YAML 1.1 wants a dot: `1.0e-3`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def presets_dir() -> Path:
    """`configs/` of the source tree, or the copy installed as package data (`nas.presets`)."""
    source = Path(__file__).resolve().parent.parent / "configs"
    if (source / "spaces").is_dir():
        return source
    return Path(str(importlib.resources.files("nas.presets")))


def load_yaml(path: str | Path) -> Config:
    """Read a YAML mapping with the safe loader; a bad file is a user error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        loaded = _safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {str(path)!r} is not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"config file {str(path)!r} must hold a mapping of sections, got {type(loaded).__name__}")
    return loaded


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Config:
    """Deep merge: mappings merge key by key, anything else in `over` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> Config:
    """`train.lr=0.05` -> `{"train": {"lr": 0.05}}`; the value is read as YAML (numbers, true/false, null)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"--set takes KEY=VALUE with a dotted key such as train.lr=0.05, got {item!r}")
    try:
        value = _safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    nested: Config = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def find_config_file(name: str) -> Path:
    """A path, or the name of a preset under configs/experiments/ (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    experiments = presets_dir() / "experiments"
    for candidate in (experiments / name, experiments / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in experiments.glob("*.yaml"))
    raise UserError(f"config {name!r} is neither a file nor a preset; presets: {', '.join(known)}")


def _preset(kind: str, name: str) -> Config:
    path = presets_dir() / kind / f"{name}.yaml"
    return load_yaml(path) if path.is_file() else {}


def resolve(
    config_files: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
) -> Config:
    """Build and validate the config of a run from presets, config files, flags and `--set` overrides."""
    files = [load_yaml(find_config_file(f)) for f in config_files]
    flag_layer: Config = {}
    for dotted, value in (flags or {}).items():
        if value is not None:
            _set(flag_layer, dotted, value)
    set_layers = [parse_override(item) for item in overrides]
    user_layers = [*files, flag_layer, *set_layers]

    config = defaults()
    names = config
    for layer in user_layers:
        names = merge(names, layer)
    names = _space_dataset(names, user_layers)
    chosen: dict[str, str] = {}
    for kind, section in (("spaces", "space"), ("strategies", "strategy"), ("datasets", "data")):
        name = names.get(section, {}).get("name") if isinstance(names.get(section), Mapping) else None
        if isinstance(name, str):
            chosen[section] = name
            config = merge(config, _preset(kind, name))
    if "space" in chosen and "data" in chosen:  # the space's setting for this dataset
        config = merge(config, _preset("spaces", f"{chosen['space']}/{chosen['data']}"))
    for layer in user_layers:
        config = merge(config, layer)
    validate(config)
    return complete(config)


def _space_dataset(names: Config, user_layers: list[Config]) -> Config:
    """Where the user names no dataset (no strategy), the one the space's preset names (the transformer space: text
    and autodistil), so that the presets of the dataset and the strategy follow the space."""
    space = names.get("space", {}).get("name") if isinstance(names.get("space"), Mapping) else None
    preset = _preset("spaces", space) if isinstance(space, str) else {}
    for section in ("data", "strategy"):
        given = any(isinstance(layer.get(section), Mapping) and "name" in layer[section] for layer in user_layers)
        preferred = preset.get(section, {}).get("name") if isinstance(preset.get(section), Mapping) else None
        if not given and isinstance(preferred, str):
            names = merge(names, {section: {"name": preferred}})
    return names


def complete(config: Config) -> Config:
    """The config with every build option of its space's supernet and every option of its strategy: the registries'
    defaults (the builder's signature, the strategy's `OPTIONS`: the one places they are written) fill what the
    layers left out, so that config.yaml records the network a run builds and the strategy it runs. A validated
    config is expected."""
    config = dict(config)
    config["supernet"] = supernets.entry(config["space"]["name"]).resolve(config["supernet"])
    own = strategies.entry(config["strategy"]["name"]).defaults()
    config["strategy"] = {"name": config["strategy"]["name"], **own, **config["strategy"]}
    return config


def _set(config: Config, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cursor = config
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value


def get(config: Mapping[str, Any], dotted: str) -> Any:
    cursor: Any = config
    for part in dotted.split("."):
        cursor = cursor[part]
    return cursor


# --- validation ------------------------------------------------------------------------------------
def _check(option: Option, key: str, value: Any) -> None:
    """The option's one-sentence check, as a user error."""
    try:
        option.check(key, value)
    except OptionError as exc:
        raise UserError(str(exc)) from None




def _unknown(key: str, known: Iterable[str], where: str) -> UserError:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return UserError(f"unknown config key {key!r}{hint}; accepted {where}: {', '.join(known)}")


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def validate(config: Config) -> None:
    """Raise `UserError` with one sentence for the first invalid or unknown key."""
    for section in config:
        if section not in SECTIONS:
            raise _unknown(section, SECTIONS, "sections")
    for section in SECTIONS:
        if section != "seed" and not isinstance(config.get(section), Mapping):
            raise UserError(f"config section {section!r} must be a mapping of keys to values")
    flat = _flatten(config)
    for key in ("space.name", "strategy.name", "data.name"):
        if key not in flat:
            raise UserError(f"config key {key!r} is missing")
        _check(SCHEMA[key], key, flat[key])
    space_name, strategy_name = config["space"]["name"], config["strategy"]["name"]
    if space_name not in supernets.names():
        raise UserError(f"search space {space_name!r} has no supernet yet, so it cannot be trained; spaces with a "
                        f"supernet: {', '.join(supernets.names())}")

    registered = supernets.entry(space_name)
    supernet_options = registered.accepted()
    strategy_options = strategies.strategy_class(strategy_name).OPTIONS
    for key, value in flat.items():
        section, _, rest = key.partition(".")
        if section == "supernet":
            if rest not in supernet_options:
                raise _unknown(key, [f"supernet.{k}" for k in supernet_options], f"for space {space_name}")
            _check(registered.option(rest), key, value)
        elif section == "strategy" and rest != "name":
            if rest not in strategy_options:
                raise _unknown(key, [f"strategy.{k}" for k in strategy_options] or ["strategy.name"],
                               f"for strategy {strategy_name}")
            _check(strategy_options[rest], key, value)
        elif section in ("supernet", "strategy"):
            continue
        elif key in SCHEMA:
            _check(SCHEMA[key], key, value)
        else:
            raise _unknown(key, [k for k in SCHEMA if k.startswith(section + ".")] or SCHEMA, f"in {section}")
    for key in SCHEMA:
        if key not in flat:
            raise UserError(f"config key {key!r} is missing; add it or leave it to the defaults")
    _validate_inputs(config, registered.inputs)
    try:  # the strategy says whether it fits the space (its options' values are checked above)
        strategy = strategies.get(strategy_name, **{k: v for k, v in config["strategy"].items() if k != "name"})
        strategy.check_space(searchspaces.get(space_name))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    capabilities = registered.capabilities
    if not capabilities.accepts(strategy.mode()):
        fitting = [name for name in strategies.names()
                   if capabilities.accepts(strategies.strategy_class(name)().mode())]
        raise UserError(f"strategy {strategy_name} runs the supernet in {strategy.mode()!r} mode, which the "
                        f"{space_name} supernet does not (it runs {', '.join(capabilities.paths)}); strategies that "
                        f"fit: {', '.join(fitting)}")
    _validate_combinations(config)


def _validate_inputs(config: Config, inputs: str) -> None:
    """The supernet's input (images or token ids), the strategy's objective and the dataset must agree."""
    from .schema import TEXT_DATASETS

    space_name, strategy_name, data = config["space"]["name"], config["strategy"]["name"], config["data"]
    fitting = [n for n in strategies.names() if strategies.strategy_class(n).inputs == inputs]
    if strategies.strategy_class(strategy_name).inputs != inputs:
        kind = "token ids (text)" if inputs == "text" else "images"
        raise UserError(f"strategy {strategy_name} does not train a supernet of {kind}, which space {space_name} "
                        f"has; strategies that fit: {', '.join(fitting)}")
    if (data["name"] in TEXT_DATASETS) != (inputs == "text"):
        accepted = TEXT_DATASETS if inputs == "text" else [d for d in SCHEMA["data.name"].values()
                                                           if d not in TEXT_DATASETS]
        raise UserError(f"dataset {data['name']!r} does not fit space {space_name}, whose supernet takes "
                        f"{'text' if inputs == 'text' else 'images'}; accepted: {', '.join(accepted)}")
    if data.get("path") is not None and inputs != "text":
        raise UserError("data.path (--data) gives the text of a text space (transformer); image datasets are found "
                        "by data.name and data.data_dir")


def _validate_combinations(config: Config) -> None:
    data, train, search, ev = config["data"], config["train"], config["search"], config["eval"]
    if train["lr_min"] > train["lr"]:
        raise UserError(f"train.lr_min={train['lr_min']} is larger than train.lr={train['lr']}; lr_min must be <= lr")
    if train["warmup_epochs"] >= train["epochs"]:
        raise UserError(
            f"train.warmup_epochs={train['warmup_epochs']} leaves no epoch after warm-up; "
            f"use fewer than train.epochs={train['epochs']}"
        )
    strategy_class = strategies.strategy_class(config["strategy"]["name"])
    if (strategy_class.uses_arch_step or strategy_class.needs_valid_split) and data["valid_fraction"] == 0:
        raise UserError(f"strategy {config['strategy']['name']} updates its architecture on a validation split; "
                        "set data.valid_fraction > 0")
    needs_valid = (search["method"] != "none" and search["split"] == "valid") or ev["monitor_archs"] > 0
    if needs_valid and data["valid_fraction"] == 0:
        raise UserError(
            "data.valid_fraction=0 leaves no validation split, but search.split=valid or eval.monitor_archs>0 "
            "need one; set data.valid_fraction > 0, search.split=test, or eval.monitor_archs=0"
        )
    if search["sample_size"] > search["population"]:
        raise UserError(
            f"search.sample_size={search['sample_size']} exceeds search.population={search['population']}; "
            "the tournament samples from the population"
        )
    bn_build = supernets.entry(config["space"]["name"]).resolve(config["supernet"]).get("bn_mode", "batch")
    bn_eval = ev["bn_mode"] or bn_build
    if bn_build == "batch" and bn_eval != "batch":
        raise UserError(
            f"eval.bn_mode={bn_eval} needs running BN statistics, but supernet.bn_mode=batch keeps none; "
            "use eval.bn_mode=batch or build with supernet.bn_mode=running"
        )
    if config["rank"]["every"] > 0 and not config["rank"]["benchmark"]:
        raise UserError("rank.every > 0 (--rank-every) needs rank.benchmark: a benchmark name (nas list) or a "
                        "directory written by nas bench build")
    if config["rank"]["split"] == "valid" and config["rank"]["every"] > 0 and data["valid_fraction"] == 0:
        raise UserError("rank.split=valid needs data.valid_fraction > 0")
    _validate_split(config)
    if data["download"] and data["name"] not in ("cifar10", "cifar100"):
        raise UserError(f"data.download works for cifar10 and cifar100 only, not {data['name']!r}")


def dump(config: Config) -> str:
    """The config as YAML text, sections in a stable, readable order."""
    ordered = {key: config[key] for key in SECTIONS if key in config}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)


def _validate_split(config: Config) -> None:
    """A few-shot split needs epochs inside training; split epochs without a split method are a mistake."""
    sp, epochs = config["split"], config["train"]["epochs"]
    if sp["method"] == "none":
        if sp["epochs"]:
            raise UserError(f"split.epochs={sp['epochs']} (--split-epochs) needs split.method gm or random "
                            "(--split gm)")
        return
    if not sp["epochs"]:
        raise UserError(f"split.method={sp['method']} needs split.epochs (--split-epochs), the epochs after which "
                        "the supernets are split, e.g. 20,40")
    units = len(searchspaces.get(config["space"]["name"]).split_units())
    if len(sp["epochs"]) > units:
        raise UserError(f"split.epochs={sp['epochs']} asks for {len(sp['epochs'])} splits, but space "
                        f"{config['space']['name']} has {units} units to split along (each split uses one up); give "
                        f"at most {units} split epochs")
    if sp["epochs"][-1] >= epochs:
        raise UserError(f"split.epochs={sp['epochs']} must all lie before the end of training "
                        f"(train.epochs={epochs}); a sub-supernet needs at least one epoch after its split")

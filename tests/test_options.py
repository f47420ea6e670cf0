"""Typed options: one declaration gives the default, the check, --help and `nas config keys`, for the run sections,
every registered supernet's build options and every registered strategy's options."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import pytest
import yaml

import strategies
import supernets
from nas import config as cfg
from nas import rundir, schema
from nas.cli import _SEARCH_FLAGS, _build_parser, main
from nas.errors import UserError
from searchspaces.options import Between, Help, OneOf, Option, OptionError, from_annotation, yaml_text


def bad_values(option: Option) -> list[Any]:
    """Values the declaration refuses: just outside each declared end, outside the choices, of the wrong type."""
    out: list[Any] = []
    values = option.values()
    if values is not None:
        out.append(max(values) + 1 if option.kind == "int" else "not-a-choice")
    elif option.kind in ("int", "float") and option.range is not None:
        r, step = option.range, 1 if option.kind == "int" else 0.5
        if r.lo is not None:
            out.append(r.lo if r.lo_open else r.lo - step)
        if r.hi is not None:
            out.append(r.hi if r.hi_open else r.hi + step)
    out.append({"int": 2.5, "float": "x", "bool": "maybe"}.get(option.kind, 3))
    if not option.nullable:
        out.append(None)
    return out


def closed_ends(option: Option) -> list[Any]:
    """The ends of a range that it includes (they must pass)."""
    r = option.range
    if r is None:
        return []
    return [end for end, is_open in ((r.lo, r.lo_open), (r.hi, r.hi_open)) if end is not None and not is_open]


def _sentence(key: str, value: Any, option: Option) -> str:
    return f"{key}={value!r} is not valid; accepted: {option.accepted()}"


# --- the option type ------------------------------------------------------------------------------------------------
def test_the_sentence_names_the_key_the_value_and_what_is_accepted():
    option = Option(0.1, "float", "dropout", Between(0.0, 1.0, hi_open=True))
    with pytest.raises(OptionError) as info:
        option.check("supernet.dropout", -0.5)
    assert str(info.value) == "supernet.dropout=-0.5 is not valid; accepted: a number from 0.0 to 1.0 (exclusive)"
    option.check("supernet.dropout", 0.0)
    option.check("supernet.dropout", 0)  # an integer is a number
    for bad in (1.0, True, "0.5", math.nan, math.inf, None):
        with pytest.raises(OptionError):
            option.check("supernet.dropout", bad)


@pytest.mark.parametrize("between, text", [
    (Between(0, 2**31 - 1), "from 0 to 2147483647"),
    (Between(0.0, 1.0, hi_open=True), "from 0.0 to 1.0 (exclusive)"),
    (Between(1), ">= 1"),
    (Between(0.0, lo_open=True), "> 0.0"),
    (Between(0.0, 1.0, lo_open=True, hi_open=True), "> 0.0 and < 1.0"),
    (Between(hi=5), "<= 5"),
])
def test_ranges_say_their_ends(between, text):
    assert between.text() == text


def test_kinds_choices_and_null():
    order = Option(1, "int", "order", choices=(1, 2))
    order.check("strategy.order", 2)
    for bad in (3, True, "1", 1.0):  # True == 1 and 1.0 == 1 in Python: the kind is checked first
        with pytest.raises(OptionError, match="accepted: 1, 2$"):
            order.check("strategy.order", bad)
    mode = Option(None, "str", "bn", choices=("batch", "running"), nullable=True)
    mode.check("eval.bn_mode", None)
    with pytest.raises(OptionError, match="accepted: batch, running or null"):
        mode.check("eval.bn_mode", "sometimes")
    named = Option("a", "str", "x", choices=lambda: ("a", "b"), noun="thing")
    with pytest.raises(OptionError, match=r"^unknown thing 'c' \(x.name\); accepted: a, b$"):
        named.check("x.name", "c")
    device = Option("auto", "device", "device")
    for good in ("cpu", "cuda", "cuda:3", "mps", "auto"):
        device.check("train.device", good)
    with pytest.raises(OptionError, match="accepted: auto, cpu, cuda, cuda:N or mps"):
        device.check("train.device", "tpu")
    with pytest.raises(OptionError, match="accepted: a path or null"):
        Option(None, "path", "p", nullable=True).check("data.data_dir", "")


def test_a_declaration_is_checked_when_it_is_made():
    with pytest.raises(TypeError, match="fails its own check"):
        Option(-1, "int", "n", Between(0))
    with pytest.raises(TypeError, match="fails its own check"):
        Option("x", "str", "rule", choices=("gradient", "boltzmann"))
    with pytest.raises(TypeError, match="kind"):
        Option(1, "complex", "z")
    with pytest.raises(TypeError, match="range"):
        Option(True, "bool", "b", Between(0))
    with pytest.raises(TypeError, match="one line"):
        Option(1, "int", "two\nlines")


def test_annotations_become_options():
    dropout = from_annotation(Annotated[float, Between(0.0, 1.0, hi_open=True), Help("dropout rate")], 0.1)
    assert (dropout.kind, dropout.default, dropout.help) == ("float", 0.1, "dropout rate")
    assert dropout.range == Between(0.0, 1.0, hi_open=True) and not dropout.nullable
    mode = from_annotation(Annotated[str, OneOf("mix", "entangle")], "mix")
    assert mode.values() == ("mix", "entangle") and mode.kind == "str"
    old = from_annotation(bool | None, None)
    assert old.kind == "bool" and old.nullable
    assert from_annotation(int, 3).kind == "int" and from_annotation(int, 3).range is None
    with pytest.raises(TypeError, match="not a config type"):
        from_annotation(list, [])
    with pytest.raises(TypeError, match="fails its own check"):
        from_annotation(Annotated[int, Between(1)], 0)


# --- every registered strategy --------------------------------------------------------------------------------------
STRATEGY_OPTIONS = [(name, key) for name in strategies.names() for key in strategies.entry(name).options]


@pytest.mark.parametrize("name", strategies.names())
def test_every_strategy_option_is_typed_with_help(name):
    options = strategies.entry(name).options
    for key, option in options.items():
        assert isinstance(option, Option) and option.help, (name, key)
        option.check(f"strategy.{key}", option.default)
        for end in closed_ends(option):
            strategies.get(name, **{key: end})
    assert strategies.get(name).opts == {k: o.default for k, o in options.items()}


def _refused_in_one_sentence(option, dotted: str, flags: dict, direct) -> None:
    """Every value outside `option` is refused with the same sentence by its own check (`direct(bad)`, a
    ValueError) and by config resolution (`--set dotted=bad`, a UserError)."""
    for bad in bad_values(option):
        expected = _sentence(dotted, bad, option)
        with pytest.raises(ValueError) as info:
            direct(bad)
        assert str(info.value) == expected
        with pytest.raises(UserError) as info:
            cfg.resolve([], flags, [f"{dotted}={yaml_text(bad)}"])
        assert str(info.value) == expected


@pytest.mark.parametrize("name, key", STRATEGY_OPTIONS)
def test_a_strategy_refuses_a_value_outside_its_declaration_in_one_sentence(name, key):
    _refused_in_one_sentence(strategies.entry(name).options[key], f"strategy.{key}", {"strategy.name": name},
                             lambda bad: strategies.get(name, **{key: bad}))


def test_declared_strategy_ranges():
    """The ranges and choices the strategies' docstrings and ALGORITHMS.md give, as declared."""
    darts, drnas = strategies.entry("darts").options, strategies.entry("drnas").options
    assert darts["order"].values() == (1, 2) and darts["arch_lr"].range == Between(0.0, lo_open=True)
    assert darts["arch_beta1"].range == darts["arch_beta2"].range == Between(0.0, 1.0, hi_open=True)
    assert drnas["reg_type"].values() == ("l2", "kl") and drnas["reg_scale"].range == Between(0.0)
    sandwich = strategies.entry("sandwich").options
    assert sandwich["n"].range == Between(0) and sandwich["distill_weight"].range == Between(0.0, 1.0)
    assert strategies.entry("pada").options["grad_read"].values() == ("after_clip", "after_backward")
    assert strategies.entry("shiftnas").options["rule"].values() == ("gradient", "boltzmann")
    gdas = strategies.entry("gdas").options
    assert set(gdas) == {"arch_lr", "arch_beta1", "arch_beta2", "arch_weight_decay", "init_scale", "tau_max",
                         "tau_min"}


def test_strategies_refuse_untyped_options():
    from strategies import Strategy, register_strategy

    class Untyped(Strategy):
        name = "untyped-test"
        OPTIONS = {"n": 2}

    with pytest.raises(TypeError, match="typed Options"):
        register_strategy("a strategy with an untyped option")(Untyped)
    assert "untyped-test" not in strategies.names()


# --- every registered supernet --------------------------------------------------------------------------------------
SUPERNET_OPTIONS = [(space, key) for space in supernets.names() for key in supernets.entry(space).options]


@pytest.mark.parametrize("space", supernets.names())
def test_every_build_option_is_typed_with_help(space):
    registered = supernets.entry(space)
    for key, option in registered.options.items():
        assert isinstance(option, Option) and option.help, (space, key)
        option.check(f"supernet.{key}", option.default)
        assert option.kind in ("int", "float", "bool", "str")
        assert option.kind != "str" or option.values(), f"{space}: {key} is a string without choices"
    if "bn_mode" in registered.options:
        assert registered.options["bn_mode"].values() == supernets.BN_MODES
    if "mode" in registered.options:
        assert registered.options["mode"].values() == supernets.MODES


@pytest.mark.parametrize("space, key", SUPERNET_OPTIONS)
def test_a_build_option_outside_its_declaration_is_refused_in_one_sentence(space, key):
    _refused_in_one_sentence(supernets.entry(space).options[key], f"supernet.{key}", {"space.name": space},
                             lambda bad: supernets.check(space, {key: bad}))


def test_declared_supernet_ranges():
    """The ranges the brief names, read from the constructors' annotations."""
    mobilenet = supernets.entry("mobilenet").options
    assert mobilenet["dropout"].range == Between(0.0, 1.0, hi_open=True)
    assert mobilenet["width_mult"].range == Between(0.0, lo_open=True)
    assert set(mobilenet["schedule"].values()) == {"cifar", "imagenet"}
    nb201 = supernets.entry("nb201").options
    assert nb201["C"].range == nb201["N"].range == Between(1)
    assert supernets.entry("darts").options["layers"].range == Between(3)  # two reduction cells


# --- the run sections -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [k for k in schema.SCHEMA if k not in ("space.name", "strategy.name", "data.name")])
def test_run_section_keys_refuse_values_outside_their_declaration(key):
    option = schema.SCHEMA[key]
    assert option.help
    option.check(key, option.default)
    for bad in bad_values(option):
        with pytest.raises(UserError) as info:
            cfg.resolve([], {}, [f"{key}={yaml_text(bad)}"])
        assert str(info.value) == _sentence(key, bad, option)


def test_the_schema_is_where_resolution_starts():
    defaults = schema.defaults()
    assert list(defaults) == list(schema.SECTIONS)
    assert {k: cfg.get(defaults, k) for k in schema.SCHEMA} == {k: o.default for k, o in schema.SCHEMA.items()}
    assert not (cfg.presets_dir() / "defaults.yaml").exists()  # no second copy of the defaults
    # a key that no preset of the default space, strategy and dataset sets keeps its declared default
    resolved = cfg.resolve()
    assert resolved["search"] == defaults["search"] and resolved["rank"] == defaults["rank"]


def _fitting_config(strategy: str) -> dict:
    """The resolved config of `strategy` on the first registered space it runs on."""
    for space in supernets.names():
        try:
            return cfg.resolve([], {"strategy.name": strategy, "space.name": space})
        except UserError:
            continue
    raise AssertionError(f"strategy {strategy} runs on no registered space")


def _preset_values(config: dict, section: str) -> dict:
    """What the presets of the run's space and dataset set in `section`."""
    space, dataset = config["space"]["name"], config["data"]["name"]
    out: dict = {}
    for path in ("spaces/" + space, "datasets/" + dataset, f"spaces/{space}/{dataset}"):
        file = cfg.presets_dir() / f"{path}.yaml"
        if file.is_file():
            out.update(cfg.load_yaml(file).get(section, {}))
    return out


@pytest.mark.parametrize("name", strategies.names())
def test_the_recorded_config_holds_every_default(name, tmp_path):
    """config.yaml lists every strategy and supernet option: the declared defaults where no layer set one."""
    config = _fitting_config(name)
    assert config["strategy"] == {"name": name, **strategies.entry(name).defaults()}
    space = supernets.entry(config["space"]["name"])
    assert config["supernet"] == {**space.defaults(), **_preset_values(config, "supernet")}
    assert config["search"] == {**schema.defaults()["search"], **_preset_values(config, "search")}
    run = rundir.create(tmp_path / "run", config)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded == config and rundir.load_config(run) == config
    options = {k: v for k, v in recorded["strategy"].items() if k != "name"}
    assert strategies.get(name, **options).opts == options


# --- --help and nas config keys -------------------------------------------------------------------------------------
def test_search_flags_take_help_and_default_from_the_schema():
    parser = _build_parser()
    search = parser._subparsers._group_actions[0].choices["search"]
    actions = {a.option_strings[0]: a for a in search._actions if a.option_strings}
    from nas.cli import _strategy_option

    for flag, key, _ in _SEARCH_FLAGS:  # a run key, or a strategy's (--teacher: strategy.teacher)
        option, help_text = schema.SCHEMA.get(key) or _strategy_option(key), actions[flag].help
        assert option.help in help_text.replace("%%", "%") and f"({key}, default {yaml_text(option.default)})" in \
            help_text, flag
        if option.kind in ("int", "float") and option.range is not None:
            assert option.accepted(null=False) in help_text, flag


def test_config_keys_documents_every_key_of_a_space_and_strategy(capsys):
    assert main(["config", "keys", "--space", "mobilenet", "--strategy", "sandwich", "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    expected = [k.key for k in schema.keys("mobilenet", "sandwich")]
    assert list(rows) == expected
    assert set(expected) >= {f"supernet.{k}" for k in supernets.entry("mobilenet").options}
    assert set(expected) >= {f"strategy.{k}" for k in strategies.entry("sandwich").options} | set(schema.SCHEMA)
    dropout = rows["supernet.dropout"]
    assert (dropout["accepted"], dropout["default"]) == ("a number from 0.0 to 1.0 (exclusive)", 0.1)
    assert rows["eval.bn_mode"]["preset"] == "recalibrate" and rows["eval.bn_mode"]["preset_changes"]  # space preset
    assert main(["config", "keys", "--space", "darts", "--strategy", "darts"]) == 0
    text = capsys.readouterr().out
    option = strategies.entry("darts").options["order"]
    assert f"strategy.order = 1\n    {option.accepted()}; {option.help}" in text
    assert "supernet.layers = 8" in text and "supernet.N" not in text


def test_config_keys_refuses_an_unknown_strategy_in_one_line(capsys):
    assert main(["config", "keys", "--strategy", "magic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nas: error: unknown strategy 'magic' (strategy.name); accepted: {', '.join(strategies.names())}"]

"""Every registered space, supernet and strategy, checked through the registries: a new space or strategy gets
these tests by registering, without writing any. Each runs the space's small `smoke` build on random inputs of
`smoke_image_size` pixels (or the synthetic 8x8 data), so a space costs a few seconds here.

Properties: the string form round-trips and is the benchmark key; seeded sampling repeats; declared capabilities
hold (FLOPs counters, cost terms); the exported child computes the supernet's path and has the analytic params and
FLOPs of the space; a one-hot relaxation computes the single path in every build mode a supernet declares; a
search interrupted after one epoch resumes bit-exact; presets write no default twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import searchspaces
import strategies
import supernets
from nasbench.keys import key_function
from supernets import ArchWeights
from supernets.counting import count_flops, count_params

ROOT = Path(__file__).resolve().parent.parent
SPACES = searchspaces.names()
SUPERNETS = [e.space for e in supernets.entries() if e.inputs == "image"]  # image supernets: labelled training
TEXT_SUPERNETS = [e.space for e in supernets.entries() if e.inputs == "text"]  # token ids: distillation
RELAXED = [(e.space, mode) for e in supernets.entries() for mode in e.capabilities.relaxations]


def _archs(space, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [space.parse(searchspaces.entry(space.name).example)] + [space.sample(rng) for _ in range(n)]


def _smoke(name: str, seed: int = 0, **opts):
    """The registered smoke build of `name` (3 input channels, 5 classes), and its input size."""
    registered = supernets.entry(name)
    torch.manual_seed(seed)
    net = supernets.build(searchspaces.get(name), num_classes=5, **{**registered.smoke, **opts})
    return net, registered.smoke_image_size


def _warm_up(net, size: int, archs) -> None:
    """A few training-mode paths, so that running BN statistics carry something; then eval mode."""
    net.train()
    with torch.no_grad():
        for arch in archs:
            net(torch.randn(4, 3, size, size), arch)
    net.eval()


# --- spaces --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
def test_string_form_round_trips_and_is_the_benchmark_key(name):
    space = searchspaces.get(name)
    key = key_function(name)
    for arch in _archs(space, 20):
        text = arch.to_string()
        assert space.parse(text) == arch and space.parse(text).to_string() == text
        assert space.key(arch) == space.key(text) == key(arch) == key(text) == text
    example = searchspaces.entry(name).example
    assert space.key(example) == space.parse(example).to_string()


@pytest.mark.parametrize("name", SPACES)
def test_seeded_sampling_repeats_and_seeds_differ(name):
    space = searchspaces.get(name)

    def draws(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [space.sample(rng).to_string() for _ in range(10)]

    assert draws(3) == draws(3) and draws(3) != draws(4) and len(set(draws(3))) > 1
    codes = [space.sample_codes(np.random.default_rng(4), 50) for _ in range(2)]
    assert np.array_equal(*codes) and len({tuple(row) for row in codes[0]}) > 1


@pytest.mark.parametrize("name", SPACES)
def test_declared_costs_exist_and_cost_terms_add_up(name):
    space = searchspaces.get(name)
    registered = searchspaces.entry(name)
    assert registered.has_flops == space.has_flops and registered.space_class is type(space)
    for arch in _archs(space, 5, seed=1):
        assert space.params(arch) > 0
        if space.has_flops:
            counts = [space.flops(arch, **({"counter": c} if c else {})) for c in (None, *space.flops_counters)]
            assert all(count > 0 for count in counts)
        for kind in space.cost_term_kinds:
            constant, terms = space.cost_terms(kind)
            index = {label: i for i, label in enumerate(space.labels)}
            codes = arch.codes()
            total = constant + sum(table[tuple(codes[index[label]] for label in labels)] for labels, table in terms)
            assert total == getattr(space, kind)(arch), (kind, arch)


def test_a_space_must_declare_what_it_counts():
    class Undeclared(searchspaces.Space):
        name = "undeclared-test-space"

        def flops(self, arch, **task):
            return 1

    with pytest.raises(TypeError, match="flops_convention"):
        searchspaces.register_space("a space that counts FLOPs but does not say how", example="")(Undeclared)
    assert "undeclared-test-space" not in searchspaces.names()


# --- supernets -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SUPERNETS)
def test_export_computes_what_the_supernet_path_computes(name):
    net, size = _smoke(name, bn_mode="running")
    space = net.space
    archs = _archs(space, 3, seed=2)
    _warm_up(net, size, archs)
    x = torch.randn(4, 3, size, size)
    for arch in archs:
        child = net.export(arch).eval()
        with torch.no_grad():
            torch.testing.assert_close(child(x), net(x, arch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", SUPERNETS)
def test_analytic_params_and_flops_equal_counts_of_the_exported_network(name):
    """`space.params`/`flops` under the supernet's `export_costs()` against a count of the child; FLOPs by the space's
    declared convention (`flops_convention`). Archs are canonical: a dead NB201 edge runs in the benchmark's
    network (and is counted) but not in ours."""
    net, size = _smoke(name)
    space = net.space
    costs = net.export_costs()
    assert costs is not None, f"the smoke build of {name} should describe its exported child"
    task = dict(num_classes=5, in_channels=3, image_size=size, **costs)
    convention = space.flops_convention
    for arch in {space.canonical(a) for a in _archs(space, 6, seed=3)}:
        child = net.export(arch)
        assert count_params(child) == space.params(arch, **task), arch
        if convention is not None:
            counted = count_flops(child, (3, size, size), bias=convention.bias, pools=convention.pools)
            assert counted == space.flops(arch, **task), arch


@pytest.mark.parametrize("name", TEXT_SUPERNETS)
def test_a_text_supernet_exports_what_its_path_computes_with_the_counted_parameters(name):
    """A supernet over token ids, built over a small teacher of its space: the exported student computes the
    supernet's path on token ids, and its parameter count is the space's analytic count."""
    from searchspaces.transformer import Teacher

    space = type(searchspaces.get(name))(teacher=Teacher(layers=4, hidden=48, heads=4, head_size=8, intermediate=192,
                                                         vocab_size=50, max_positions=16))
    torch.manual_seed(0)
    net = supernets.build(space).eval()
    ids = torch.randint(50, (2, 12))
    rng = np.random.default_rng(6)
    for arch in [space.teacher_arch()] + [space.sample(rng) for _ in range(4)]:
        child = net.export(arch).eval()
        with torch.no_grad():
            torch.testing.assert_close(child(ids).hidden, net(ids, arch).hidden, rtol=0, atol=1e-5)
        assert count_params(child) == space.params(arch, **net.export_costs()), arch


@pytest.mark.parametrize("name, mode", RELAXED)
@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_a_one_hot_relaxation_computes_the_single_path(name, mode, bn_mode):
    """`mix(onehot(k)) == single(k)` and `entangle(onehot(k)) == single(k)` (specs/ALGORITHMS.md §0.3), also as a
    hard (GDAS) sample where the one-hot has one chosen column per row. Running statistics (a little training, then
    eval) are the hard case for `entangle`: a zero-weight group would output BN(bias) if it were not dropped."""
    net, size = _smoke(name, bn_mode=bn_mode, mode=mode)
    space = net.space
    if bn_mode == "running":
        _warm_up(net, size, _archs(space, 3, seed=4))
    net.eval()
    x = torch.randn(4, 3, size, size)
    for arch in _archs(space, 4, seed=5):
        weights, hard = space.onehot(arch)
        weights = torch.as_tensor(weights, dtype=torch.float32)
        with torch.no_grad():
            single = net(x, arch)
            torch.testing.assert_close(net(x, ArchWeights(weights)), single, rtol=0, atol=1e-5)
            if hard is not None and "hard" in supernets.entry(name).capabilities.paths:
                torch.testing.assert_close(net(x, ArchWeights(weights, hard=hard)), single, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", SUPERNETS)
def test_a_search_interrupted_after_one_epoch_resumes_bit_exact(name, interrupted_and_resumed):
    smoke = [f"--set=supernet.{k}={v}" for k, v in supernets.entry(name).smoke.items()]
    a, b = interrupted_and_resumed([
        "search", "--space", name, "--strategy", "uniform", "--dataset", "synthetic", "--epochs", "2", *smoke,
        "--set", "train.batch_size=128", "--set", "search.method=none", "--set", "eval.monitor_archs=0",
        "--set", "eval.sample_check=0", "--set", "eval.calib_batches=1", "--quiet"])
    assert a["epoch"] == b["epoch"] == 2 and a["strategy"] == b["strategy"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize("name", SUPERNETS)
def test_build_options_are_the_builders_arguments_and_every_run_records_them(name):
    """The builder's signature is the one place a default is written: the registry reads it, a resolved config
    records every option, and no space preset repeats a default."""
    import inspect

    from nas import config as cfg

    registered = supernets.entry(name)
    signature = inspect.signature(registered.builder.__init__).parameters
    assert registered.defaults() == {k: signature[k].default for k in registered.options}
    assert set(registered.smoke) <= set(registered.options)
    config = cfg.resolve(flags={"space.name": name})
    assert set(registered.options) <= set(config["supernet"])
    for path in [ROOT / "configs" / "spaces" / f"{name}.yaml", *(ROOT / "configs" / "spaces" / name).glob("*.yaml")]:
        if path.is_file():
            preset = yaml.safe_load(path.read_text()).get("supernet", {})
            assert set(preset) <= set(registered.accepted()), path
            repeated = {k: v for k, v in preset.items() if k in registered.options and registered.defaults()[k] == v}
            assert not repeated, f"{path.name} repeats the defaults {repeated}; they live in the builder"


# --- strategies ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", strategies.names())
def test_a_strategy_builds_from_its_registration_and_its_preset_agrees(name):
    registered = strategies.entry(name)
    strategy = strategies.get(name)
    assert strategy.name == name and strategy.opts == registered.defaults() and registered.description
    assert any(supernets.entry(s).capabilities.accepts(strategy.mode()) for s in SUPERNETS)
    preset = ROOT / "configs" / "strategies" / f"{name}.yaml"
    if preset.is_file():  # the class declares the defaults; a preset holds only what it changes
        values = {k: v for k, v in yaml.safe_load(preset.read_text())["strategy"].items() if k != "name"}
        assert set(values) <= set(registered.options), preset.name
        repeated = {k: v for k, v in values.items() if registered.defaults()[k] == v}
        assert not repeated, f"{preset.name} repeats the defaults {repeated}; they live in the strategy's OPTIONS"

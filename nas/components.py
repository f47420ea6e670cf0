"""The parts a run is made of, built from its config: space, data, supernet, strategy, evaluator, cost task.

`nas search` builds all of them (`build_components`); commands that only score archs with a trained supernet
(`nas rank`) build the model and data alone (`build_model`), so no strategy is set up for them (ShiftNAS's setup
alone draws a 20,000-arch pool and trains its generator's targets).
"""

from __future__ import annotations

from typing import Any

import torch

import searchspaces
import strategies
import supernets

from . import data as datasets
from .errors import UserError
from .evaluate import ArchEvaluator
from .runtime import STREAM_CALIB, derive_seed, seed_everything


def check_supernet(config: dict) -> None:
    """Refuse, in one sentence, supernet options that contradict each other or a strategy that cannot run on the
    supernet they build (relaxed archs in a build mode the space lacks), before anything is written or loaded."""
    name = config["strategy"]["name"]
    strategy = strategies.get(name, **strategy_options(config))
    try:
        supernets.check(config["space"]["name"], config["supernet"], strategy.mode(), f"strategy {name}")
    except ValueError as exc:
        raise UserError(str(exc)) from None


def strategy_options(config: dict) -> dict[str, Any]:
    """The strategy's own options of a config (its section without `name`)."""
    return {k: v for k, v in config["strategy"].items() if k != "name"}


def build_model(config: dict, device: torch.device):
    """Space, data bundle and supernet of a config, seeded (the run's global seeds and thread count)."""
    seed_everything(config["seed"], config["train"]["deterministic"])
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    dc = config["data"]
    bundle = datasets.load(
        dc["name"], data_dir=dc["data_dir"], download=dc["download"], valid_fraction=dc["valid_fraction"],
        split_seed=dc["split_seed"], device=device,
    )
    space = searchspaces.get(config["space"]["name"])
    net = supernets.build(space, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                          **config["supernet"]).to(device)
    return space, bundle, net


def build_strategy(config: dict, net: supernets.Supernet, space: searchspaces.Space, bundle) -> strategies.Strategy:
    """The run's strategy, set up on its supernet with the run's seed, data, epochs and cost task."""
    strategy = strategies.get(config["strategy"]["name"], **strategy_options(config))
    strategy.setup(net, space, config["seed"], bundle, epochs=config["train"]["epochs"],
                   cost_task=cost_task(config, bundle, space))
    return strategy


def build_components(config: dict, device: torch.device):
    """Space, data, supernet and set-up strategy of a config: everything `nas search` trains with."""
    check_supernet(config)
    space, bundle, net = build_model(config, device)
    return space, bundle, net, build_strategy(config, net, space, bundle)


def split(bundle, name: str):
    """The `train`/`valid`/`test` split of a bundle; a user error when it is empty."""
    part = {"valid": bundle.valid, "test": bundle.test, "train": bundle.train}[name]
    if part is None:
        raise UserError(f"the {name} split is empty; set data.valid_fraction > 0 or choose another split")
    return part


def build_options(config: dict) -> dict[str, Any]:
    """Every build option of the run's supernet: the config's, and the registry's defaults for the others."""
    return supernets.entry(config["space"]["name"]).resolve(config["supernet"])


def make_evaluator(config: dict, net: supernets.Supernet, bundle, split_name: str) -> ArchEvaluator:
    """Inherited-weight accuracy of archs on one split, with the run's BN handling and calibration batches."""
    ec = config["eval"]
    return ArchEvaluator(
        net, split(bundle, split_name), batch_size=ec["batch_size"],
        bn_mode=ec["bn_mode"] or build_options(config).get("bn_mode", "batch"), calib_split=bundle.train,
        calib_batches=ec["calib_batches"], calib_batch_size=ec["calib_batch_size"],
        calib_seed=derive_seed(config["seed"], STREAM_CALIB), amp=config["train"]["amp"],
    )


def cost_task(config: dict, bundle, space: searchspaces.Space | None = None) -> dict[str, Any]:
    """Arguments of the analytic cost functions: the standalone child in the benchmark configuration (affine BN).

    Spaces whose costs depend on supernet options declare them in `Space.COST_OPTIONS` (NB201: C and N, the child
    keeps the supernet's macro structure; MobileNet: width_mult and the stride schedule); the run's values (or the
    supernet's defaults) join the task, so params/FLOPs describe the network this run trains. DARTS declares none:
    its costs are of the evaluation network at its own defaults (C=36, 20 layers)."""
    task = dict(num_classes=bundle.num_classes, in_channels=bundle.in_channels, image_size=bundle.image_size)
    space = space if space is not None else searchspaces.get(config["space"]["name"])
    options = build_options(config)
    task.update({name: options[name] for name in space.COST_OPTIONS if name in options})
    return task

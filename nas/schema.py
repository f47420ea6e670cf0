"""The run sections of a config, declared once: every key's default, what it accepts and a one-line help.

`SCHEMA` (dotted key -> typed `searchspaces.options.Option`) is the one source of the defaults of `seed`, `space`,
`strategy.name`, `data`, `train`, `eval`, `rank` and `search`: config resolution starts from `defaults()`,
validation checks every key with its option, the `nas search` flags take their help from it and `nas config keys`
prints it. The `supernet` section holds the build options of the space's supernet (their defaults are the
supernet constructor's arguments, `supernets.registry`), the `strategy` section besides `name` the strategy's own
`OPTIONS`; `keys()` lists all three for one space and strategy.

Importing this module is light (no torch): names of registered things are read when a value is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from searchspaces.options import Option, choice, device, flag, integer, integers, name, number, path, text

SECTIONS: tuple[str, ...] = ("seed", "space", "supernet", "strategy", "data", "train", "split", "eval", "rank",
                             "search")
SPLITS: tuple[str, ...] = ("valid", "test", "train")


def _spaces() -> tuple[str, ...]:
    import searchspaces

    return searchspaces.names()


def _strategies() -> tuple[str, ...]:
    import strategies

    return strategies.names()


# Datasets of unlabeled text, for spaces whose supernet takes token ids (`supernets.entry(space).inputs == "text"`):
# `data.path` (a file or folder) or the embedded default; read by nas/data/text.py, not by `nas.data.load`.
TEXT_DATASETS: tuple[str, ...] = ("text",)


def _datasets() -> tuple[str, ...]:
    from . import data

    return (*data.DATASETS, *TEXT_DATASETS)


def _bn_modes() -> tuple[str, ...]:
    import supernets

    return supernets.BN_MODES


SCHEMA: dict[str, Option] = {
    "seed": integer(0, "run seed: weights, data order, sampling", 0, 2**31 - 1),
    "space.name": name("nb201", "search space (nas list)", "search space", _spaces),
    "strategy.name": name("uniform", "sampling strategy (nas list); its own options are strategy.<option>",
                          "strategy", _strategies),
    "data.name": name("digits", "dataset (nas list)", "dataset", _datasets),
    "data.data_dir": path(None, "where cifar/imagenet16 files are (or are downloaded to)"),
    "data.path": path(None, "data.name=text: a UTF-8 text file or a folder of them (--data); null = the embedded "
                            "English text (Python's language reference, pydoc_data)"),
    "data.download": flag(False, "fetch cifar10/cifar100 with checksum verification"),
    "data.valid_fraction": number(0.2, "share of the training pool held out for search/evaluation", 0.0, 1.0,
                                  hi_open=True),
    "data.split_seed": integer(0, "seed of the train/valid split", 0),
    "train.epochs": integer(50, "training epochs", 1),
    "train.batch_size": integer(64, "training batch size", 2),
    "train.lr": number(0.05, "initial learning rate of the weights (SGD)", 0.0),
    "train.lr_min": number(0.0, "cosine schedule from lr to lr_min", 0.0),
    "train.lr_step": choice("epoch", "epoch (reference: one scheduler step per epoch) | step", ("epoch", "step")),
    "train.warmup_epochs": integer(0, "epochs of linear learning-rate warm-up before the cosine schedule", 0),
    "train.momentum": number(0.9, "SGD momentum", 0.0, 1.0, hi_open=True),
    "train.nesterov": flag(False, "Nesterov momentum"),
    "train.weight_decay": number(2.5e-4, "SGD weight decay", 0.0),
    "train.grad_clip": number(5.0, "global gradient-norm clip; 0 disables", 0.0),
    "train.drop_last": flag(True, "drop the last incomplete batch (a batch of one sample cannot be batch-normalised)"),
    "train.amp": flag(False, "mixed precision: float16 + loss scaling on CUDA, bfloat16 on CPU"),
    "train.device": device("auto", "torch device"),
    "train.deterministic": flag(True, "deterministic torch kernels (reproducible, sometimes slower)"),
    "train.log_every": integer(20, "steps between progress updates (one host sync each)", 1),
    "train.keep_every": integer(0, "besides checkpoints/last.pt, keep epoch_NNN.pt every this many epochs (0 = never)",
                                0),
    "train.threads": integer(0, "torch CPU threads; 0 = torch default", 0),
    "split.method": choice("none", "few-shot splitting of the supernet: gm (GM-NAS gradient matching), random (a "
                                   "random unit and partition of the same shape, the control) or none (one-shot)",
                           ("none", "gm", "random")),
    "split.epochs": integers([], "epochs after which every current sub-supernet is split in two (GM-NAS 20,40)"),
    "split.repeats": integer(100, "gradient-matching batches per score (GM-NAS R)", 1),
    "split.distance": choice("cos", "gradient distance of the score", ("cos", "per-filter-cos", "mse")),
    "split.hard": flag(True, "force the scored candidate with weight 1 (false: keep its relaxed weight, the "
                             "DARTS-space reference)"),
    "split.include_stem_head": flag(False, "count stem, reduction blocks and head in the gradients (the reference "
                                           "leaves them out)"),
    "split.edge_select": choice("max_cut", "which unit is split: the largest cut (NB201 reference) or the least "
                                           "within-group distance (DARTS reference)", ("max_cut", "min_within")),
    "split.group_sizes": choice("balanced", "partition sizes: balanced halves (NB201 2 vs 3) or any with at least "
                                            "split.min_group", ("balanced", "any")),
    "split.min_group": integer(1, "group_sizes=any: the smallest group (DARTS reference: 2)", 1),
    "eval.batch_size": integer(512, "evaluation batch size", 2),
    "eval.bn_mode": choice(None, "BN mode of evaluation; null = supernet.bn_mode", _bn_modes, nullable=True),
    "eval.calib_batches": integer(10, "recalibrate mode: training batches used to re-estimate BN statistics", 1),
    "eval.calib_batch_size": integer(200, "recalibrate mode: the size of those batches", 2),
    "eval.monitor_archs": integer(4, "fixed archs scored on the valid split each epoch (0 = off)", 0),
    "eval.sample_check": integer(100, "after training: valid accuracy of this many uniform archs (median in "
                                      "summary.json; skipped without a validation split)", 0),
    "rank.every": integer(0, "Kendall tau against rank.benchmark in metrics.csv every this many epochs (0 = off)", 0),
    "rank.benchmark": path(None, "a registered benchmark (nas list) or a directory written by nas bench build"),
    "rank.dataset": path(None, "the benchmark dataset; null = data.name"),
    "rank.metric": text("test_acc", "the benchmark metric the scores are ranked against"),
    "rank.archs": integer(50, "archs of the fixed, seeded sample that is ranked", 2),
    "rank.split": choice("test", "which split of data.name scores the archs (the ranking-test protocol uses test)",
                         SPLITS),
    "rank.dedup": flag(False, "sample one arch per class of identical networks (nb201: isomorphic cells, dead edges)"),
    "search.method": choice("evolution", "post-training search with inherited weights", ("evolution", "random",
                                                                                          "none")),
    "search.budget": integer(100, "distinct archs evaluated", 1),
    "search.population": integer(20, "evolution: population size", 1),
    "search.sample_size": integer(5, "evolution: tournament size", 1),
    "search.split": choice("valid", "which data scores candidates", SPLITS),
    "search.valid_only": flag(False, "skip archs whose output node is unreachable"),
    "search.max_params": integer(None, "limit on the analytic parameter count of the standalone child", 1,
                                 nullable=True),
    "search.max_flops": integer(None, "limit on the analytic FLOPs per image (the space's count, nas arch info)", 1,
                                nullable=True),
    "search.max_latency": number(None, "limit in milliseconds, by search.latency", 0.0, lo_open=True, nullable=True),
    "search.latency": path(None, "a per-block lookup table (benchmarks/latency_table.py), a table of measured archs "
                                 "(.json/.csv: arch -> ms) or module:function, a predictor arch -> ms"),
}


def defaults() -> dict[str, Any]:
    """The nested config of the schema's defaults, every section present (`supernet` empty: its space's builder
    fills it in, `nas.config.complete`): where config resolution starts."""
    out: dict[str, Any] = {section: SCHEMA[section].default if section in SCHEMA else {} for section in SECTIONS}
    for key, option in SCHEMA.items():
        section, _, rest = key.partition(".")
        if rest:
            out[section][rest] = option.default
    return out


@dataclass(frozen=True)
class Key:
    """One documented config key: its dotted name and its typed option."""

    key: str
    option: Option


def keys(space: str | None = None, strategy: str | None = None) -> list[Key]:
    """Every key a run with `space` and `strategy` (default: the schema's) accepts, in config order: the run
    sections, the supernet's build options and the strategy's options (`nas config keys`). ValueError (one sentence)
    for an unknown space or strategy."""
    import strategies as strategy_registry
    import supernets

    space = space or SCHEMA["space.name"].default
    strategy = strategy or SCHEMA["strategy.name"].default
    build: Mapping[str, Option] = supernets.entry(space).options
    own: Mapping[str, Option] = strategy_registry.entry(strategy).options
    out: list[Key] = []
    for section in SECTIONS:
        out += [Key(k, o) for k, o in SCHEMA.items() if k == section or k.startswith(section + ".")]
        if section == "supernet":
            out += [Key(f"supernet.{k}", o) for k, o in build.items()]
        elif section == "strategy":
            out += [Key(f"strategy.{k}", o) for k, o in own.items()]
    return out

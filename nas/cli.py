"""The `nas` command: `nas search`, `nas train`, `nas rank`, `nas tune`, `nas study`, `nas bench build`, `nas list`,
`nas analyze controller`, `nas arch info`, `nas config keys`.

User errors (bad flags, config values, arch strings, files) print one line `nas: error: ...` and exit 2;
an interrupted search tells how to resume and exits 130.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (plus the usual usage line) with exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="nas", description="Weight-sharing neural architecture search.")
    parser.add_argument("--version", action="version", version=f"supernas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    search = sub.add_parser("search", help="train a supernet with a sampler and search an arch",
                            description="Train a supernet with a sampling strategy, then pick an arch with "
                                        "inherited weights. Layers, later wins: the declared defaults, the presets "
                                        "of the space, strategy and dataset (configs/), --config files, the flags "
                                        "below, --set. Every key can be set with --set; nas config keys lists them "
                                        "with what they accept.")
    for flag, key, extra in _SEARCH_FLAGS:
        _config_flag(search, flag, key, **extra)
    search.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML config file or experiment preset name (repeatable, later wins)")
    search.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one config key, e.g. --set train.lr=0.05 (repeatable)")
    search.add_argument("--out", help="run directory (default: a new folder under runs/)")
    search.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run with its saved config")
    search.add_argument("--quiet", action="store_true", help="no console output (the log file still gets it)")

    final = sub.add_parser("train", help="train a final architecture from scratch with its space's recipe",
                           description="Train an arch from scratch with the evaluation recipe of its space "
                                       "(DARTS: C=36, 20 layers, auxiliary 0.4, drop-path 0.2, cutout 16, 600 epochs; "
                                       "NB201: C=16, N=5, 200 epochs). Override any value with --set KEY=VALUE.")
    final.add_argument("--space", help="search space (read from arch.json when --arch is a run directory)")
    final.add_argument("--arch", metavar="ARCH|RUN_DIR", help="arch string, arch.json, or a search run directory")
    final.add_argument("--dataset", help="dataset (default cifar10)")
    final.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    final.add_argument("--seed", type=int, help="seed")
    final.add_argument("--data-dir", help="folder holding dataset files")
    final.add_argument("--download", action="store_true", default=None, help="download cifar10/cifar100")
    final.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    final.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="recipe value, e.g. --set C=16 --set layers=8 --set cutout=0")
    final.add_argument("--out", help="run directory (default: a new folder under runs/)")
    final.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted training run")
    final.add_argument("--quiet", action="store_true", help="no console output")

    rank = sub.add_parser("rank", help="ranking consistency of a trained supernet against a benchmark",
                          description="Score benchmark archs with a run's inherited weights and compare with the "
                                      "benchmark's truth: Kendall tau, Spearman, precision@k, regret, with "
                                      "bootstrap intervals. Writes ranking.csv, ranking.json and a scatter plot.")
    rank.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by nas search")
    rank.add_argument("--benchmark", required=True, metavar="NAME|DIR",
                      help="a registered benchmark (nas list) or a directory from nas bench build")
    rank.add_argument("--dataset", help="benchmark dataset whose truth to use (default: the run's dataset)")
    rank.add_argument("--metric", default="test_acc", help="benchmark metric (default test_acc)")
    rank.add_argument("--archs", default="500", metavar="N|all", help="archs to evaluate (default 500)")
    rank.add_argument("--bn-mode", help="batch, running or recalibrate (default: the run's eval.bn_mode)")
    rank.add_argument("--split", default="test", help="split of the run's data that scores archs (default test)")
    rank.add_argument("--eval-batch-size", type=int, help="evaluation batch size (default: the run's)")
    rank.add_argument("--dedup", action="store_true",
                      help="score one arch per class of identical networks (nb201: isomorphic cells, dead edges)")
    rank.add_argument("--seed", type=int, default=0, help="seed of the arch sample and the bootstrap")
    rank.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples (default 1000)")
    rank.add_argument("--out", help="where to write the files (default: RUN_DIR)")
    rank.add_argument("--quiet", action="store_true", help="no console output")

    tune = sub.add_parser("tune", help="run a sweep of searches as Ray Tune trials (local, or on a cluster)",
                          description="Run the trials of a sweep file (a base experiment x a grid or random space over "
                                      "config keys) as Ray Tune trials: resources per trial, per-epoch checkpoints, "
                                      "retries from the last checkpoint, resumable. Writes results.csv, results.png "
                                      "and best.json. Shipped sweeps: configs/tune/ (nas list). Needs the tune "
                                      "extra: pip install 'supernas[tune]'.")
    tune.add_argument("sweep", metavar="SWEEP", help="sweep file, or the name of a shipped sweep (nas list)")
    tune.add_argument("--address", metavar="ADDR",
                      help="join a running Ray cluster: auto or HOST:PORT (default: start a local Ray on this machine)")
    tune.add_argument("--resume", action="store_true",
                      help="continue an interrupted sweep from its storage path: only unfinished trials run")
    tune.add_argument("--quiet", action="store_true", help="no console output")

    study = sub.add_parser("study", help="a ranking study: arms x seeds on a benchmark, with intervals",
                           description="Run every (arm, seed) of a study spec (configs/studies/) as a nas search plus "
                                       "a nas rank, then write results/<name>/study.json: per-arm means with 95% "
                                       "t-intervals, paired differences against the baseline arm, and the "
                                       "benchmark's noise ceiling. A rerun skips finished runs and resumes the "
                                       "others. python -m nas.report puts the tables into the README.")
    study.add_argument("spec", metavar="SPEC", help="study file, or the name of a shipped study (nas list)")
    study.add_argument("--workers", type=int, default=1, help="parallel runs, one CPU thread each (default 1)")
    study.add_argument("--quiet", action="store_true", help="no console output")

    bench = sub.add_parser("bench", help="build ground-truth benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="ACTION", parser_class=_Parser)
    build = bench_sub.add_parser("build", help="train sampled archs stand-alone into a benchmark table",
                                 description="Train N sampled archs from scratch (fixed seed and schedule) and "
                                             "write a benchmark that nas rank --benchmark DIR reads. Rerun the "
                                             "same command to resume: finished archs are not retrained.")
    build.add_argument("--space", default="nb201",
                       help="a space whose archs train stand-alone (nas list marks them; default nb201)")
    build.add_argument("--dataset", default="digits", help="dataset (default digits)")
    build.add_argument("--archs", default="100", metavar="N|all", help="archs to train (default 100)")
    build.add_argument("--epochs", type=int, default=20, help="training epochs per arch (default 20)")
    build.add_argument("--out", required=True, help="benchmark directory")
    build.add_argument("--seed", type=int, default=0, help="seed of the arch sample (its order) and, without --seeds, "
                                                           "of every training run")
    build.add_argument("--unique", action="store_true",
                       help="train one arch per class of identical networks (NB201: isomorphic cells, dead edges; "
                            "--archs then counts classes) and give every member of a class its accuracies")
    build.add_argument("--seeds", metavar="S0,S1,...",
                       help="training seeds (default: --seed); the first --multi-seed-archs archs get all of them")
    build.add_argument("--multi-seed-archs", type=int, metavar="K",
                       help="with --seeds: train only the first K planned archs with every seed, the rest with "
                            "the first (default: all), e.g. for a noise ceiling")
    build.add_argument("--data-dir", help="folder holding dataset files")
    build.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    build.add_argument("--workers", type=int, help="parallel training processes (default 1; with --tune: the most "
                                                  "concurrent trials, default as many as the resources allow)")
    build.add_argument("--tune", action="store_true",
                       help="train each arch as a Ray Tune trial (local Ray, or a cluster with --address)")
    build.add_argument("--address", metavar="ADDR", help="with --tune: join the Ray cluster at auto or HOST:PORT")
    build.add_argument("--trial-cpus", type=float, default=1.0, metavar="N",
                       help="with --tune: CPUs per arch (default 1)")
    build.add_argument("--trial-gpus", type=float, default=0.0, metavar="G",
                       help="with --tune: GPUs per arch, a fraction shares one (default 0)")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="training setting, e.g. --set lr=0.05 --set C=8 (see nas.standalone.StandaloneSettings)")
    build.add_argument("--quiet", action="store_true", help="no console output")

    pack = bench_sub.add_parser("pack", help="write a finished build's table compressed, ready to ship",
                                description="Write the table of a finished nas bench build as table.csv.gz + "
                                            "meta.json in another folder (how nasbench/tables/nb201-digits is made).")
    pack.add_argument("build_dir", metavar="BUILD_DIR", help="a directory written by nas bench build")
    pack.add_argument("--out", required=True, help="folder to write (e.g. nasbench/tables/nb201-digits)")
    pack.add_argument("--name", help="benchmark name (default: the folder name of --out)")

    teacher = sub.add_parser("teacher", help="train a small BERT teacher on your text (for --strategy autodistil)")
    teacher_sub = teacher.add_subparsers(dest="teacher_command", metavar="ACTION", parser_class=_Parser)
    tt = teacher_sub.add_parser("train", help="masked-LM training of a BERT on a text file into a checkpoint folder",
                                description="Learn a WordPiece vocabulary from the text, train a BERT of the given "
                                            "shape by masked-language modelling (BERT's 15%-of-tokens rule) and "
                                            "write a Hugging Face BERT checkpoint directory (config.json, "
                                            "model.safetensors, "
                                            "vocab.txt) that nas search --strategy autodistil --teacher DIR reads.")
    tt.add_argument("--data", metavar="FILE|DIR", help="UTF-8 text (default: the embedded English text)")
    tt.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory to write (must not exist)")
    for flag, default, what in (("--layers", 12, "layers"), ("--hidden", 96, "hidden size"),
                                ("--heads", 12, "attention heads"), ("--head-size", 8, "head size"),
                                ("--ffn", 384, "FFN width"), ("--steps", 400, "training steps"),
                                ("--vocab-size", 4000, "WordPiece vocabulary size"),
                                ("--seq-len", 64, "tokens per sequence"), ("--batch-size", 32, "batch size"),
                                ("--seed", 0, "seed")):
        tt.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    tt.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (default 5e-4)")
    tt.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    tt.add_argument("--quiet", action="store_true", help="no console output")

    sub.add_parser("list", help="list spaces, strategies, datasets, searchers and config presets")

    config = sub.add_parser("config", help="document the config keys")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    keys = config_sub.add_parser("keys", help="every key of a space and strategy: accepted values, default, help",
                                 description="List every key nas search accepts for a space, strategy and dataset "
                                             "(the run sections, the supernet's build options, the strategy's "
                                             "options): what it accepts, its declared default, what it does, and the "
                                             "value the presets give it where they change the default.")
    keys.add_argument("--space", help="search space whose supernet options to list (default: the config default)")
    keys.add_argument("--strategy", help="strategy whose options to list (default: the config default)")
    keys.add_argument("--dataset", help="dataset whose presets apply (default: the config default)")
    keys.add_argument("--json", action="store_true", help="print JSON")

    analyze = sub.add_parser("analyze", help="analyses of trained runs")
    analyze_sub = analyze.add_subparsers(dest="analyze_command", metavar="ANALYSIS", parser_class=_Parser)
    ctl = analyze_sub.add_parser(
        "controller", help="ENAS: does the controller's hidden state remember the arch it drew?",
        description="The hidden-state analysis of Adam & Lorraine: sample archs from each run's trained ENAS "
                    "controller and from its untrained initialisation, and correlate the distances of their hidden "
                    "states with common ops, common connections, graph edit distance and the difference of benchmark "
                    "accuracy over every pair. Writes analysis/controller.json and .png in each run.")
    ctl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories of nas search --strategy enas")
    ctl.add_argument("--samples", type=int, default=100, help="archs drawn per controller (default 100)")
    ctl.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    ctl.add_argument("--benchmark", metavar="NAME|DIR|none",
                     help="benchmark for the accuracy differences (default: one of the space with the run's dataset)")
    ctl.add_argument("--dataset", help="benchmark dataset (default: the run's dataset)")
    ctl.add_argument("--metric", default="test_acc", help="benchmark metric (default test_acc)")
    ctl.add_argument("--ged-timeout", type=float, default=1.0, metavar="S",
                     help="seconds per pair for the graph edit distance search; longer: best found (default 1)")
    ctl.add_argument("--out", help="also write the combined table of all runs to this JSON file")
    ctl.add_argument("--quiet", action="store_true", help="no console output")

    st = analyze_sub.add_parser(
        "students", help="AutoDistil: do inherited-weight losses rank students as stand-alone training does?",
        description="Draw students from a finished autodistil run's sub-spaces, score each by its held-out "
                    "distillation loss with the weights inherited from its SuperLM, train each stand-alone from the "
                    "teacher's slice for a SuperLM's number of steps and score it again; writes the Kendall tau and "
                    "Spearman (bootstrap intervals; overall and within each sub-space) to analysis/students.json "
                    "with a scatter plot.")
    st.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of nas search --strategy autodistil")
    st.add_argument("--students", type=int, default=20, help="students drawn (default 20)")
    st.add_argument("--seed", type=int, default=0, help="seed of the draw and the bootstrap (default 0)")
    st.add_argument("--out", help="folder for students.json/.png (default RUN_DIR/analysis)")
    st.add_argument("--quiet", action="store_true", help="no console output")

    arch = sub.add_parser("arch", help="inspect architectures")
    arch_sub = arch.add_subparsers(dest="arch_command", metavar="ACTION", parser_class=_Parser)
    info = arch_sub.add_parser("info", help="params, FLOPs and canonical form of an arch")
    info.add_argument("--space", required=True, help="search space (nas list)")
    info.add_argument("--arch", required=True, help="arch string, e.g. '|nor_conv_3x3~0|+|...|'")
    info.add_argument("--dataset", default="cifar10", help="task the counts are for (default cifar10)")
    info.add_argument("--C", type=int, help="initial channels (default: the space's final network, 16 / 36)")
    info.add_argument("--N", type=int, help="nb201: cells per stage (default 5)")
    info.add_argument("--layers", type=int, help="darts: cells of the evaluation network (default 20)")
    info.add_argument("--width-mult", type=float, help="mobilenet: width multiplier (default 1.0)")
    info.add_argument("--schedule", help="mobilenet: stride schedule cifar or imagenet (default: by image size)")
    info.add_argument("--seq-len", type=int, default=128, help="transformer: tokens per sequence of the FLOPs count "
                                                               "(default 128)")
    info.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _config_flag(parser: argparse.ArgumentParser, flag: str, key: str, note: str = "", **kwargs) -> None:
    """A `nas search` flag that sets the config key `key`: its help, default and accepted values come from the key's
    typed option (nas.schema); `note` says how the flag spells a value, where it differs from the config's."""
    from searchspaces.options import yaml_text

    from .schema import SCHEMA

    option = SCHEMA[key] if key in SCHEMA else _strategy_option(key)
    accepted = option.accepted(null=False) if not callable(option.choices) else None  # registry names: nas list
    if option.kind == "bool":
        kwargs.setdefault("action", "store_true")
        kwargs.setdefault("default", None)
    elif option.kind in ("int", "float"):
        kwargs.setdefault("type", int if option.kind == "int" else float)
    parts = [option.help] + ([f"accepted: {accepted}"] if accepted and option.kind != "bool" else [])
    parts += [note] if note else []
    help_text = "; ".join(parts) + f" ({key}, default {yaml_text(option.default)})"
    parser.add_argument(flag, dest=_flag_dest(flag), help=help_text.replace("%", "%%"), **kwargs)


def _strategy_option(key: str):
    """The typed option of a strategy's key `strategy.<name>` that a search flag sets (`--teacher`)."""
    import strategies

    name = key.partition(".")[2]
    return next(entry.options[name] for entry in strategies.entries() if name in entry.options)


_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _milliseconds(text: str) -> float:
    """A latency limit in milliseconds: a positive number (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a latency; accepted: milliseconds > 0, e.g. 12.5")
    return value


def _cost_limit(text: str) -> int:
    """A params/FLOPs limit: a positive whole number, plain (`300000`, `5e6`) or with a suffix K, M, G or T
    (`300M`, `1.5G`); an argparse type, so a bad value is refused in one line."""
    from decimal import Decimal, InvalidOperation

    raw = text.strip().replace("_", "")
    suffix = raw[-1:].upper() if raw[-1:].isalpha() and raw[-1:].upper() in _SUFFIXES else ""
    try:
        value = Decimal(raw[:len(raw) - len(suffix)]) * _SUFFIXES[suffix]
    except (InvalidOperation, ValueError):
        value = None
    if value is None or not value.is_finite() or value < 1 or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a count; accepted: a whole number >= 1, plain or with a suffix K, M, G or T, "
            "e.g. 300M, 1.5G or 5e6")
    return int(value)


def _epoch_list(text: str) -> list[int]:
    """Split epochs `20,40`: increasing positive integers, comma-separated (an argparse type)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values) or any(a >= b for a, b in zip(values, values[1:])):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of split epochs; accepted: increasing positive "
                                         "integers separated by commas, e.g. 20,40")
    return values


# The `nas search` flags that set one config key each: (flag, key, argparse keywords; `note` adds to the schema's
# help). Their help, default and accepted values come from the key's declaration (`_config_flag`).
_SEARCH_FLAGS: tuple[tuple[str, str, dict], ...] = (
    ("--space", "space.name", {}),
    ("--strategy", "strategy.name", {}),
    ("--dataset", "data.name", {}),
    ("--epochs", "train.epochs", {}),
    ("--seed", "seed", {}),
    ("--data-dir", "data.data_dir", {}),
    ("--download", "data.download", {}),
    ("--device", "train.device", {}),
    ("--rank-every", "rank.every", {"metavar": "E"}),
    ("--rank-benchmark", "rank.benchmark", {"metavar": "NAME|DIR"}),
    ("--max-flops", "search.max_flops", {"type": _cost_limit, "metavar": "N",
                                         "note": "in the post-training search; nb201: the benchmark's convention, "
                                                 "published MFLOPs x 1e6; e.g. 300M, 1.5G, 5e6"}),
    ("--max-params", "search.max_params", {"type": _cost_limit, "metavar": "N",
                                           "note": "in the post-training search; e.g. 2.5M"}),
    ("--max-latency", "search.max_latency", {"type": _milliseconds, "metavar": "MS"}),
    ("--split", "split.method", {}),
    ("--split-epochs", "split.epochs", {"type": _epoch_list, "metavar": "E1,E2"}),
    ("--latency", "search.latency", {"metavar": "TABLE|MODULE:FN"}),
    ("--data", "data.path", {"metavar": "FILE|DIR"}),
    ("--teacher", "strategy.teacher", {"metavar": "DIR"}),
)


def _flag_dest(flag: str) -> str:
    """The argparse destination of a flag: `--data-dir` -> `data_dir`."""
    return flag.lstrip("-").replace("-", "_")


_TASKS = {  # classes, input channels, image size of the benchmark tasks
    "cifar10": (10, 3, 32), "cifar100": (100, 3, 32), "imagenet16-120": (120, 3, 16), "digits": (10, 1, 8),
}


def _cmd_search(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import strategies

    from . import components, pipeline, rundir
    from . import config as cfg

    if args.resume:
        given = [flag for flag in [f for f, _, _ in _SEARCH_FLAGS] + ["--out"]
                 if getattr(args, _flag_dest(flag)) is not None] + (["--config"] if args.config else []) + (
                     ["--set"] if args.overrides else [])
        if given:
            raise UserError(
                f"--resume continues {args.resume} with its saved config.yaml; drop {', '.join(given)}"
            )
        run_path = Path(args.resume)
        config = rundir.load_config(run_path)
        summary_path = run_path / "summary.json"
        if summary_path.is_file() and json.loads(summary_path.read_text()).get("status") == "complete":
            print(f"{run_path} is already complete; nothing to resume", file=sys.stderr)
            return 0
        resume = True
    else:
        flags = {key: getattr(args, _flag_dest(flag)) for flag, key, _ in _SEARCH_FLAGS}
        config = cfg.resolve(args.config, flags, args.overrides)
        pipeline.check_latency_model(config)  # a bad table or hook stops the command before anything is written
        components.check_supernet(config)  # so do supernet options that cannot run with this strategy
        if strategies.strategy_class(config["strategy"]["name"]).inputs == "text":
            from .textsearch import check_inputs

            check_inputs(config)  # the text, the teacher and the limits of a distillation run
        run_path = rundir.create(args.out or rundir.default_run_dir(config), config)
        resume = False
    try:
        pipeline.run_search(config, run_path, argv, quiet=args.quiet, resume=resume)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: nas search --resume {run_path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _count(text: str, flag: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 2:
        raise UserError(f"{flag} takes a number of archs >= 2 or 'all', got {text!r}")
    return int(text)


def _cmd_rank(args: argparse.Namespace) -> int:
    import supernets

    from . import rank

    if args.bn_mode is not None and args.bn_mode not in supernets.BN_MODES:
        raise UserError(f"--bn-mode {args.bn_mode!r} is not valid; accepted: {', '.join(supernets.BN_MODES)}")
    if args.split not in ("valid", "test", "train"):
        raise UserError(f"--split {args.split!r} is not valid; accepted: valid, test, train")
    if args.eval_batch_size is not None and args.eval_batch_size < 2:
        raise UserError(f"--eval-batch-size must be at least 2, got {args.eval_batch_size}")
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    rank.rank_run(
        Path(args.run_dir), args.benchmark, dataset=args.dataset, archs=_count(args.archs, "--archs"),
        bn_mode=args.bn_mode, split=args.split, metric=args.metric, seed=args.seed,
        eval_batch_size=args.eval_batch_size, out=Path(args.out) if args.out else None, n_boot=args.bootstrap,
        quiet=args.quiet, dedup=args.dedup,
    )
    return 0


def _cmd_analyze_controller(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import analyze
    from .progress import Reporter

    if args.samples < 3:
        raise UserError(f"--samples must be at least 3 (pairs to correlate), got {args.samples}")
    if args.ged_timeout <= 0:
        raise UserError(f"--ged-timeout must be positive, got {args.ged_timeout}")
    for run_dir in args.run_dirs:
        if not Path(run_dir).is_dir():
            raise UserError(f"run directory {run_dir} does not exist")
    result = analyze.analyse_runs(
        [Path(r) for r in args.run_dirs], samples=args.samples, seed=args.seed, benchmark=args.benchmark,
        dataset=args.dataset, metric=args.metric, ged_timeout=args.ged_timeout,
        out=Path(args.out) if args.out else None, reporter=Reporter(quiet=args.quiet),
        command="nas " + shlex.join(argv))
    if not args.quiet:
        print(analyze.format_table(result["table"]))
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    """`--seeds 0,1`: distinct non-negative integers, in the given order."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise UserError(f"--seeds takes distinct whole numbers >= 0 separated by commas, e.g. 0,1; got {text!r}")
    return tuple(int(p) for p in parts)


def _cmd_bench_build(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import dataclasses

    import searchspaces
    import supernets

    from . import benchbuild, data
    from . import config as cfg
    from .progress import Reporter
    from .standalone import StandaloneSettings, spaces

    searchspaces.get(args.space)
    if args.space not in spaces():
        trained = [e.space for e in supernets.entries() if e.eval_network is not None and e.space not in spaces()]
        raise UserError(f"nas bench build trains archs of the spaces {', '.join(spaces())}, not {args.space!r}"
                        + (f" ({', '.join(trained)} archs train with nas train)" if args.space in trained else ""))
    if args.archs == "all" and searchspaces.get(args.space).size() > 1_000_000:
        raise UserError(f"space {args.space!r} is too large for --archs all; give a number")
    if args.dataset not in data.DATASETS:
        raise UserError(f"unknown dataset {args.dataset!r}; accepted: {', '.join(data.DATASETS)}")
    if args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {args.epochs}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if not args.tune and (args.address or args.trial_cpus != 1.0 or args.trial_gpus != 0.0):
        raise UserError("--address, --trial-cpus and --trial-gpus apply to Ray Tune trials; add --tune")
    if args.trial_cpus <= 0 or args.trial_gpus < 0:
        raise UserError(f"--trial-cpus must be > 0 and --trial-gpus >= 0, got {args.trial_cpus} and {args.trial_gpus}")
    tune = None
    if args.tune:
        from . import tune as tune_module

        tune_module.require_ray()
        tune = benchbuild.TuneOptions(address=args.address, cpus=args.trial_cpus, gpus=args.trial_gpus,
                                      max_concurrent=args.workers)
    fields = {f.name: f for f in dataclasses.fields(StandaloneSettings)}
    values = {"space": args.space, "dataset": args.dataset, "epochs": args.epochs, "seed": args.seed,
              "data_dir": args.data_dir, "device": args.device}
    settable = sorted(set(fields) - set(values))  # the rest have flags of their own
    for item in args.overrides:
        for key, value in cfg.parse_override(item).items():
            if key not in settable:
                raise UserError(f"--set {key} is not a training setting here; accepted: {', '.join(settable)}")
            default = fields[key].default
            if default is not None and not isinstance(value, type(default)) and not (
                    isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
                raise UserError(f"--set {key}={value!r} is not valid; accepted: a {type(default).__name__}")
            values[key] = value
    settings = StandaloneSettings(**values)
    if args.unique and not searchspaces.get(args.space).has_equivalences:
        raise UserError(f"--unique needs a space whose identical networks are known (nb201); {args.space!r} has "
                        "one network per arch")
    request = benchbuild.BuildRequest(archs=_count(args.archs, "--archs"), unique=args.unique,
                                      seeds=_seeds(args.seeds) if args.seeds else None,
                                      multi_seed_archs=args.multi_seed_archs, command=shlex.join(["nas", *argv]))
    if args.multi_seed_archs is not None and (args.multi_seed_archs < 2 or not args.seeds):
        raise UserError("--multi-seed-archs takes a number >= 2 and needs --seeds with at least two seeds")
    out = Path(args.out)
    reporter = Reporter(None, quiet=args.quiet)
    try:
        benchbuild.build(out, settings, request, workers=args.workers or 1, reporter=reporter, tune=tune)
        reporter.info(f"benchmark written to {out}; next: nas rank RUN_DIR --benchmark {out}")
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished archs are kept: rerun the same command to resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        reporter.close()
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from . import sweep as sweeps
    from . import tune

    tune.require_ray()
    sweep = sweeps.load_sweep(args.sweep)
    try:
        outcome = tune.run_sweep(sweep, address=args.address, resume=args.resume, quiet=args.quiet)
    except KeyboardInterrupt:
        outcome = None
    if outcome is None or outcome.interrupted:
        print(f"\ninterrupted; continue with: nas tune {args.sweep} --resume"
              + (f" --address {args.address}" if args.address else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.errored:
        print(f"nas: {outcome.errored} trial(s) failed (error column of {outcome.results_dir / tune.RESULTS_CSV}); "
              f"retry them with: nas tune {args.sweep} --resume", file=sys.stderr)
        return 1
    return 0


def _cmd_study(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import study as studies
    from .progress import Reporter

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    spec = studies.load_study(args.spec)
    reporter = Reporter(None, quiet=args.quiet)
    try:
        path = studies.run_study(spec, argv, workers=args.workers, reporter=reporter)
        reporter.info(f"wrote {path}; python -m nas.report regenerates the README tables from results/")
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished runs are kept: rerun nas study {args.spec} to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        reporter.close()
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from . import config as cfg
    from . import data, final, rundir

    if args.resume:
        given = [f"--{n.replace('_', '-')}" for n in ("space", "arch", "dataset", "epochs", "seed", "data_dir",
                                                       "download", "device", "out") if getattr(args, n) is not None]
        if given or args.overrides:
            raise UserError(f"--resume continues {args.resume} with its saved settings; drop "
                            f"{', '.join(given + (['--set'] if args.overrides else []))}")
        run_path = Path(args.resume)
        settings = final.load_settings(run_path)
        summary = run_path / "summary.json"
        if summary.is_file() and json.loads(summary.read_text()).get("status") == "complete":
            print(f"{run_path} is already complete; nothing to resume", file=sys.stderr)
            return 0
    else:
        if args.arch is None:
            raise UserError("nas train needs --arch (an arch string, an arch.json or a search run directory)")
        space, arch = final.resolve_arch(args.space, args.arch)
        values = {k: v for k, v in {"dataset": args.dataset, "epochs": args.epochs, "seed": args.seed,
                                    "data_dir": args.data_dir, "download": args.download,
                                    "device": args.device}.items() if v is not None}
        fields = {f.name: f for f in dataclasses.fields(final.FinalSettings)}
        settable = sorted(set(fields) - {"space", "arch"})
        for item in args.overrides:
            for key, value in cfg.parse_override(item).items():
                if key not in settable:
                    raise UserError(f"--set {key} is not a training setting; accepted: {', '.join(settable)}")
                values[key] = value
        settings = final.FinalSettings.for_space(space, arch, **values)
        for f in dataclasses.fields(settings):
            value, default = getattr(settings, f.name), final.FinalSettings.__dataclass_fields__[f.name].default
            kind = type(default) if default is not None and default is not dataclasses.MISSING else None
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if kind is not None and not isinstance(value, kind):
                raise UserError(f"{f.name}={value!r} is not valid; accepted: a {kind.__name__}")
        if settings.dataset not in data.DATASETS:
            raise UserError(f"unknown dataset {settings.dataset!r}; accepted: {', '.join(data.DATASETS)}")
        if settings.epochs < 1 or settings.batch_size < 2 or settings.C < 1 or settings.layers < 1:
            raise UserError("epochs, C and layers must be at least 1 and batch_size at least 2")
        final.build_network(settings, num_classes=10, in_channels=3)  # options the network refuses stop here
        stamp = time.strftime("%Y%m%d-%H%M%S")
        default_out = Path("runs") / f"{stamp}-train-{space}-{settings.dataset}-s{settings.seed}"
        run_path = rundir.create(Path(args.out) if args.out else default_out, {}, text=final.settings_text(settings))
    try:
        final.train_final(settings, run_path, resume=bool(args.resume), quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: nas train --resume {run_path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    import searchspaces
    import strategies

    from . import config as cfg
    from . import data
    from .catalog import space_capabilities

    presets = cfg.presets_dir() / "experiments"
    print("spaces:")
    for entry in searchspaces.entries():
        print(f"  {entry.name:16s} {entry.description}")
        print(f"  {'':16s} [{'; '.join(space_capabilities(entry.name))}]")
    print("strategies:")
    for entry in strategies.entries():
        print(f"  {entry.name:16s} {entry.description}")
    print("datasets:")
    for name in data.DATASETS:
        print(f"  {name}")
    print("searchers (search.method):")
    for name in (*strategies.SEARCHERS, "none"):
        print(f"  {name}")
    import nasbench

    print("benchmarks (nas rank --benchmark NAME, or a directory from nas bench build):")
    for name in nasbench.names():
        print(f"  {name}")
    print("experiment presets (--config NAME):")
    for path in sorted(presets.glob("*.yaml")):
        print(f"  {path.stem}")
    from .sweep import shipped_sweeps

    print("sweeps (nas tune NAME):")
    for name in shipped_sweeps():
        print(f"  {name}")
    return 0


def _cmd_config_keys(args: argparse.Namespace) -> int:
    from . import configdoc
    from .schema import SCHEMA

    rows, why = configdoc.key_docs(args.space, args.strategy, args.dataset)
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return 0
    names = [given or SCHEMA[key].default for given, key in ((args.space, "space.name"),
                                                               (args.strategy, "strategy.name"),
                                                               (args.dataset, "data.name"))]
    print(configdoc.render(rows, *names, why=why))
    return 0


def _text_arch_info(args: argparse.Namespace, space) -> int:
    """`nas arch info` for a student of a text space: its dims, real-shape params and FLOPs over its teacher."""
    from searchspaces.transformer import layer_indices

    arch = space.parse(args.arch)
    teacher = space.teacher
    dims = space.dims(arch)
    info = {"space": space.name, "arch": arch.to_string(), **dims, "teacher": teacher.to_json(),
            "kept_teacher_layers": list(layer_indices(dims["layers"], teacher.layers)),
            "params": space.params(arch), "params_without_pooler": space.params(arch, pooler=False),
            "seq_len": args.seq_len, "flops": space.flops(arch, seq_len=args.seq_len)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"arch       {info['arch']}  (teacher: BERT-base, {teacher.layers} layers, hidden {teacher.hidden}, "
          f"{teacher.heads} heads of {teacher.head_size})")
    print(f"dims       {dims['layers']} layers (teacher layers {info['kept_teacher_layers']}), hidden "
          f"{dims['hidden']}, {dims['heads']} heads x {teacher.head_size} = attention width {dims['attention']}, "
          f"FFN {dims['ffn']}")
    print(f"params     {info['params']:,}  ({info['params'] / 1e6:.2f} M with the pooler; "
          f"{info['params_without_pooler']:,} without)")
    print(f"FLOPs      {info['flops']:,}  ({info['flops'] / 1e9:.3f} G multiply-adds per sequence of {args.seq_len} "
          "tokens; --max-flops uses it)")
    return 0


def _cmd_arch_info(args: argparse.Namespace) -> int:
    import searchspaces
    import supernets

    if args.space in supernets.names() and supernets.entry(args.space).inputs == "text":
        return _text_arch_info(args, searchspaces.get(args.space))
    if args.dataset not in _TASKS:
        raise UserError(f"unknown dataset {args.dataset!r} for arch info; accepted: {', '.join(_TASKS)}")
    space = searchspaces.get(args.space)
    arch = space.parse(args.arch)
    classes, channels, size = _TASKS[args.dataset]
    task = dict(num_classes=classes, in_channels=channels, image_size=size)
    task.update({k: v for k, v in (("C", args.C), ("N", args.N), ("layers", args.layers),
                                   ("width_mult", args.width_mult), ("schedule", args.schedule)) if v is not None})
    info = {
        "space": space.name,
        "arch": arch.to_string(),
        "codes": "".join(map(str, arch.codes())),
        "valid": space.is_valid(arch),
        "dataset": args.dataset,
        "params": space.params(arch, **task),
        "flops": space.flops(arch, **task),
    }
    counters = space.flops_counters or ("default",)
    for counter in space.flops_counters[1:]:  # the space's other conventions, e.g. NASLib's tensorwatch count
        info[f"flops_{counter}"] = space.flops(arch, counter=counter, **task)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"arch       {info['arch']}")
        print(f"codes      {info['codes']}  (candidate index per decision)")
        print(f"valid      {'yes' if info['valid'] else 'no: the space marks it invalid (the output is unreachable)'}")
        print(f"params     {info['params']:,}  ({info['params'] / 1e6:.6f} M, {args.dataset}, affine BN)")
        print(f"FLOPs      {info['flops']:,}  ({info['flops'] / 1e6:.6f} M per image, counter {counters[0]}: "
              f"{_COUNTER_NOTES.get(counters[0], 'the space' + chr(39) + 's own count')}; --max-flops uses it)")
        for counter in space.flops_counters[1:]:
            value = info[f"flops_{counter}"]
            print(f"FLOPs ({counter}) {value:,}  ({value / 1e6:.6f} M, "
                  f"{_COUNTER_NOTES.get(counter, 'another convention of the space')})")
    return 0


# What the FLOPs counter names that spaces declare (`Space.flops_counters`) count.
_COUNTER_NOTES = {
    "benchmark": "the benchmark's own convention, conv and linear layers",
    "macs": "supernas's count: conv and linear layers plus pooling windows",
    "tensorwatch": "tensorwatch's count as NASLib / NAS-Bench-Suite-Zero publish it: BN, ReLU and pooling included",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nas` console script; returns the exit status."""
    import searchspaces

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "search":
            return _cmd_search(args, argv)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "rank":
            return _cmd_rank(args)
        if args.command == "tune":
            return _cmd_tune(args)
        if args.command == "study":
            return _cmd_study(args, argv)
        if args.command == "bench" and args.bench_command == "build":
            return _cmd_bench_build(args, argv)
        if args.command == "bench" and args.bench_command == "pack":
            from . import benchbuild

            path = benchbuild.pack(Path(args.build_dir), Path(args.out), args.name)
            print(f"wrote {path}")
            return 0
        if args.command == "teacher" and args.teacher_command == "train":
            from .teacher import train_teacher_dir

            train_teacher_dir(args)
            return 0
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "config" and args.config_command == "keys":
            return _cmd_config_keys(args)
        if args.command == "analyze" and args.analyze_command == "controller":
            return _cmd_analyze_controller(args, argv)
        if args.command == "analyze" and args.analyze_command == "students":
            from .studentrank import rank_students

            rank_students(Path(args.run_dir), args.students, args.seed, args.quiet,
                          Path(args.out) if args.out else None)
            return 0
        if args.command == "arch" and args.arch_command == "info":
            return _cmd_arch_info(args)
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    except (UserError, searchspaces.SpaceError) as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED

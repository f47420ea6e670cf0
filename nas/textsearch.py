"""`nas search` on a space whose supernet takes text (AutoDistil, specs/ALGORITHMS.md §6): teacher -> K SuperLMs ->
task-agnostic search -> exported student.

1. **Teacher.** `strategy.teacher DIR` (a local Hugging Face BERT checkpoint: its config, weights and vocab.txt) or,
   without one, a small BERT trained here by masked-LM on the run's text with a WordPiece vocabulary learnt from it
   (`nas/teacher.py`), written to `teacher/` as a checkpoint directory of its own.
2. **Data.** `data.path` (a file or folder of UTF-8 text) or the embedded default, tokenized once with the
   teacher's vocabulary into packed sequences cached in `data/`; `data.valid_fraction` of them are held out.
3. **SuperLMs.** One per sub-space (`strategy.subspaces`), every one initialised from the teacher's weights (so
   each student starts as a slice of it) and trained by `nas/distill.py`; checkpoints in `superlms/<name>/`.
4. **Search.** Each SuperLM's students are scored by their held-out distillation loss with inherited weights
   (`search.method`, `search.budget` per sub-space), under `search.max_params` / `search.max_flops`; the student
   with the lowest loss over all sub-spaces is the pick (`arch.json`, every sub-space's pick beside it).
5. **Export.** `student/model.pt` (the state dict of `supernets.bert_student.BertStudent`, with `student.json`
   describing it) and, where a Hugging Face `BertModel` can hold the student (attention width = hidden size),
   `student/hf/`, a checkpoint directory to fine-tune with the usual tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import strategies
import supernets
from searchspaces.transformer import Teacher, TransformerSpace

from . import checkpoint, plots, rundir
from .components import strategy_options
from .data.text import TextData, check_vocab, embedded_text, load_text, read_text
from .data.wordpiece import WordPieceTokenizer, build_vocab
from .distill import DistillTrainer, HeldOut
from .engine import TrainState
from .errors import UserError
from .io import atomic_write_json
from .limits import search_limits, within
from .progress import Reporter
from .runtime import STREAM_SEARCH, derive_seed, seed_everything, select_device
from .teacher import teacher_shape, train_and_export

STREAM_TEACHER = 31


def _strategy(config: dict):
    return strategies.get(config["strategy"]["name"], **strategy_options(config))


def _own_text(config: dict) -> str:
    source = config["data"]["path"]
    return embedded_text()[0] if source is None else read_text(source)


def obtain_teacher(config: dict, run_path: Path, device: torch.device, reporter: Reporter
                   ) -> tuple[supernets.ElasticBert, WordPieceTokenizer, TextData, dict[str, Any]]:
    """The teacher, its tokenizer and the run's tokenized text (see the module docstring, steps 1 and 2)."""
    from . import hfbert

    so, data = config["strategy"], config["data"]
    own_dir = run_path / "teacher"
    given = so["teacher"]
    if given is not None or (own_dir / "config.json").is_file():
        net, ckpt = hfbert.load_teacher(given or own_dir)
        tokenizer = WordPieceTokenizer.from_file(ckpt.vocab_file, lowercase=ckpt.lowercase)
        check_vocab(tokenizer, ckpt.teacher.vocab_size, str(ckpt.vocab_file))
        text = load_text(data["path"], tokenizer, so["seq_len"], data["valid_fraction"], data["split_seed"],
                         run_path / "data")
        _check_positions(so["seq_len"], ckpt.teacher)
        info = {"source": str(given) if given else "trained by this run", "dir": str(given or own_dir),
                "shape": ckpt.teacher.to_json(), "missing_pooler": ckpt.missing_pooler}
        reporter.info(f"teacher {info['dir']}: {ckpt.teacher.layers} layers, hidden {ckpt.teacher.hidden}, "
                      f"{ckpt.teacher.heads} heads of {ckpt.teacher.head_size}, vocabulary {ckpt.teacher.vocab_size:,}")
        return net.to(device), tokenizer, text, info
    tokenizer = WordPieceTokenizer(build_vocab(_own_text(config), so["vocab_size"]))
    shape = _own_shape(config, len(tokenizer))
    vocab_file = run_path / "data" / "vocab.txt"
    tokenizer.save(vocab_file)
    text = load_text(data["path"], tokenizer, so["seq_len"], data["valid_fraction"], data["split_seed"],
                     run_path / "data")
    result = train_and_export(own_dir, shape, tokenizer, text, vocab_file, so["teacher_steps"], so["teacher_lr"],
                              config["train"]["batch_size"], derive_seed(config["seed"], STREAM_TEACHER), device,
                              reporter)
    atomic_write_json(run_path / "teacher_training.json", {"rows": result.rows, "seconds": round(result.seconds, 1),
                                                           "shape": shape.to_json()})
    info = {"source": "trained by this run", "dir": str(own_dir), "shape": shape.to_json(),
            "mlm": result.rows[-1], "seconds": round(result.seconds, 1)}
    return result.net, tokenizer, text, info


def check_inputs(config: dict) -> None:
    """Everything that can be refused before a run directory exists: the text (missing, empty, binary), the
    teacher's directory or shape, the sub-spaces and the params/FLOPs limits against the teacher's students."""
    so = config["strategy"]
    probe = _strategy(config)
    if so["teacher"] is not None:
        from . import hfbert

        ckpt = hfbert.read_bert_dir(so["teacher"])
        shape = ckpt.teacher
        if config["data"]["path"] is not None:
            read_text(config["data"]["path"])
    else:
        shape = _own_shape(config, len(build_vocab(_own_text(config), so["vocab_size"])))
    _check_positions(so["seq_len"], shape)
    try:
        subspaces = probe.subspaces(TransformerSpace(teacher=shape))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_limits(config, subspaces)


def _check_positions(seq_len: int, teacher: Teacher) -> None:
    if seq_len > teacher.max_positions:
        raise UserError(f"strategy.seq_len={seq_len} exceeds the teacher's {teacher.max_positions} positions; use "
                        f"strategy.seq_len <= {teacher.max_positions}")


def _own_shape(config: dict, vocab_size: int) -> Teacher:
    """The shape of the teacher a run trains itself (`strategy.teacher_*`)."""
    so = config["strategy"]
    return teacher_shape(so["teacher_layers"], so["teacher_hidden"], so["teacher_heads"], so["teacher_head_size"],
                         so["teacher_ffn"], vocab_size, so["seq_len"], "strategy.teacher_")


def _cost_task(config: dict) -> dict[str, Any]:
    return {"seq_len": config["strategy"]["seq_len"]}


def check_limits(config: dict, subspaces: dict[str, TransformerSpace]) -> None:
    """Refuse, before any SuperLM trains, limits that no student of any sub-space meets."""
    limits, task = search_limits(config), _cost_task(config)
    if not limits or config["search"]["method"] == "none":
        return
    for sub in subspaces.values():
        allowed = within(sub, task, limits)
        if any(allowed(arch) for arch in sub.enumerate()):
            return
    smallest = {name: {kind: getattr(sub, kind)(sub.smallest(), **task) for kind in limits}
                for name, sub in subspaces.items()}
    least = {kind: min(s[kind] for s in smallest.values()) for kind in limits}
    raise UserError(" and ".join(f"search.max_{k}={v:,} (--max-{k})" for k, v in limits.items())
                    + f" excludes every student of the sub-spaces {', '.join(subspaces)}; their smallest students "
                    f"have {' and '.join(f'{least[k]:,} {k}' for k in limits)}")


def _superlm(config: dict, name: str, sub: TransformerSpace, teacher: supernets.ElasticBert, text: TextData,
             held_out: HeldOut, run_path: Path, device: torch.device, reporter: Reporter, resume: bool,
             on_epoch: Callable[[TrainState], None] | None, earlier_rows: list[dict[str, Any]]):
    """Train (or continue) the SuperLM of sub-space `name`; returns (net, strategy, state). metrics.csv is
    rewritten after every epoch (the earlier SuperLMs' rows first)."""

    def epoch_done(state: TrainState) -> None:
        rundir.write_metrics(run_path, earlier_rows + state.rows)
        if on_epoch is not None:
            on_epoch(state)

    strategy = _strategy(config)
    net = supernets.build(sub, **config["supernet"]).to(device)
    net.load_state_dict(teacher.state_dict())  # every student starts as a slice of the teacher
    strategy.setup(net, sub, config["seed"], cost_task=_cost_task(config))
    folder = run_path / "superlms" / name
    trainer = DistillTrainer(config, net, teacher, strategy, text.train, held_out, device, reporter, name,
                             checkpoint_dir=folder / "checkpoints", on_epoch=epoch_done)
    last = folder / "checkpoints" / "last.pt"
    if resume and last.is_file():
        trainer.load_checkpoint_state(checkpoint.load(last, map_location=device))
        reporter.info(f"resuming SuperLM {name} after epoch {trainer.state.epoch}/{config['train']['epochs']}")
    values = ", ".join(f"{d.label} {list(a)}" for d, a in zip(sub.decisions, sub.allowed))
    reporter.info(f"SuperLM {name}: {sub.size()} students ({values}), largest {strategy.largest.to_string()}, "
                  f"smallest {strategy.smallest.to_string()}")
    return net, strategy, trainer.fit()


def _search(config: dict, name: str, sub: TransformerSpace, net, held_out: HeldOut, reporter: Reporter
            ) -> dict[str, Any] | None:
    """The task-agnostic search in one sub-space: the lowest held-out distillation loss within the limits."""
    sc, task = config["search"], _cost_task(config)
    if sc["method"] == "none":
        return None
    limits = search_limits(config)
    allowed = within(sub, task, limits) if limits else None
    rng = np.random.default_rng(derive_seed(config["seed"], STREAM_SEARCH))
    kwargs = {"population": sc["population"], "sample_size": sc["sample_size"]} if sc["method"] == "evolution" else {}

    def on_result(n: int, arch, score: float) -> None:
        reporter.live(f"search {name} {n}/{min(sc['budget'], sub.size())}  loss {-score:.4f}  {arch.to_string()}")

    try:
        result = strategies.SEARCHERS[sc["method"]](sub, lambda arch: -held_out(net, arch), budget=sc["budget"],
                                                    rng=rng, valid_only=False, allowed=allowed, on_result=on_result,
                                                    **kwargs)
    except ValueError:
        reporter.info(f"sub-space {name}: no student within the limits")
        return None
    best = result.best
    reporter.info(f"sub-space {name}: {result.evaluations} students scored; best {best.to_string()} held-out loss "
                  f"{-result.score:.4f}")
    return {"subspace": name, "arch": best.to_string(), "heldout_loss": -result.score,
            "evaluated": result.evaluations, "params": sub.params(best), "flops": sub.flops(best, **task),
            "history": [{"arch": a.to_string(), "heldout_loss": -s} for a, s in result.history]}


def _export(run_path: Path, net, arch, teacher_info: dict[str, Any], vocab_file: Path, reporter: Reporter
            ) -> dict[str, Any]:
    """`student/model.pt` + `student.json`, and `student/hf/` where a BertModel holds the student."""
    from supernets.bert_student import hf_incompatibility, student_config

    from . import hfbert

    folder = run_path / "student"
    student = net.export(arch)
    checkpoint.save(folder / "model.pt", {k: v.detach().clone() for k, v in student.state_dict().items()})
    description = {"arch": arch.to_string(), **student_config(arch, net.teacher), "teacher": teacher_info["dir"],
                   "module": "supernets.bert_student.BertStudent"}
    why = hf_incompatibility(arch, net.teacher)
    if why is None:
        if (folder / "hf").exists():
            import shutil

            shutil.rmtree(folder / "hf")
        hfbert.export_student_dir(folder / "hf", student, arch, net.teacher, vocab_file, True)
        description["hf_dir"] = str(folder / "hf")
        reporter.info(f"student exported to {folder / 'model.pt'} and, as a Hugging Face BertModel, {folder / 'hf'}")
    else:
        description["hf_dir"] = None
        description["hf_note"] = why
        reporter.info(f"student exported to {folder / 'model.pt'}; no BertModel directory: {why}")
    atomic_write_json(folder / "student.json", description)
    return description


def run_text_search(config: dict, run_path: Path, argv: Sequence[str], quiet: bool = False, resume: bool = False,
                    on_epoch: Callable[[TrainState], None] | None = None) -> dict[str, Any]:
    """Teacher, SuperLMs, search and export (the module docstring); returns summary.json's content."""
    started = time.perf_counter()
    reporter = Reporter(run_path / "log.txt", quiet=quiet)
    try:
        device = select_device(config["train"]["device"])
        rundir.write_environment(run_path, rundir.environment(argv, str(device)))
        seed_everything(config["seed"], config["train"]["deterministic"])
        probe = _strategy(config)
        teacher, tokenizer, text, teacher_info = obtain_teacher(config, run_path, device, reporter)
        space = TransformerSpace(teacher=teacher.teacher)
        try:
            subspaces = probe.subspaces(space)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        check_limits(config, subspaces)
        reporter.info(f"data {text.source}: {text.tokens:,} tokens, {len(text.train):,} training and "
                      f"{len(text.valid):,} held-out sequences of {text.seq_len}; sub-spaces {', '.join(subspaces)}; "
                      f"device {device}; run directory {run_path}")
        scored = text.valid[:config["strategy"]["eval_sequences"]]
        held_out = HeldOut(teacher, teacher.largest(), scored, probe.distill_loss, config["eval"]["batch_size"],
                           device)
        rows: list[dict[str, Any]] = []
        picks: list[dict[str, Any]] = []
        nets = {}
        train_s = search_s = 0.0
        for name, sub in subspaces.items():
            t0 = time.perf_counter()
            net, strategy, state = _superlm(config, name, sub, teacher, text, held_out, run_path, device, reporter,
                                            resume, on_epoch, rows)
            train_s += time.perf_counter() - t0
            rows += state.rows
            rundir.write_metrics(run_path, rows)
            t0 = time.perf_counter()
            pick = _search(config, name, sub, net, held_out, reporter)
            search_s += time.perf_counter() - t0
            if pick is not None:
                picks.append(pick)
            nets[name] = net
        plots.distillation_curves(run_path / "plots" / "distillation.png", rows)
        best = min(picks, key=lambda p: p["heldout_loss"]) if picks else None
        arch_info = None
        if best is not None:
            net = nets[best["subspace"]]
            arch = net.space.parse(best["arch"])
            exported = _export(run_path, net, arch, teacher_info, run_path / "teacher" / "vocab.txt"
                               if config["strategy"]["teacher"] is None else Path(config["strategy"]["teacher"])
                               / "vocab.txt", reporter)
            arch_info = {"arch": best["arch"], "space": "transformer", "subspace": best["subspace"],
                         "score": best["heldout_loss"], "metric": "heldout_distill_loss (lower is better)",
                         "method": config["search"]["method"], "evaluated": sum(p["evaluated"] for p in picks),
                         "params": best["params"], "flops": best["flops"], "cost_model": _cost_task(config),
                         "limits": {"max_params": config["search"]["max_params"],
                                    "max_flops": config["search"]["max_flops"]},
                         "teacher": teacher_info, "export": exported,
                         "picks": [{k: v for k, v in p.items() if k != "history"} for p in picks]}
            atomic_write_json(run_path / "arch.json", arch_info)
            atomic_write_json(run_path / "search.json", {"picks": picks})
        summary = {"status": "complete", "run_dir": str(run_path), "space": "transformer",
                   "strategy": config["strategy"]["name"], "dataset": text.source, "seed": config["seed"],
                   "epochs": config["train"]["epochs"], "subspaces": list(subspaces),
                   "steps": sum(int(r.get("steps", 0)) for r in rows), "teacher": teacher_info,
                   "best_arch": best["arch"] if best else None, "best_score": best["heldout_loss"] if best else None,
                   "best_test_acc_inherited": None,  # no labels: the score is the held-out distillation loss
                   "final_heldout": {r["subspace"]: {"largest": r["heldout_largest"], "smallest": r["heldout_smallest"]}
                                     for r in rows},
                   "train_seconds_this_invocation": round(train_s, 2), "search_seconds": round(search_s, 2),
                   "total_seconds_this_invocation": round(time.perf_counter() - started, 2), "data": text.info()}
        atomic_write_json(run_path / "summary.json", summary)
        if best:
            reporter.info(f"best student {best['arch']} (sub-space {best['subspace']}): held-out distillation loss "
                          f"{best['heldout_loss']:.4f}, {best['params']:,} parameters, {best['flops']:,} FLOPs per "
                          f"sequence of {config['strategy']['seq_len']}")
        reporter.info(f"run directory: {run_path}")
        return summary
    finally:
        reporter.close()


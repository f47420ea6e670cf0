"""AutoDistil (specs/ALGORITHMS.md §6): few-shot, task-agnostic distillation of BERT-like students.

The space is cut into K hand-made sub-spaces (Base, Small, Tiny, or the K = 1 space `full`, or the user's own);
one SuperLM per sub-space learns from the teacher by self-attention relation distillation (§6.4), with the
sandwich rule of §6.5 in every step: the sub-space's largest and smallest students and `random_students` distinct
random others see the same batch, gradients accumulate, then one AdamW step. After training, every SuperLM's
students are scored by their held-out distillation loss with inherited weights (the task-agnostic search of §6.7).

This class holds what is AutoDistil's: the sub-spaces, the students of each step, the relation loss and where the
teacher comes from. The loop that runs it (teacher forward, student passes, AdamW, checkpoints) is the face's
distillation trainer (`nas/distill.py`), chosen because the strategy's `inputs` is "text"; it never names this
strategy.

Subnet sampling uses a generator of its own seeded with `(seed, global_step)` (§6.5 decision): a resumed run and
every data-parallel rank draw the same students, and no global RNG is reseeded (the reference calls
`random.seed(global_step)` every step).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from searchspaces import Arch, Space, SpaceError
from searchspaces.options import choice, integer, number, path, text
from searchspaces.transformer import SUBSPACES, TransformerSpace
from supernets.transformer import EncoderOutput, relation_loss

from .base import Strategy
from .registry import register_strategy

STREAM_STUDENTS = 0xD157  # the seed stream of the students of a step


def _parse_names(value: str) -> list[str]:
    names = [part.strip() for part in str(value).split(",") if part.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"strategy.subspaces={value!r} is not valid; accepted: distinct comma-separated names such as "
                         "base,small,tiny")
    return names


def read_subspace_file(file: str | Path) -> dict[str, dict[str, list]]:
    """The user's sub-spaces from a YAML/JSON file: `name: {layers: [...], heads: [...], hidden: [...],
    mlp_ratio: [...]}` in the teacher's own units (a label left out keeps every candidate)."""
    try:
        loaded = yaml.safe_load(Path(file).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read strategy.subspace_file {str(file)!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise ValueError(f"strategy.subspace_file {str(file)!r} is not valid YAML") from None
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Mapping) for v in loaded.values()):
        raise ValueError(f"strategy.subspace_file {str(file)!r} must map sub-space names to "
                         "{layers: [...], heads: [...], hidden: [...], mlp_ratio: [...]}")
    return {str(k): {str(label): list(values) for label, values in v.items()} for k, v in loaded.items()}


@register_strategy("AutoDistil: one SuperLM per sub-space, self-attention relation distillation from a teacher, "
                   "sandwich students, task-agnostic search")
class AutoDistilStrategy(Strategy):
    """K SuperLMs distilled from one teacher on unlabeled text (see the module docstring)."""

    name = "autodistil"
    inputs = "text"
    OPTIONS = {
        "subspaces": text("base,small,tiny", "the sub-spaces, one SuperLM each: base, small, tiny, full (K = 1) or "
                                             "names from strategy.subspace_file, comma-separated"),
        "subspace_file": path(None, "YAML file of further sub-spaces: name -> {layers, heads, hidden, mlp_ratio: "
                                    "[values in the teacher's units]}"),
        "relation_loss": choice("mse_scores", "MSE on the unnormalised relation scores (the reference) or KL of "
                                              "their row-softmaxes (MiniLMv2)", ("mse_scores", "kl_softmax")),
        "relation_heads": integer(12, "relation heads of the Q-Q/K-K/V-V relations (the reference: 12)", 1),
        "random_students": integer(2, "students drawn at random per step besides the largest and the smallest "
                                      "(the reference: 2)", 0),
        "teacher": path(None, "a local Hugging Face BERT checkpoint directory (config.json, weights, vocab.txt); "
                              "null: train a small teacher on the data first (strategy.teacher_*)"),
        "teacher_layers": integer(12, "layers of the teacher trained on the data (no strategy.teacher)", 1),
        "teacher_hidden": integer(96, "hidden size of that teacher (BERT-base: 768)", 8),
        "teacher_heads": integer(12, "attention heads of that teacher", 1),
        "teacher_head_size": integer(8, "head size of that teacher (BERT-base: 64)", 1),
        "teacher_ffn": integer(384, "FFN width of that teacher (BERT-base: 3072)", 1),
        "teacher_steps": integer(300, "masked-language-model steps that train that teacher", 1),
        "teacher_lr": number(5e-4, "AdamW learning rate of that teacher's masked-language-model training", 0.0,
                             lo_open=True),
        "vocab_size": integer(4000, "WordPiece vocabulary learnt from the data for that teacher", 16),
        "seq_len": integer(32, "tokens per sequence, [CLS] and [SEP] included (the reference: 128)", 8),
        "epoch_steps": integer(20, "steps of an epoch of every SuperLM (each on a fresh shuffle); null: one pass "
                                   "over the training sequences (the reference)", 1, nullable=True),
        "eval_sequences": integer(128, "held-out sequences that score students (the search, the loss curves)", 1),
    }

    def __init__(self, **opts: Any):
        super().__init__(**opts)
        self.names = _parse_names(self.opts["subspaces"])
        self.extra = read_subspace_file(self.opts["subspace_file"]) if self.opts["subspace_file"] else {}
        unknown = [n for n in self.names if n not in SUBSPACES and n not in self.extra]
        if unknown:
            raise ValueError(f"unknown sub-space {unknown[0]!r} (strategy.subspaces); accepted: "
                             f"{', '.join([*SUBSPACES, *self.extra])}")
        self.seed = 0
        self.largest: Arch | None = None
        self.smallest: Arch | None = None

    # --- the space -------------------------------------------------------------------------------------
    def check_space(self, space: Space) -> None:
        if not isinstance(space, TransformerSpace):
            raise ValueError(f"strategy autodistil distils Transformer students; it runs on space transformer, not "
                             f"{space.name!r}")

    def subspaces(self, space: TransformerSpace) -> dict[str, TransformerSpace]:
        """`name -> sub-space` of every SuperLM, in the order given, for `space`'s teacher. ValueError (one
        sentence) for a sub-space of the file whose values the space does not hold."""
        out = {}
        for name in self.names:
            if name in self.extra:
                try:
                    out[name] = space.restrict_json(self.extra[name])
                except (SpaceError, ValueError) as exc:
                    held = "; ".join(f"{d.label} {list(d.candidates)}" for d in space.decisions)
                    raise ValueError(f"sub-space {name!r} of strategy.subspace_file: {exc}; the candidates of this "
                                     f"teacher are {held}") from None
            else:
                out[name] = space.subspace(name)
        return out

    def setup(self, supernet, space: Space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        """One SuperLM's sub-space: its extremes once (by parameter count), the seed of the students' stream."""
        super().setup(supernet, space, seed, data, epochs, cost_task)
        self.seed = int(seed)
        self.largest, self.smallest = space.largest(), space.smallest()

    # --- the students of a step -----------------------------------------------------------------------
    def students(self, global_step: int) -> list[Arch]:
        """The sandwich of step `global_step` (§6.5): largest, smallest, then `random_students` distinct random
        others (distinct from each other and from the extremes, as far as the sub-space has them), drawn from a
        generator seeded with (seed, step) alone."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, STREAM_STUDENTS, int(global_step)]))
        chosen = [self.largest] if self.largest == self.smallest else [self.largest, self.smallest]
        room = self.space.size() - len(chosen)
        want = min(self.opts["random_students"], room)
        while want > 0:
            arch = self.space.sample(rng)
            if arch not in chosen:
                chosen.append(arch)
                want -= 1
        return chosen

    def sample(self) -> Arch:
        return self.space.sample(self.rng)

    # --- the objective --------------------------------------------------------------------------------
    def distill_loss(self, student: EncoderOutput, teacher: EncoderOutput,
                     attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The task-agnostic objective of §6.4: the last layer's Q-Q, K-K and V-V relation losses, summed."""
        return relation_loss(student, teacher, attention_mask, form=self.opts["relation_loss"],
                             heads=self.opts["relation_heads"])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.seed = int(state.get("seed", self.seed))

"""The Transformer space of AutoDistil (specs/ALGORITHMS.md §6): elastic BERT-like encoders cut from one teacher.

Four global decisions, as in AutoDistil: `layers` L, attention `heads` A, `hidden` size H and `mlp_ratio` R. A
student is a slice of the teacher (BERT-base by default: 12 layers, hidden 768, 12 heads of 64, FFN 3072):

- Q, K, V: in H, out A * 64 (the head size stays the teacher's 64, so the width A * 64 may exceed H); the
  attention output: in A * 64, out H; FFN: H -> int(H * R) -> H. Every linear layer keeps `W[:out, :in]`, `b[:out]`.
- Embeddings (word, position, token type) and every LayerNorm keep the first H features.
- Depth keeps the evenly spaced teacher layers `floor(i * teacher_layers / L)`, i < L (`layer_indices`).

Candidates are the union of AutoDistil's sub-spaces (§6.2) and of its one-shot space (K = 1: L, A, H in 1/12 ..
12/12 of the teacher, R 0.5 .. 4.0 in 8 steps). Each of these is a mask (`SUBSPACES`, `subspace(name)`); any
other is `restrict`/`restrict_json`, like the sub-spaces of few-shot NAS.

The reference writes its sub-spaces as multipliers of the teacher's dims (fractions such as 17/24 of the hidden
size), so a space over another teacher (`TransformerSpace(teacher=Teacher(hidden=96, head_size=8, ...))`, the
small teacher of a CPU run) keeps the same fractions: every value of `SUBSPACES` (written in BERT-base units) is
scaled by the teacher's dim over BERT-base's and rounded (`scaled`); the MLP ratio is a ratio and stays.

Costs come from the slice shapes, never from the reference's formula (which assumes a Q/K/V width of H * A / 12 and
is wrong whenever H != 768, §6.6): `params` counts embeddings, encoder layers and (`pooler=True`) BERT's pooler, so
the teacher's own arch has exactly the parameters of `transformers.BertModel(BertConfig())`, 109,482,240.
`flops` counts the multiply-adds of one sequence of `seq_len` tokens through the encoder (the linear layers and
the two attention products, biases, softmax, LayerNorm and embedding lookups not counted), plus the pooler.

The canonical string is `L12-A12-H768-R4.0`. Pure Python.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .core import Arch, Decision, FlopsConvention, Space, SpaceError
from .registry import register_space


@dataclass(frozen=True)
class Teacher:
    """The shape of the model every student is cut from (BERT-base-uncased by default)."""

    layers: int = 12
    hidden: int = 768
    heads: int = 12
    head_size: int = 64
    intermediate: int = 3072
    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    eps: float = 1e-12  # LayerNorm epsilon

    @property
    def mlp_ratio(self) -> float:
        """The teacher's own FFN width over its hidden size (4.0 for BERT-base)."""
        return self.intermediate / self.hidden

    def to_json(self) -> dict[str, int | float]:
        """The shape as JSON-ready data (run metadata)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


BERT_BASE = Teacher()


def _grid(start: float, stop: float, n: int) -> tuple[float, ...]:
    """`linspace(start, stop, n)` rounded to 4 decimals (the reference parses the multipliers as fractions)."""
    return tuple(round(start + (stop - start) * i / (n - 1), 4) for i in range(n))


# AutoDistil's sub-spaces (ref. KD_wiki_book_..._{Base,Small,Tiny}_256Subs.yaml) and its one-shot space K = 1.
SUBSPACES: dict[str, dict[str, tuple[Hashable, ...]]] = {
    "base": {"layers": (9, 10, 11, 12), "heads": (9, 10, 11, 12), "hidden": (544, 576, 608, 640),
             "mlp_ratio": (2.5, 3.0, 3.5, 4.0)},
    "small": {"layers": (9, 10, 11, 12), "heads": (7, 8, 9, 10), "hidden": (256, 288, 320, 352),
              "mlp_ratio": (2.5, 3.0, 3.5, 4.0)},
    "tiny": {"layers": (4, 5, 6, 7), "heads": (7, 8, 9, 10), "hidden": (128, 160, 192, 224),
             "mlp_ratio": (2.0, 2.5, 3.0, 3.5)},
    "full": {"layers": tuple(range(1, 13)), "heads": tuple(range(1, 13)), "hidden": tuple(range(64, 769, 64)),
             "mlp_ratio": _grid(0.5, 4.0, 8)},
}
LABELS: tuple[str, ...] = ("layers", "heads", "hidden", "mlp_ratio")
PREFIX = {"layers": "L", "heads": "A", "hidden": "H", "mlp_ratio": "R"}
EXAMPLE = "L12-A9-H544-R3.0"


_UNITS = {"layers": "layers", "heads": "heads", "hidden": "hidden"}  # the Teacher field each label scales with


def scaled(label: str, value: Hashable, teacher: Teacher) -> Hashable:
    """A candidate written in BERT-base units (`SUBSPACES`) for `teacher`: the same fraction of its dim, rounded
    (at least 1); the MLP ratio is unchanged."""
    if label not in _UNITS:
        return value
    field = _UNITS[label]
    return max(1, round(value * getattr(teacher, field) / getattr(BERT_BASE, field)))


def subspace_values(name: str, teacher: Teacher = BERT_BASE) -> dict[str, tuple[Hashable, ...]]:
    """The candidates of sub-space `name` for `teacher` (duplicates that rounding makes are merged)."""
    if name not in SUBSPACES:
        raise SpaceError(f"unknown transformer sub-space {name!r}; accepted: {', '.join(SUBSPACES)}")
    return {label: tuple(sorted({scaled(label, v, teacher) for v in values}))
            for label, values in SUBSPACES[name].items()}


def _candidates(label: str, teacher: Teacher) -> tuple[Hashable, ...]:
    return tuple(sorted({v for name in SUBSPACES for v in subspace_values(name, teacher)[label]}))


def layer_indices(layers: int, teacher_layers: int = 12) -> tuple[int, ...]:
    """The teacher layers a student of depth `layers` keeps: `floor(i * teacher_layers / layers)`, i < layers."""
    if not 1 <= layers <= teacher_layers:
        raise SpaceError(f"a student has 1 to {teacher_layers} layers, got {layers}")
    return tuple(i * teacher_layers // layers for i in range(layers))


def ffn_width(hidden: int, mlp_ratio: float) -> int:
    """The FFN's inner width of a student: int(H * R)."""
    return int(round(hidden * mlp_ratio, 6))


@register_space("Transformer (AutoDistil): elastic BERT encoder, layers x heads x hidden x MLP ratio, sub-spaces",
                example=EXAMPLE)
class TransformerSpace(Space):
    """AutoDistil's elastic BERT space over one teacher; sub-spaces Base, Small, Tiny and the full K = 1 space."""

    name = "transformer"
    flops_convention = FlopsConvention(bias=False, pools=False)
    COST_OPTIONS: tuple[str, ...] = ()

    def __init__(self, allowed: Mapping[str, Sequence[Hashable]] | None = None, teacher: Teacher = BERT_BASE):
        if teacher.heads * teacher.head_size < 1 or teacher.hidden < 1 or teacher.layers < 1:
            raise SpaceError(f"a teacher needs at least one layer, head and feature, got {teacher}")
        self.teacher = teacher
        super().__init__([Decision(label, _candidates(label, teacher)) for label in LABELS], allowed)

    # --- sub-spaces --------------------------------------------------------------------------------
    def subspace(self, name: str) -> TransformerSpace:
        """AutoDistil's sub-space `base`, `small`, `tiny` or the one-shot space `full` (a mask of this space, at
        the same fractions of this space's teacher)."""
        return self.restrict_json({k: list(v) for k, v in subspace_values(name, self.teacher).items()})

    def teacher_arch(self) -> Arch:
        """The student that is the teacher itself (every layer, head and feature), where the space holds it."""
        t = self.teacher
        return self.make([t.layers, t.heads, t.hidden, t.mlp_ratio])

    # --- strings -----------------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        layers, heads, hidden, ratio = arch.choices
        return f"L{layers}-A{heads}-H{hidden}-R{float(ratio):.1f}"

    def parse(self, text: str) -> Arch:
        parts = str(text).strip().replace(" ", "").split("-")
        if len(parts) != 4 or [p[:1] for p in parts] != ["L", "A", "H", "R"]:
            raise SpaceError(f"cannot parse {text!r} as a transformer arch; expected e.g. {EXAMPLE!r} (layers, heads, "
                             "hidden, MLP ratio)")
        try:
            layers, heads, hidden, ratio = int(parts[0][1:]), int(parts[1][1:]), int(parts[2][1:]), float(parts[3][1:])
        except ValueError:
            raise SpaceError(f"cannot parse {text!r} as a transformer arch; expected e.g. {EXAMPLE!r}") from None
        return self.make([layers, heads, hidden, ratio])

    def make(self, choices: Mapping[str, Hashable] | Sequence[Hashable]) -> Arch:
        if not isinstance(choices, Mapping):
            choices = list(choices)
            if len(choices) == 4:  # ratios may come as ints or other spellings of a candidate
                choices[3] = next((c for c in self.decisions[3].candidates if c == float(choices[3])), choices[3])
        return super().make(choices)

    # --- costs ---------------------------------------------------------------------------------------
    @staticmethod
    def dims(arch: Arch, teacher: Teacher | None = None) -> dict[str, int]:
        """The slice widths of a student: hidden H, attention width A * head_size, FFN width, layers, heads (of
        `teacher`, default the arch's own space's)."""
        teacher = teacher or getattr(arch.space, "teacher", BERT_BASE)
        layers, heads, hidden, ratio = arch.choices
        if layers > teacher.layers or heads > teacher.heads or hidden > teacher.hidden:
            raise SpaceError(f"{arch.to_string()} is larger than its teacher ({teacher.layers} layers, "
                             f"{teacher.heads} heads, hidden {teacher.hidden})")
        ffn = ffn_width(hidden, ratio)
        if ffn > teacher.intermediate:
            raise SpaceError(f"{arch.to_string()} has an FFN of {ffn}, wider than its teacher's {teacher.intermediate}")
        return {"layers": layers, "heads": heads, "hidden": hidden, "attention": heads * teacher.head_size,
                "ffn": ffn}

    def params(self, arch: Arch, teacher: Teacher | None = None, pooler: bool = True, **task: Any) -> int:
        """Parameters of the student from its slice shapes: embeddings (word, position, type, LayerNorm), every
        encoder layer (Q, K, V, attention output, two LayerNorms, the FFN), and BERT's pooler when `pooler`."""
        teacher = teacher or self.teacher
        d = self.dims(arch, teacher)
        h, a, f = d["hidden"], d["attention"], d["ffn"]
        embeddings = (teacher.vocab_size + teacher.max_positions + teacher.type_vocab_size) * h + 2 * h
        layer = 3 * (h * a + a) + (a * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
        return embeddings + d["layers"] * layer + ((h * h + h) if pooler else 0)

    def flops(self, arch: Arch, teacher: Teacher | None = None, seq_len: int = 128, pooler: bool = True,
              **task: Any) -> int:
        """Multiply-adds of one sequence of `seq_len` tokens: per layer the Q/K/V, output and FFN projections of
        every token and the two attention products (Q K^T and the weighted sum of V); plus the pooler on the first
        token."""
        d = self.dims(arch, teacher or self.teacher)
        h, a, f, s = d["hidden"], d["attention"], d["ffn"], int(seq_len)
        layer = s * (3 * h * a + a * h + 2 * h * f) + 2 * s * s * a
        return d["layers"] * layer + (h * h if pooler else 0)

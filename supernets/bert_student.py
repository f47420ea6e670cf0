"""A student of the elastic BERT encoder as a plain, fixed-size PyTorch module (specs/ALGORITHMS.md §6.3).

`ElasticBert` runs a student by slicing teacher-sized weights on every call. Once a student is chosen it should
live on its own: `extract_student(net, arch)` copies its inherited slices (`W[:out, :in]`, `b[:out]`, the first H
features of the embeddings and LayerNorms, the evenly spaced teacher layers renumbered 0 .. L-1) into a
`BertStudent` of exactly the student's shape, which shares no storage with the supernet and computes the same
`EncoderOutput` as `net(input_ids, arch)`.

`BertStudent` keeps ElasticBert's parameter names (`word_embeddings`, `layers.{i}.query`, `pooler`, ...), so one
name mapping (`nas.hfbert`) serves both. A Hugging Face `BertModel` fixes the head size at hidden / heads, so it
holds a student exactly only when heads * head_size == hidden (`hf_compatible`, `hf_incompatibility`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from searchspaces import Arch
from searchspaces.transformer import Teacher, TransformerSpace, layer_indices

from .transformer import ElasticBert, EncoderLayer, EncoderOutput, _embed, _pool


class BertStudent(nn.Module):
    """A post-LayerNorm BERT encoder of one fixed shape: `layers` layers of `heads` heads of `head_size`, hidden
    `hidden`, FFN width `ffn`, exact GELU, and BERT's tanh pooler; parameter names as in `ElasticBert`."""

    def __init__(self, layers: int, heads: int, hidden: int, head_size: int, ffn: int, vocab_size: int,
                 max_positions: int, type_vocab_size: int = 2, eps: float = 1e-12, init_std: float = 0.02):
        super().__init__()
        # The student's own dims as a `Teacher`: the shape its `EncoderLayer`s are built at (they slice nothing).
        shape = Teacher(layers=layers, hidden=hidden, heads=heads, head_size=head_size, intermediate=ffn,
                        vocab_size=vocab_size, max_positions=max_positions, type_vocab_size=type_vocab_size, eps=eps)
        self.shape = shape
        self.eps = eps
        self.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(EncoderLayer(shape, eps) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)
        for module in self.modules():  # BERT's initialisation, for a student trained from scratch
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BertStudent:
        """A (freshly initialised) student of the shape `student_config` describes."""
        keys = ("layers", "heads", "hidden", "head_size", "ffn", "vocab_size", "max_positions", "type_vocab_size",
                "eps")
        return cls(**{k: config[k] for k in keys})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> EncoderOutput:
        """Run on token ids `[B, S]` (attention mask 1 = token, 0 = padding), as `ElasticBert.forward` does."""
        hidden = self.shape.hidden
        x, mask = _embed(self, input_ids, hidden, attention_mask, token_type_ids)
        qkv = None
        for layer in self.layers:
            x, qkv = layer(x, mask, self.shape.heads, self.shape.intermediate)
        return EncoderOutput(*qkv, hidden=x, pooled=_pool(self, x, hidden))


def student_config(arch: Arch, teacher: Teacher, eps: float | None = None) -> dict[str, Any]:
    """A JSON-able description of student `arch` of `teacher`: its dims, the attention width, the vocabulary and
    position sizes, the LayerNorm eps (default the teacher's) and which teacher layers it keeps (what
    `BertStudent.from_config` reads)."""
    d = TransformerSpace.dims(arch, teacher)
    eps = teacher.eps if eps is None else eps
    return {"arch": arch.to_string(), "layers": d["layers"], "heads": d["heads"], "hidden": d["hidden"],
            "head_size": teacher.head_size, "attention": d["attention"], "ffn": d["ffn"],
            "vocab_size": teacher.vocab_size, "max_positions": teacher.max_positions,
            "type_vocab_size": teacher.type_vocab_size, "eps": float(eps),
            "teacher_layers": list(layer_indices(d["layers"], teacher.layers))}


def _copy_linear(target: nn.Linear, source: nn.Linear) -> None:
    """`target` takes `source`'s `W[:out, :in]` and `b[:out]` at its own shape."""
    out, inp = target.weight.shape
    target.weight.copy_(source.weight[:out, :inp])
    target.bias.copy_(source.bias[:out])


def _copy_norm(target: nn.LayerNorm, source: nn.LayerNorm) -> None:
    """`target` takes the first features of `source`'s LayerNorm."""
    width = target.weight.shape[0]
    target.weight.copy_(source.weight[:width])
    target.bias.copy_(source.bias[:width])


def _copy_layer(target: EncoderLayer, source: EncoderLayer) -> None:
    for name in ("query", "key", "value", "output", "intermediate", "ffn_output"):
        _copy_linear(getattr(target, name), getattr(source, name))
    _copy_norm(target.attention_norm, source.attention_norm)
    _copy_norm(target.output_norm, source.output_norm)


@torch.no_grad()
def extract_student(net: ElasticBert, arch: Arch) -> BertStudent:
    """Student `arch` of `net` as a standalone `BertStudent` holding copies of its inherited weight slices (no
    storage shared with the supernet), on the supernet's device and dtype and in its train/eval mode."""
    config = student_config(arch, net.teacher, net.embedding_norm.eps)
    source = net.word_embeddings.weight
    student = BertStudent.from_config(config).to(device=source.device, dtype=source.dtype)
    hidden = config["hidden"]
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        getattr(student, name).weight.copy_(getattr(net, name).weight[:, :hidden])
    _copy_norm(student.embedding_norm, net.embedding_norm)
    for target, index in zip(student.layers, config["teacher_layers"]):
        _copy_layer(target, net.layers[index])
    _copy_linear(student.pooler, net.pooler)
    return student.train(net.training)


def hf_incompatibility(arch: Arch, teacher: Teacher) -> str | None:
    """Why a Hugging Face `BertModel` cannot hold student `arch` exactly (one sentence), or None when it can: HF
    fixes the head size at hidden / heads, so the attention width heads * head_size must equal the hidden size."""
    d = TransformerSpace.dims(arch, teacher)
    if d["attention"] == d["hidden"]:
        return None
    return (f"student {arch.to_string()} has an attention width of {d['attention']} ({d['heads']} heads of "
            f"{teacher.head_size}) but a hidden size of {d['hidden']}, and a Hugging Face BertModel needs them equal; "
            f"accepted: archs whose heads * {teacher.head_size} equals their hidden size")


def hf_compatible(arch: Arch, teacher: Teacher) -> bool:
    """Whether a Hugging Face `BertModel` holds student `arch` exactly (heads * head_size == hidden)."""
    return hf_incompatibility(arch, teacher) is None


__all__ = ["BertStudent", "extract_student", "hf_compatible", "hf_incompatibility", "student_config"]

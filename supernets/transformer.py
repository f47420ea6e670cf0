"""The elastic BERT encoder of AutoDistil (specs/ALGORITHMS.md §6.3): every student is a slice of one set of weights.

`ElasticBert(teacher)` holds the teacher-sized weights (BERT-base by default). `net(input_ids, arch)` runs the
student `arch` of the `transformer` space (`searchspaces.transformer`) by slicing, exactly as the reference does:

- linear layers keep `W[:out, :in]` and `b[:out]`: Q, K, V map H -> A * 64 (head size fixed at the teacher's 64),
  the attention output A * 64 -> H, the FFN H -> int(H * R) -> H;
- embeddings and every LayerNorm keep the first H features (LayerNorm statistics over those H);
- depth runs the evenly spaced teacher layers `floor(i * 12 / L)`.

BERT is post-LayerNorm with exact (erf) GELU and LayerNorm eps 1e-12, so the largest student with the teacher's
weights is the teacher. The output holds what the distillation needs (§6.4): the last layer's pre-softmax Q, K and
V projections (width A * 64), the last hidden states and BERT's pooled first token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from searchspaces import Arch
from searchspaces.options import Between, Help
from searchspaces.transformer import BERT_BASE, Teacher, TransformerSpace, ffn_width, layer_indices

from .base import Supernet
from .registry import register_supernet


@dataclass
class EncoderOutput:
    """What one forward pass of a student gives: the last layer's Q, K, V ([B, S, A * 64]) and hidden states
    ([B, S, H]), and the pooled first token ([B, H])."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    hidden: torch.Tensor
    pooled: torch.Tensor


def _linear(layer: nn.Linear, x: torch.Tensor, out: int, inp: int) -> torch.Tensor:
    return F.linear(x, layer.weight[:out, :inp], layer.bias[:out])


def _norm(layer: nn.LayerNorm, x: torch.Tensor, width: int) -> torch.Tensor:
    return F.layer_norm(x, (width,), layer.weight[:width], layer.bias[:width], layer.eps)


class EncoderLayer(nn.Module):
    """One BERT layer at the teacher's width; `forward` runs a slice of it."""

    def __init__(self, teacher: Teacher, eps: float):
        super().__init__()
        width = teacher.heads * teacher.head_size
        self.query = nn.Linear(teacher.hidden, width)
        self.key = nn.Linear(teacher.hidden, width)
        self.value = nn.Linear(teacher.hidden, width)
        self.output = nn.Linear(width, teacher.hidden)
        self.attention_norm = nn.LayerNorm(teacher.hidden, eps=eps)
        self.intermediate = nn.Linear(teacher.hidden, teacher.intermediate)
        self.ffn_output = nn.Linear(teacher.intermediate, teacher.hidden)
        self.output_norm = nn.LayerNorm(teacher.hidden, eps=eps)
        self.head_size = teacher.head_size

    def forward(self, x: torch.Tensor, mask: torch.Tensor, heads: int, ffn: int
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        batch, seq, hidden = x.shape
        width = heads * self.head_size
        q, k, v = (_linear(layer, x, width, hidden) for layer in (self.query, self.key, self.value))

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, seq, heads, self.head_size).transpose(1, 2)

        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(self.head_size) + mask
        context = (torch.softmax(scores, dim=-1) @ split(v)).transpose(1, 2).reshape(batch, seq, width)
        x = _norm(self.attention_norm, x + _linear(self.output, context, hidden, width), hidden)
        inner = F.gelu(_linear(self.intermediate, x, ffn, hidden))
        x = _norm(self.output_norm, x + _linear(self.ffn_output, inner, hidden, ffn), hidden)
        return x, (q, k, v)


def _embed(model: nn.Module, input_ids: torch.Tensor, hidden: int, attention_mask: torch.Tensor | None,
           token_type_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's embeddings (word + position + token type, LayerNorm) at the first `hidden` features, and the additive
    attention mask ([B, 1, 1, S]: 0 for tokens, the dtype's minimum for padding) of `model`'s embedding tables."""
    seq = input_ids.shape[1]
    positions = torch.arange(seq, device=input_ids.device)
    types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    x = (model.word_embeddings.weight[input_ids, :hidden] + model.position_embeddings.weight[positions, :hidden]
         + model.token_type_embeddings.weight[types, :hidden])
    x = _norm(model.embedding_norm, x, hidden)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    return x, mask


def _pool(model: nn.Module, x: torch.Tensor, hidden: int) -> torch.Tensor:
    """BERT's pooler: tanh of a dense layer on the first token."""
    return torch.tanh(_linear(model.pooler, x[:, 0], hidden, hidden))


class ElasticBert(nn.Module):
    """A BERT encoder at the teacher's size whose students run by slicing (`forward(input_ids, arch)`)."""

    def __init__(self, teacher: Teacher = BERT_BASE, eps: float | None = None, init_std: float = 0.02):
        super().__init__()
        eps = teacher.eps if eps is None else eps
        self.teacher = teacher
        self.space = TransformerSpace(teacher=teacher)
        self.word_embeddings = nn.Embedding(teacher.vocab_size, teacher.hidden)
        self.position_embeddings = nn.Embedding(teacher.max_positions, teacher.hidden)
        self.token_type_embeddings = nn.Embedding(teacher.type_vocab_size, teacher.hidden)
        self.embedding_norm = nn.LayerNorm(teacher.hidden, eps=eps)
        self.layers = nn.ModuleList(EncoderLayer(teacher, eps) for _ in range(teacher.layers))
        self.pooler = nn.Linear(teacher.hidden, teacher.hidden)
        for module in self.modules():  # BERT's initialisation
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def largest(self) -> Arch:
        """The student that is the teacher: every layer, head and feature."""
        return self.space.teacher_arch()

    def forward(self, input_ids: torch.Tensor, arch: Arch, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> EncoderOutput:
        """Run student `arch` on token ids `[B, S]` (attention mask 1 = token, 0 = padding)."""
        d = self.space.dims(arch, self.teacher)
        x, mask = _embed(self, input_ids, d["hidden"], attention_mask, token_type_ids)
        qkv = None
        for index in layer_indices(d["layers"], self.teacher.layers):
            x, qkv = self.layers[index](x, mask, d["heads"], d["ffn"])
        return EncoderOutput(*qkv, hidden=x, pooled=_pool(self, x, d["hidden"]))


class TransformerSupernet(ElasticBert, Supernet):
    """The registered supernet of the `transformer` space: an `ElasticBert` over the space's teacher (the SuperLM of
    AutoDistil). Its input is token ids, not images (`inputs="text"` in its registration), and what it trains on is
    a teacher's relations (`relation_loss`), not labels; `export(arch)` is the student as a plain module."""

    space_name = "transformer"
    choice_gradients = False  # students share slices of every weight: no per-candidate parameters

    def __init__(self, space: TransformerSpace, num_classes: int = 0,
                 init_std: Annotated[float, Between(0.0, 1.0, lo_open=True),
                                     Help("std of BERT's normal initialisation (a teacher's weights replace it)")]
                 = 0.02):
        self._check_space(space)
        super().__init__(space.teacher, init_std=init_std)
        self.space = space

    def export(self, arch: Arch) -> nn.Module:
        """The student `arch` as a plain fixed-size BERT encoder with the inherited weights copied in."""
        from .bert_student import extract_student

        return extract_student(self, arch)

    def export_costs(self) -> dict[str, object] | None:
        return {"teacher": self.teacher}


register_supernet(TransformerSupernet, inputs="text")


def relation_heads(width: int, heads: int = 12) -> int:
    """The size d_r of each of the `heads` relation heads of a projection of `width` (§6.4): floor(width / heads)."""
    return width // heads


def relations(x: torch.Tensor, mask: torch.Tensor | None, heads: int = 12) -> torch.Tensor:
    """`Rel_X = X_r X_r^T / sqrt(d_r) + mask` over `heads` relation heads ([B, S, W] -> [B, heads, S, S]); the
    projection is truncated to `heads * d_r` dims, as the reference does for widths that `heads` does not divide."""
    batch, seq, width = x.shape
    size = relation_heads(width, heads)
    xr = x[..., : heads * size].reshape(batch, seq, heads, size).transpose(1, 2)
    rel = xr @ xr.transpose(-1, -2) / math.sqrt(size)
    if mask is not None:
        rel = rel + (1.0 - mask[:, None, None, :].to(rel.dtype)) * -10000.0
    return rel


def relation_loss(student: EncoderOutput, teacher: EncoderOutput, attention_mask: torch.Tensor | None = None,
                  form: str = "mse_scores", heads: int = 12) -> torch.Tensor:
    """AutoDistil's self-attention distillation (§6.4): the sum over Q, K, V of the last layer of MSE(Rel^s, Rel^t)
    (`mse_scores`, the reference: unnormalised scores, the -10000 padding mask added to both) or of the KL divergence
    between their row-softmaxes (`kl_softmax`, MiniLMv2's form)."""
    if form not in ("mse_scores", "kl_softmax"):
        raise ValueError(f"relation loss {form!r} is not one of mse_scores, kl_softmax")
    total = torch.zeros((), device=student.hidden.device)
    for s, t in ((student.query, teacher.query), (student.key, teacher.key), (student.value, teacher.value)):
        rs, rt = relations(s, attention_mask, heads), relations(t.detach(), attention_mask, heads)
        if form == "mse_scores":
            total = total + F.mse_loss(rs, rt)
        else:
            total = total + F.kl_div(torch.log_softmax(rs, -1).flatten(0, 2), torch.log_softmax(rt, -1).flatten(0, 2),
                                     reduction="batchmean", log_target=True)
    return total


__all__ = ["ElasticBert", "EncoderLayer", "EncoderOutput", "TransformerSupernet", "ffn_width", "relation_loss",
           "relations"]

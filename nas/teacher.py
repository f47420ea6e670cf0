"""A small BERT teacher trained on the user's text by masked-language modelling (BERT's pre-training objective).

AutoDistil distils students from BERT-base. Where no pretrained checkpoint is at hand (a fresh machine, a CPU
demo, a domain without one), `train_teacher` trains a teacher of a given shape on the run's own text: 15 % of the
non-special tokens of each sequence are chosen, of which 80 % become [MASK], 10 % a random token and 10 % stay
(BERT's rule); the loss is the cross-entropy of the chosen tokens under BERT's prediction head (dense, GELU,
LayerNorm, decoder tied to the word embeddings). AdamW, linear warm-up over 10 % of the steps, then linear decay.

`nas teacher train --data FILE --out DIR` writes the result as a Hugging Face BERT checkpoint directory (with the
prediction head, so `BertForMaskedLM` loads it too); `nas search --strategy autodistil --teacher DIR` distils from
it, as from any local BERT checkpoint.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from searchspaces.transformer import Teacher
from supernets.transformer import ElasticBert

from .distill import adamw, linear_lr
from .errors import UserError
from .progress import ETA, Reporter, format_seconds

MASK_PROBABILITY = 0.15


class PredictionHead(nn.Module):
    """BERT's masked-LM head over an encoder's hidden states; the decoder weight is the word embeddings."""

    def __init__(self, hidden: int, vocab_size: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, hidden: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(hidden))), embeddings, self.bias)

    def hf_state(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """The head in Hugging Face's `BertForMaskedLM` names (`cls.predictions.*`)."""
        return {"cls.predictions.transform.dense.weight": self.dense.weight.detach(),
                "cls.predictions.transform.dense.bias": self.dense.bias.detach(),
                "cls.predictions.transform.LayerNorm.weight": self.norm.weight.detach(),
                "cls.predictions.transform.LayerNorm.bias": self.norm.bias.detach(),
                "cls.predictions.bias": self.bias.detach(),
                "cls.predictions.decoder.weight": embeddings.detach(),
                "cls.predictions.decoder.bias": self.bias.detach()}


def mask_tokens(ids: torch.Tensor, vocab_size: int, mask_id: int, special: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of a batch `[B, S]`: (inputs, labels) with labels -100 where nothing is predicted.
    `special` is a bool mask of the vocabulary's special ids (never chosen)."""
    chosen = (torch.rand(ids.shape, generator=generator) < MASK_PROBABILITY) & ~special[ids]
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=generator)
    inputs = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, inputs)
    return inputs, labels


@dataclass
class TeacherResult:
    net: ElasticBert
    head: PredictionHead
    rows: list[dict[str, float]]
    seconds: float


def train_teacher(shape: Teacher, sequences: torch.Tensor, held_out: torch.Tensor, special_ids: list[int],
                  mask_id: int, steps: int, lr: float, batch_size: int, seed: int, device: torch.device,
                  reporter: Reporter, log_every: int = 50) -> TeacherResult:
    """Train a BERT of `shape` by masked-LM on `sequences` ([N, S] token ids) for `steps` AdamW steps; rows of
    (step, train loss, held-out masked-LM loss and accuracy) every `log_every` steps and at the end."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ElasticBert(shape).to(device)
    head = PredictionHead(shape.hidden, shape.vocab_size, shape.eps).to(device)
    arch = net.largest()
    model = nn.ModuleDict({"encoder": net, "head": head})
    optimizer = adamw(model, lr, 0.01)
    special = torch.zeros(shape.vocab_size, dtype=torch.bool)
    special[special_ids] = True
    batch_size = min(batch_size, len(sequences))
    eval_inputs, eval_labels = mask_tokens(held_out, shape.vocab_size, mask_id, special,
                                           torch.Generator().manual_seed(seed + 1))
    rows: list[dict[str, float]] = []
    eta = ETA(steps)
    loss_sum, seen = torch.zeros((), device=device), 0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = linear_lr(lr, 0.0, step, steps, max(1, steps // 10))
        index = torch.randint(len(sequences), (batch_size,), generator=generator)
        inputs, labels = mask_tokens(sequences[index], shape.vocab_size, mask_id, special, generator)
        logits = head(net(inputs.to(device), arch).hidden, net.word_embeddings.weight)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.to(device).flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        loss_sum += loss.detach()
        seen += 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            row = {"step": step + 1, "train_mlm_loss": float(loss_sum) / seen,
                   **_evaluate(net, head, arch, eval_inputs, eval_labels, device)}
            rows.append(row)
            loss_sum, seen = torch.zeros((), device=device), 0
            remaining = eta.remaining(step + 1)
            reporter.info(f"teacher step {step + 1}/{steps}  masked-LM loss {row['train_mlm_loss']:.3f}  held-out "
                          f"{row['heldout_mlm_loss']:.3f} (accuracy {row['heldout_mlm_acc']:.1f}%)"
                          + (f"  ETA {format_seconds(remaining)}" if remaining and step + 1 < steps else ""))
    net.eval()
    return TeacherResult(net, head, rows, time.perf_counter() - started)


def _evaluate(net: ElasticBert, head: PredictionHead, arch, inputs: torch.Tensor, labels: torch.Tensor,
              device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """Held-out masked-LM loss and accuracy of the chosen tokens."""
    net.eval()
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x, y = inputs[start:start + batch_size].to(device), labels[start:start + batch_size].to(device)
            logits = head(net(x, arch).hidden, net.word_embeddings.weight)
            chosen = y != -100
            total += float(F.cross_entropy(logits[chosen], y[chosen], reduction="sum"))
            correct += int((logits[chosen].argmax(-1) == y[chosen]).sum())
            count += int(chosen.sum())
    net.train()
    return {"heldout_mlm_loss": total / max(count, 1), "heldout_mlm_acc": 100.0 * correct / max(count, 1)}


def check_teacher_shape(hidden: int, heads: int, head_size: int, prefix: str) -> None:
    """A teacher is a BERT that a checkpoint directory (a BertConfig) can hold: heads x head size = hidden."""
    if heads * head_size != hidden:
        raise UserError(f"{prefix}heads={heads} x {prefix}head_size={head_size} must equal {prefix}hidden={hidden} "
                        "(a BERT's head size is hidden / heads)")


def teacher_shape(layers: int, hidden: int, heads: int, head_size: int, ffn: int, vocab_size: int, seq_len: int,
                  prefix: str) -> Teacher:
    """The shape of a teacher trained here (`prefix` names its options in errors): positions for `seq_len`, at
    least BERT's 128."""
    check_teacher_shape(hidden, heads, head_size, prefix)
    return Teacher(layers=layers, hidden=hidden, heads=heads, head_size=head_size, intermediate=ffn,
                   vocab_size=vocab_size, max_positions=max(seq_len, 128))


def train_and_export(out: Path, shape: Teacher, tokenizer, text, vocab_file: Path, steps: int, lr: float,
                     batch_size: int, seed: int, device: torch.device, reporter: Reporter) -> TeacherResult:
    """Train a teacher of `shape` by masked-LM on `text` (nas.data.text.TextData) and write it to `out` as a
    Hugging Face BertForMaskedLM directory (with `vocab_file`)."""
    from . import hfbert

    reporter.info(f"training a teacher on {text.source} ({len(text.train):,} sequences of {text.seq_len} tokens, "
                  f"vocabulary {len(tokenizer):,}): {shape.layers} layers, hidden {shape.hidden}, {shape.heads} "
                  f"heads of {shape.head_size}, FFN {shape.intermediate}, {steps} masked-LM steps")
    special = [tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id]
    result = train_teacher(shape, text.train, text.valid, special, tokenizer.mask_id, steps, lr, batch_size, seed,
                           device, reporter)
    hfbert.export_teacher_dir(out, result.net, vocab_file, lowercase=True,
                              mlm_head_state=result.head.hf_state(result.net.word_embeddings.weight))
    return result


def train_teacher_dir(args) -> Path:
    """`nas teacher train`: learn a vocabulary from `args.data` (default: the embedded text), train a teacher of
    the given shape and write it to `args.out` as a Hugging Face BERT checkpoint directory."""
    from .data.text import embedded_text, load_text, read_text
    from .data.wordpiece import WordPieceTokenizer, build_vocab
    from .runtime import select_device

    for flag in ("layers", "hidden", "heads", "head_size", "ffn", "steps", "vocab_size", "batch_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.seq_len < 8 or not args.lr > 0:
        raise UserError(f"--seq-len takes 8 or more tokens and --lr a positive rate, got {args.seq_len} and {args.lr}")
    shape = teacher_shape(args.layers, args.hidden, args.heads, args.head_size, args.ffn, 0, args.seq_len, "--")
    out = Path(args.out)
    if out.exists():
        raise UserError(f"--out {out} already exists; give a new directory")
    device = select_device(args.device)
    text = embedded_text()[0] if args.data is None else read_text(args.data)
    reporter = Reporter(None, quiet=args.quiet)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = WordPieceTokenizer(build_vocab(text, args.vocab_size))
        vocab_file = Path(scratch) / "vocab.txt"
        tokenizer.save(vocab_file)
        data = load_text(args.data, tokenizer, args.seq_len, 0.1, args.seed, None)
        shape = dataclasses.replace(shape, vocab_size=len(tokenizer))
        result = train_and_export(out, shape, tokenizer, data, vocab_file, args.steps, args.lr, args.batch_size,
                                  args.seed, device, reporter)
    reporter.info(f"wrote {out} (held-out masked-LM accuracy {result.rows[-1]['heldout_mlm_acc']:.1f}%); use it with "
                  f"nas search --space transformer --strategy autodistil --teacher {out}")
    reporter.close()
    return out

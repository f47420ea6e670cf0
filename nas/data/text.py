"""Unlabeled text for distillation: read a file or folder (or the embedded default), tokenize once, pack into
sequences, cache them, hold some out.

The embedded default is the CPython standard library's `pydoc_data.topics`: the Python Language Reference's topic
texts that `help()` shows, about 465,000 characters of edited English prose. It is on every machine where the
package runs (it ships with CPython itself), so a first run needs no download, and it is real, human-written
English rather than generated text; its domain (technical documentation) is narrower than BERT's Wikipedia and
books.

Sequences are packed as BERT pre-training packs them: consecutive chunks of `seq_len - 2` token ids, each wrapped
as `[CLS] chunk [SEP]`, with no padding (so there is no padded position whose attention mask could matter); the
incomplete last chunk is dropped. A seeded share of the sequences is held out to score students.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.errors import UserError
from nas.io import atomic_write

from .wordpiece import WordPieceTokenizer

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".rst", ""})
EMBEDDED = "embedded:pydoc_data.topics"


def embedded_text() -> tuple[str, str]:
    """The embedded default corpus (pydoc_data.topics, values joined in key order by blank lines) and a one-line
    description of it."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise UserError(
            "the embedded text (the standard library's pydoc_data.topics) is missing from this Python; "
            "give a plain UTF-8 text file with --data FILE."
        ) from None
    text = "\n\n".join(topics[key] for key in sorted(topics))
    return text, f"the Python Language Reference's help() topics (pydoc_data.topics, {len(text):,} characters)"


def read_text(path: str | os.PathLike) -> str:
    """The text of a UTF-8 file, or of every text file under a folder.

    In a folder, every regular file whose name ends in .txt, .text, .md or .rst or has no suffix is read, hidden
    files and folders (names starting with ".") skipped, in order of their relative paths (component by
    component), joined by blank lines. UserError for a missing path, a folder without text files, a binary or
    non-UTF-8 file, or text that is empty or only whitespace."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"the text path {path} does not exist; give a plain UTF-8 text file or a folder of them.")
    if path.is_dir():
        files = text_files(path)
        if not files:
            raise UserError(
                f"the folder {path} holds no text files; accepted are files ending in .txt, .text, .md or .rst "
                "or without a suffix (hidden ones are skipped)."
            )
        text = "\n\n".join(_read_file(file) for file in files)
    else:
        text = _read_file(path)
    if not text.strip():
        raise UserError(f"the text at {path} is empty or only whitespace; give a file or folder with some text.")
    return text


def text_files(folder: Path) -> list[Path]:
    """The text files under `folder` that `read_text` reads, in the order it reads them."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() in TEXT_SUFFIXES:
            found.append(relative)
    return [folder / relative for relative in sorted(found, key=lambda rel: rel.parts)]


def _read_file(path: Path) -> str:
    """The UTF-8 text of one file (a leading byte-order mark dropped); UserError for binary or non-UTF-8 data."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read the text file {path} ({err.strerror or err}); give a readable file.") from None
    if b"\x00" in raw:
        raise UserError(f"{path} is a binary file (it contains NUL bytes); only plain UTF-8 text is accepted.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path} is a binary file (byte {err.start} is not valid UTF-8); only plain UTF-8 text is accepted."
        ) from None


def pack(ids: list[int] | torch.Tensor, seq_len: int, cls_id: int, sep_id: int) -> torch.Tensor:
    """`[N, seq_len]` int64 sequences `[CLS] chunk [SEP]` of consecutive chunks of `seq_len - 2` ids; the incomplete
    last chunk is dropped. UserError if fewer than 2 sequences result."""
    if seq_len < 3:
        raise UserError(f"a sequence length of {seq_len} leaves no room for text between [CLS] and [SEP]; give 3 or "
                        "more.")
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    body = seq_len - 2
    count = len(ids) // body
    if count < 2:
        raise UserError(
            f"the text has {len(ids):,} tokens but two sequences of {seq_len} need at least {2 * body:,} "
            "(a sequence holds seq_len - 2 of them); give more text or a shorter sequence length."
        )
    sequences = torch.empty(count, seq_len, dtype=torch.long)
    sequences[:, 0] = cls_id
    sequences[:, -1] = sep_id
    sequences[:, 1:-1] = ids[: count * body].view(count, body)
    return sequences


@dataclass
class TextData:
    """Packed training and held-out sequences (`[N, seq_len]` int64), and where they came from."""

    train: torch.Tensor
    valid: torch.Tensor
    source: str
    characters: int
    tokens: int
    seq_len: int
    text_sha256: str
    tokenizer_fingerprint: str

    def info(self) -> dict[str, Any]:
        """Run metadata: enough to tell whether two runs saw the same sequences."""
        return {
            "source": self.source,
            "characters": self.characters,
            "tokens": self.tokens,
            "seq_len": self.seq_len,
            "train_sequences": len(self.train),
            "valid_sequences": len(self.valid),
            "text_sha256": self.text_sha256,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
        }


def check_vocab(tokenizer: WordPieceTokenizer, vocab_size: int, where: str) -> None:
    """UserError when the vocabulary and the teacher's embedding table disagree in size (ids would be wrong)."""
    if len(tokenizer) != vocab_size:
        raise UserError(
            f"the vocabulary of {where} has {len(tokenizer):,} tokens but the teacher's embeddings have "
            f"{vocab_size:,} rows; give the teacher's own vocab.txt."
        )


def load_text(source: str | os.PathLike | None, tokenizer: WordPieceTokenizer, seq_len: int, valid_fraction: float,
              split_seed: int, cache_dir: Path | None) -> TextData:
    """Read `source` (None: the embedded text), tokenize and pack it once, and hold out `valid_fraction` of the
    sequences (a random permutation seeded by `split_seed`).

    The packed sequences are cached as `cache_dir/tokens-<key>.pt`, the key hashing the text, the tokenizer's
    fingerprint and `seq_len`, so a resumed or repeated run with the same inputs skips tokenizing; the split is
    not cached, so changing it needs no new tokenization."""
    if source is None:
        text, label = embedded_text()[0], EMBEDDED
    else:
        text, label = read_text(source), str(source)
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    fingerprint = tokenizer.fingerprint()
    key = hashlib.sha256(f"{text_sha}\n{fingerprint}\n{seq_len}".encode()).hexdigest()[:16]
    cache = None if cache_dir is None else Path(cache_dir) / f"tokens-{key}.pt"
    stored = _load_cache(cache, seq_len)
    if stored is None:
        ids = tokenizer.encode(text)
        stored = pack(ids, seq_len, tokenizer.cls_id, tokenizer.sep_id), len(ids)
        if cache is not None:
            payload = {"sequences": stored[0], "tokens": stored[1]}
            atomic_write(cache, lambda fh: torch.save(payload, fh), mode="wb")
    sequences, tokens = stored
    train, valid = split(sequences, valid_fraction, split_seed)
    return TextData(train, valid, label, len(text), tokens, seq_len, text_sha, fingerprint)


def _load_cache(cache: Path | None, seq_len: int) -> tuple[torch.Tensor, int] | None:
    """(sequences, token count) from a cache file, or None when there is none or it is unreadable (then it is
    rebuilt rather than trusted)."""
    if cache is None or not cache.is_file():
        return None
    try:
        stored = torch.load(cache, weights_only=True)
        sequences, tokens = stored["sequences"], int(stored["tokens"])
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError):
        return None
    if sequences.dtype != torch.long or sequences.dim() != 2 or sequences.shape[1] != seq_len:
        return None
    return sequences, tokens


def split(sequences: torch.Tensor, valid_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out): round(valid_fraction * N) sequences (at least 1 when the fraction is positive) drawn by a
    permutation seeded with `split_seed`; both keep corpus order. UserError if no training sequence would remain."""
    if not 0 <= valid_fraction < 1:
        raise UserError(f"the held-out fraction must be at least 0 and below 1, got {valid_fraction}.")
    n = len(sequences)
    held = 0 if valid_fraction == 0 else max(1, round(valid_fraction * n))
    if held >= n:
        raise UserError(
            f"holding out {valid_fraction} of {n} sequences leaves none to train on; give a smaller held-out "
            "fraction or more text."
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    valid_idx, _ = order[:held].sort()
    train_idx, _ = order[held:].sort()
    return sequences[train_idx], sequences[valid_idx]

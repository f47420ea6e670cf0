"""BERT's WordPiece tokenizer in plain Python, so distilling a BERT-like student needs no `transformers` package.

`WordPieceTokenizer` reproduces BERT's two stages exactly (Google's `tokenization.py`, which HF's `BertTokenizer`
also implements):

1. basic tokenization: drop NUL, U+FFFD and control characters, turn every whitespace character into a space,
   put spaces around CJK ideographs, split on whitespace; with `lowercase`, lower-case each word and strip its
   accents (NFD, then drop the combining marks, category Mn); then split every punctuation character off as a
   word of its own;
2. WordPiece: greedy longest-match-first against the vocabulary, continuation pieces prefixed with `##`; a word
   longer than 100 characters, or one that cannot be split into vocabulary pieces, becomes one `[UNK]`.

Unlike HF's tokenizer, a literal "[MASK]" (or any special token) in the text is ordinary text: it is split into
"[", "mask", "]" like any other word, so an unlabeled corpus can never inject special tokens.

Every whitespace-separated chunk of cleaned text maps to the same pieces wherever it occurs, so the tokenizer
memoises chunk -> ids in a dict; that makes tokenizing a corpus of a few hundred thousand characters take well
under a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections import Counter
from pathlib import Path

from nas.errors import UserError
from nas.io import atomic_write_text

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION = "##"
MAX_INPUT_CHARS_PER_WORD = 100

# The CJK Unified Ideographs blocks BERT pads with spaces (Hangul, Hiragana and Katakana are not among them).
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def is_whitespace(char: str) -> bool:
    """BERT's whitespace: space, tab, newline, carriage return and the Unicode space separators (Zs)."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """BERT's control characters: every category C* character except tab, newline and carriage return."""
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """BERT's punctuation: all non-alphanumeric printable ASCII (e.g. $ + ^ `) and every Unicode category P*."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk(char: str) -> bool:
    """Whether `char` is a CJK ideograph, which BERT treats as a word of its own."""
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class _CleanTable(dict):
    """char -> its replacement in cleaned text ("" dropped, " " whitespace, " c " CJK, else itself), memoised."""

    def __missing__(self, char: str) -> str:
        if char == "\x00" or char == "\ufffd" or is_control(char):
            out = ""
        elif is_whitespace(char):
            out = " "
        elif is_cjk(char):
            out = f" {char} "
        else:
            out = char
        self[char] = out
        return out


_CLEAN = _CleanTable()


def clean_text(text: str) -> str:
    """BERT's text cleanup and CJK spacing in one pass (see the module docstring)."""
    return "".join(map(_CLEAN.__getitem__, text))


def strip_accents(word: str) -> str:
    """Drop the combining marks (category Mn) of the NFD form of `word`: "Café" -> "Cafe"."""
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


def split_on_punctuation(word: str) -> list[str]:
    """Split every punctuation character off as a word of its own: "don't!" -> ["don", "'", "t", "!"]."""
    out: list[str] = []
    current: list[str] = []
    for char in word:
        if is_punctuation(char):
            if current:
                out.append("".join(current))
                current = []
            out.append(char)
        else:
            current.append(char)
    if current:
        out.append("".join(current))
    return out


def basic_words(chunk: str, lowercase: bool) -> list[str]:
    """The words of one whitespace-free chunk of cleaned text: lower-cased and accent-stripped if asked, then split
    on punctuation."""
    if lowercase:
        chunk = strip_accents(chunk.lower())
    return split_on_punctuation(chunk)


def basic_tokenize(text: str, lowercase: bool = True) -> list[str]:
    """BERT's BasicTokenizer: the words of `text` before WordPiece."""
    return [word for chunk in clean_text(text).split() for word in basic_words(chunk, lowercase)]


class WordPieceTokenizer:
    """BERT's tokenizer over a fixed vocabulary (`vocab[i]` is the token of id i).

    `encode` adds no special tokens; the packer (`nas.data.text.pack`) wraps sequences in [CLS] ... [SEP]."""

    def __init__(self, vocab: list[str] | tuple[str, ...], lowercase: bool = True):
        self._vocab = tuple(vocab)
        self.lowercase = bool(lowercase)
        # Like HF's loader, a token listed twice maps to its last line.
        self._ids = {token: i for i, token in enumerate(self._vocab)}
        missing = [token for token in SPECIAL_TOKENS if token not in self._ids]
        if missing:
            raise UserError(
                f"the vocabulary lacks the special token(s) {' '.join(missing)}; "
                f"a BERT vocabulary must contain all of {' '.join(SPECIAL_TOKENS)}."
            )
        self._unk = self._ids[UNK]
        self._chunks: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike, lowercase: bool = True) -> WordPieceTokenizer:
        """Read a HF-style `vocab.txt`: one token per line, the line number (from 0) is its id."""
        return cls(read_vocab_file(path), lowercase=lowercase)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as a `vocab.txt` (atomically), readable by `from_file` and by HF's BertTokenizer."""
        return atomic_write_text(path, "".join(f"{token}\n" for token in self._vocab))

    @property
    def vocab(self) -> tuple[str, ...]:
        """The tokens, indexed by id."""
        return self._vocab

    def __len__(self) -> int:
        return len(self._vocab)

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._unk

    @property
    def cls_id(self) -> int:
        return self._ids[CLS]

    @property
    def sep_id(self) -> int:
        return self._ids[SEP]

    @property
    def mask_id(self) -> int:
        return self._ids[MASK]

    def fingerprint(self) -> str:
        """sha256 (hex) of the vocabulary and the lowercase flag: equal fingerprints tokenize every text the same,
        so caches of token ids are keyed by it."""
        payload = json.dumps({"vocab": self._vocab, "lowercase": self.lowercase}, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def encode(self, text: str) -> list[int]:
        """The token ids of `text`, without special tokens."""
        ids: list[int] = []
        chunks = self._chunks
        for chunk in clean_text(text).split():
            pieces = chunks.get(chunk)
            if pieces is None:
                pieces = chunks[chunk] = self._encode_chunk(chunk)
            ids.extend(pieces)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The tokens of `text` as strings (what HF's `BertTokenizer.tokenize` returns)."""
        return [self._vocab[i] for i in self.encode(text)]

    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        ids: list[int] = []
        for word in basic_words(chunk, self.lowercase):
            ids.extend(self._wordpiece(word))
        return tuple(ids)

    def _wordpiece(self, word: str) -> list[int]:
        """Greedy longest-match-first split of one word; [UNK] for the whole word if any part cannot be matched."""
        if len(word) > MAX_INPUT_CHARS_PER_WORD:
            return [self._unk]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                found = self._ids.get(piece)
                if found is not None:
                    break
                end -= 1
            else:
                return [self._unk]
            ids.append(found)
            start = end
        return ids


def read_vocab_file(path: str | os.PathLike) -> list[str]:
    """The tokens of a `vocab.txt`, one per line with only the line ending removed (as HF reads it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"vocabulary file {path} does not exist; give a BERT vocab.txt (one token per line).")
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh.readlines()]
    except UnicodeDecodeError as err:
        raise UserError(f"vocabulary file {path} is not UTF-8 text ({err.reason}); give a BERT vocab.txt.") from err


def build_vocab(text: str, size: int, lowercase: bool = True) -> list[str]:
    """A vocabulary learned from `text` under which every word of it tokenizes without [UNK].

    Layout: [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4); every character of the basic-tokenized corpus, sorted; the
    `##` form of each, in the same order; then the corpus's most frequent words (ties broken alphabetically, so the
    result depends only on `text`, `size` and `lowercase`) until there are `size` entries. The single characters
    guarantee that any word splits, so coverage never depends on `size`: if the characters alone need more than
    `size` entries they are all kept and the vocabulary is longer than `size`. (Words over 100 characters are [UNK]
    under any BERT vocabulary.)"""
    if size < len(SPECIAL_TOKENS) + 1:
        raise UserError(f"vocabulary size {size} is too small; give at least {len(SPECIAL_TOKENS) + 1}.")
    counts = Counter(basic_tokenize(text, lowercase))
    chars = sorted({char for word in counts for char in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(CONTINUATION + char for char in chars)]
    seen = set(vocab)
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= size:
            break
        if word not in seen and len(word) <= MAX_INPUT_CHARS_PER_WORD:
            vocab.append(word)
            seen.add(word)
    return vocab

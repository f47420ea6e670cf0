"""nas.data.wordpiece and nas.data.text: BERT tokenization without `transformers`, and unlabeled text -> sequences."""

from __future__ import annotations

import re
import sys

import pytest
import torch
from transformers import BertTokenizer

from nas.data import text as textdata
from nas.data.text import TextData, check_vocab, embedded_text, load_text, pack, read_text, split
from nas.data.wordpiece import SPECIAL_TOKENS, WordPieceTokenizer, basic_tokenize, build_vocab
from nas.errors import UserError

CORPUS = (
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox doesn't!\n"
    "Café, naïve and résumé are French words. Numbers: 3.14, 2024, 1,000,000 and #42.\n"
    "Unaffable people say un-affable things (sometimes) -- or don't they? [Yes] {no} <maybe> @home $5 ^_^ ~tilde~\n"
)

TEXTS = [
    "Hello, World! How are YOU today?",
    "The QUICK brown Fox... jumps! Over: the (lazy) dog's back; doesn't it?",
    "Café Naïve RÉSUMÉ Ångström Zürich façade coöperate",
    "Decomposed accents: Cafe\u0301 nai\u0308ve",
    "digits 3.14159 and 1,000,000 and 42nd and 7th and 0x1F",
    "unknownwordsxyz qqqq zzzzq fox-trot brownest jumpers",
    "emoji 🙂 and symbols © ® ™ € £ ¥ § ¶ • … — – “quoted” ‘single’ «guillemets»",
    "tabs\tand\nnewlines\r\nand  multiple   spaces\u00a0nbsp\u3000ideographic",
    "control\x00chars\x07here\ufffd and zero\u200bwidth",
    "中文字 mixed with 日本語 and 한국어",
    "x" * 100 + " " + "y" * 101 + " " + "the" * 40,
    "punctuation!!!???...,,,;;;:::'''\"\"\"```~~~@@@###$$$%%%^^^&&&***((()))___+++===[[[]]]{{{}}}|||\\\\///<<<>>>",
    "",
    "   \t\n  ",
]


@pytest.fixture(scope="module")
def vocab() -> list[str]:
    """A vocabulary from CORPUS plus some hand-made subword pieces, so greedy longest-match has choices."""
    pieces = ["un", "##aff", "##able", "##s", "##est", "##ing", "jump", "##er", "q", "##q", "fox", "##trot", "e"]
    return list(dict.fromkeys(build_vocab(CORPUS, 200) + pieces))


@pytest.fixture(scope="module")
def embedded() -> str:
    return embedded_text()[0]


def _hf(vocab_file, lowercase: bool) -> BertTokenizer:
    # transformers 5 reads the file given as `vocab` (its `vocab_file` keyword is silently ignored there).
    return BertTokenizer(vocab=str(vocab_file), do_lower_case=lowercase)


# --- WordPieceTokenizer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lowercase", [True, False])
def test_tokens_and_ids_match_hf_bert_tokenizer(tmp_path, vocab, lowercase):
    mine = WordPieceTokenizer(vocab, lowercase=lowercase)
    path = mine.save(tmp_path / "vocab.txt")
    hf = _hf(path, lowercase)
    assert len(hf) == len(vocab)
    for text in [*TEXTS, CORPUS, CORPUS.upper()]:
        assert mine.tokenize(text) == hf.tokenize(text), text
        assert mine.encode(text) == hf(text, add_special_tokens=False)["input_ids"], text


def test_matches_hf_on_the_embedded_text_with_a_learned_vocabulary(tmp_path, embedded):
    mine = WordPieceTokenizer(build_vocab(embedded[:100_000], 1500))
    hf = _hf(mine.save(tmp_path / "vocab.txt"), True)
    # text the vocabulary was not learned from (real splits), and characters it never saw ([UNK]s)
    sample = embedded[100_000:160_000] + " Zürich ☃ snowman 🙂"
    tokens = mine.tokenize(sample)
    assert tokens == hf.tokenize(sample)
    assert "[UNK]" in tokens and any(t.startswith("##") for t in tokens)


def test_wordpiece_rules(vocab):
    tok = WordPieceTokenizer(vocab)
    assert WordPieceTokenizer([*SPECIAL_TOKENS, "un", "##aff", "##able"]).tokenize("unaffable") == [
        "un", "##aff", "##able"]
    assert tok.tokenize("unaffables") == ["unaffable", "##s"]  # longest match first
    assert tok.tokenize("x" * 100) == ["x"] + ["##x"] * 99
    assert tok.tokenize("x" * 101) == ["[UNK]"]
    assert tok.tokenize("fox🙂dog") == ["[UNK]"]  # one unmatched character makes the whole word [UNK]
    assert tok.tokenize("Don't!") == ["don", "'", "t", "!"]
    assert tok.tokenize("CAFÉ") == ["cafe"]
    assert WordPieceTokenizer(vocab, lowercase=False).tokenize("CAFÉ")[0] != "cafe"
    # A literal special token in the text is ordinary text, so an unlabeled corpus cannot inject one.
    assert tok.tokenize("[MASK]") == ["[", "m", "##a", "##s", "##k", "]"]


def test_special_ids_length_and_vocab(vocab):
    tok = WordPieceTokenizer(vocab)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert len(tok) == len(vocab) and tok.vocab == tuple(vocab)
    shuffled = ["a", "[MASK]", "b", "[SEP]", "[CLS]", "[UNK]", "[PAD]"]
    tok = WordPieceTokenizer(shuffled)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (6, 5, 4, 3, 1)


def test_a_vocabulary_without_a_special_token_is_a_user_error():
    with pytest.raises(UserError, match=r"\[MASK\]"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])


def test_save_and_from_file_round_trip_and_fingerprint(tmp_path, vocab):
    tok = WordPieceTokenizer(vocab)
    path = tok.save(tmp_path / "sub" / "vocab.txt")
    assert path.read_text(encoding="utf-8").split("\n") == [*vocab, ""]
    again = WordPieceTokenizer.from_file(path)
    assert again.vocab == tok.vocab and again.fingerprint() == tok.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", tok.fingerprint())
    assert WordPieceTokenizer.from_file(path, lowercase=False).fingerprint() != tok.fingerprint()
    assert WordPieceTokenizer([*vocab, "extra"]).fingerprint() != tok.fingerprint()


def test_from_file_keeps_inner_whitespace_and_rejects_a_missing_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n a \n\n", encoding="utf-8")
    assert WordPieceTokenizer.from_file(path).vocab == (*SPECIAL_TOKENS, " a ", "")
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "nope.txt"))):
        WordPieceTokenizer.from_file(tmp_path / "nope.txt")


# --- build_vocab --------------------------------------------------------------------------------------------------


def test_build_vocab_covers_its_corpus_and_is_deterministic(embedded):
    vocab = build_vocab(embedded, 3000)
    assert vocab == build_vocab(embedded, 3000)
    assert len(vocab) == 3000 and len(set(vocab)) == 3000
    tok = WordPieceTokenizer(vocab)
    ids = tok.encode(embedded)
    assert len(ids) > 50_000 and tok.unk_id not in ids
    assert vocab[:5] == list(SPECIAL_TOKENS)


def test_build_vocab_layout_and_frequency_order():
    text = "b a b c c c, dd dd ee ee ff"
    vocab = build_vocab(text, 100)
    chars = [",", "a", "b", "c", "d", "e", "f"]
    assert vocab == [*SPECIAL_TOKENS, *chars, *("##" + c for c in chars), "dd", "ee", "ff"]
    # words by count, ties alphabetically; single characters are already in
    assert build_vocab(text, 5 + 14 + 1) == vocab[:-2]
    cased = build_vocab("Zebra zebra ZEBRA", 100, lowercase=False)
    assert cased[5:15] == ["A", "B", "E", "R", "Z", "a", "b", "e", "r", "z"]
    assert cased[25:] == ["ZEBRA", "Zebra", "zebra"]


def test_build_vocab_keeps_every_character_even_beyond_size():
    vocab = build_vocab("abcdefghij", 6)
    assert len(vocab) == 5 + 20
    assert WordPieceTokenizer(vocab).tokenize("jihgfedcba") == ["j", *("##" + c for c in "ihgfedcba")]


def test_build_vocab_rejects_a_tiny_size():
    with pytest.raises(UserError, match="5"):
        build_vocab("some text", 5)


def test_basic_tokenize_splits_punctuation_and_cjk():
    assert basic_tokenize("Hi,there!中文 a\tb") == ["hi", ",", "there", "!", "中", "文", "a", "b"]


# --- read_text ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"  \n\t \r\n ", "whitespace"),
        (b"text\x00with a NUL", "NUL"),
        (b"caf\xe9 latin-1", "UTF-8"),
    ],
    ids=["empty", "whitespace", "nul", "invalid-utf8"],
)
def test_read_text_rejects_bad_files(tmp_path, content, words):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=words) as err:
        read_text(path)
    assert str(path) in str(err.value)


def test_read_text_rejects_a_missing_path_and_folders_without_text(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(UserError, match="does not exist") as err:
        read_text(missing)
    assert str(missing) in str(err.value)
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(UserError, match="no text files") as err:
        read_text(folder)
    assert str(folder) in str(err.value)
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / ".hidden.txt").write_text("secret")
    (folder / ".git").mkdir()
    (folder / ".git" / "notes.txt").write_text("internal")
    with pytest.raises(UserError, match="no text files"):
        read_text(folder)
    (folder / "blank.txt").write_text(" \n")
    with pytest.raises(UserError, match="empty") as err:
        read_text(folder)
    assert str(folder) in str(err.value)


def test_read_text_names_the_binary_file_inside_a_folder(tmp_path):
    (tmp_path / "a.txt").write_text("fine")
    (tmp_path / "b").write_bytes(b"\x7fELF\x00\x00")
    with pytest.raises(UserError, match="NUL") as err:
        read_text(tmp_path)
    assert str(tmp_path / "b") in str(err.value)


def test_read_text_folder_order_and_selection(tmp_path):
    files = {
        "b.txt": "B",
        "a.md": "A",
        "c/z.rst": "CZ",
        "c/a.text": "CA",
        "c-d.TXT": "CD",
        "README": "R",
        "notes.py": "skipped: suffix",
        "data.json": "skipped: suffix",
        ".hidden.txt": "skipped: hidden",
        ".cache/x.txt": "skipped: hidden folder",
        "c/.y.txt": "skipped: hidden",
    }
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content, encoding="utf-8")
    # relative paths in component order: README, a.md, b.txt, c/a.text, c/z.rst, c-d.TXT
    assert read_text(tmp_path) == "\n\n".join(["R", "A", "B", "CA", "CZ", "CD"])


def test_read_text_reads_a_single_utf8_file(tmp_path):
    path = tmp_path / "notes"
    path.write_bytes("\ufeffNaïve café\n".encode())
    assert read_text(path) == "Naïve café\n"


# --- embedded text ------------------------------------------------------------------------------------------------


def test_embedded_text_is_long_english_prose(embedded):
    text, description = embedded_text()
    assert text == embedded
    assert len(text) > 300_000 and "\n" not in description
    lowered = text.lower()
    for word in (" the ", " and ", " of ", " is ", " function ", " object "):
        assert lowered.count(word) > 100, word


def test_embedded_text_missing_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)
    with pytest.raises(UserError, match="--data FILE"):
        embedded_text()


# --- pack ---------------------------------------------------------------------------------------------------------


def test_pack_wraps_consecutive_chunks():
    ids = list(range(10, 33))  # 23 ids, chunks of 6 -> 3 sequences, 5 ids dropped
    seqs = pack(ids, 8, cls_id=2, sep_id=3)
    assert seqs.shape == (3, 8) and seqs.dtype == torch.long
    assert (seqs[:, 0] == 2).all() and (seqs[:, -1] == 3).all()
    assert seqs[:, 1:-1].reshape(-1).tolist() == ids[:18]
    assert torch.equal(pack(torch.tensor(ids), 8, 2, 3), seqs)


def test_pack_of_a_real_corpus_keeps_its_ids_in_order(vocab):
    tok = WordPieceTokenizer(vocab)
    ids = tok.encode(CORPUS * 3)
    seqs = pack(ids, 16, tok.cls_id, tok.sep_id)
    assert len(seqs) == len(ids) // 14
    assert seqs[:, 1:-1].reshape(-1).tolist() == ids[: len(seqs) * 14]


def test_pack_needs_two_sequences():
    assert len(pack(list(range(12)), 8, 0, 1)) == 2
    with pytest.raises(UserError, match=r"11 tokens .* at least 12"):
        pack(list(range(11)), 8, 0, 1)


# --- load_text, split, check_vocab --------------------------------------------------------------------------------


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS * 20, encoding="utf-8")
    return path


def test_load_text_caches_the_packed_tokens(tmp_path, corpus_file, vocab, monkeypatch):
    tok = WordPieceTokenizer(vocab)
    cache = tmp_path / "cache"
    first = load_text(corpus_file, tok, 16, 0.2, 0, cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and re.fullmatch(r"tokens-[0-9a-f]{16}\.pt", files[0].name)
    stored = torch.load(files[0], weights_only=True)
    assert torch.equal(stored["sequences"], pack(tok.encode(CORPUS * 20), 16, tok.cls_id, tok.sep_id))

    def refuse(text):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(tok, "encode", refuse)
    second = load_text(corpus_file, tok, 16, 0.2, 0, cache)
    assert torch.equal(first.train, second.train) and torch.equal(first.valid, second.valid)
    assert first.info() == second.info()
    with pytest.raises(AssertionError, match="tokenized again"):  # another seq_len is another key
        load_text(corpus_file, tok, 12, 0.2, 0, cache)
    monkeypatch.undo()
    corpus_file.write_text(CORPUS * 21, encoding="utf-8")  # other text, other key
    load_text(corpus_file, tok, 16, 0.2, 0, cache)
    assert len(list(cache.glob("tokens-*.pt"))) == 2


def test_load_text_rebuilds_an_unreadable_cache(tmp_path, corpus_file, vocab):
    tok = WordPieceTokenizer(vocab)
    first = load_text(corpus_file, tok, 16, 0.2, 0, tmp_path)
    (cache,) = tmp_path.glob("tokens-*.pt")
    cache.write_bytes(b"not a torch file")
    again = load_text(corpus_file, tok, 16, 0.2, 0, tmp_path)
    assert torch.equal(first.train, again.train)
    assert torch.load(cache, weights_only=True)["tokens"] == first.tokens


def test_load_text_metadata(corpus_file, vocab):
    tok = WordPieceTokenizer(vocab)
    data = load_text(str(corpus_file), tok, 16, 0.1, 3, None)
    assert isinstance(data, TextData)
    info = data.info()
    assert info["source"] == str(corpus_file) and info["characters"] == len(CORPUS * 20)
    assert info["tokens"] == len(tok.encode(CORPUS * 20)) and info["seq_len"] == 16
    assert info["train_sequences"] + info["valid_sequences"] == info["tokens"] // 14
    assert info["tokenizer_fingerprint"] == tok.fingerprint() and len(info["text_sha256"]) == 64


def test_load_text_embedded(vocab, embedded):
    tok = WordPieceTokenizer(build_vocab(embedded, 2000))
    data = load_text(None, tok, 128, 0.05, 0, None)
    assert data.source == textdata.EMBEDDED and data.characters == len(embedded)
    assert data.train.shape[1] == 128 and len(data.train) > 500 and tok.unk_id not in data.train


def test_split_is_seeded_disjoint_and_sized():
    seqs = torch.arange(100).view(50, 2)
    train, valid = split(seqs, 0.2, 7)
    assert (len(train), len(valid)) == (40, 10)
    rows = train[:, 0].tolist() + valid[:, 0].tolist()
    assert sorted(rows) == list(range(0, 100, 2))  # disjoint and complete
    again = split(seqs, 0.2, 7)
    assert torch.equal(again[0], train) and torch.equal(again[1], valid)
    assert not torch.equal(split(seqs, 0.2, 8)[1], valid)
    assert len(split(seqs, 0.001, 0)[1]) == 1  # a positive fraction holds out at least one
    train0, valid0 = split(seqs, 0.0, 0)
    assert torch.equal(train0, seqs) and valid0.shape == (0, 2)


def test_split_must_leave_training_sequences():
    seqs = torch.zeros(2, 4, dtype=torch.long)
    assert [len(part) for part in split(seqs, 0.5, 0)] == [1, 1]
    with pytest.raises(UserError, match="none to train"):
        split(seqs, 0.9, 0)
    with pytest.raises(UserError, match="below 1"):
        split(seqs, 1.0, 0)


def test_check_vocab(vocab):
    tok = WordPieceTokenizer(vocab)
    check_vocab(tok, len(vocab), "teacher/vocab.txt")
    with pytest.raises(UserError, match=rf"teacher/vocab.txt has {len(vocab)} tokens .* 30,522 rows"):
        check_vocab(tok, 30522, "teacher/vocab.txt")

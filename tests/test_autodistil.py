"""AutoDistil (specs/ALGORITHMS.md §6): the Transformer space's sub-spaces and slicing, the sandwich of students and
its own generator, the relation losses, the distillation trainer (it learns; resume is exact) and `nas search
--space transformer --strategy autodistil` end to end, with its export and its one-sentence errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import strategies
from nas import checkpoint
from nas.cli import main
from searchspaces.transformer import BERT_BASE, SUBSPACES, Teacher, TransformerSpace, layer_indices
from supernets.transformer import ElasticBert, EncoderOutput, relation_loss, relations

SMALL = Teacher(layers=4, hidden=48, heads=4, head_size=12, intermediate=192, vocab_size=60, max_positions=32)
# A tiny, fast text search: a 4-layer teacher of hidden 48 trained for a few steps, sub-space tiny only.
TINY_RUN = ["search", "--space", "transformer", "--strategy", "autodistil", "--epochs", "2", "--quiet",
            "--set", "strategy.subspaces=tiny", "--set", "strategy.teacher_layers=4", "--set",
            "strategy.teacher_hidden=48", "--set", "strategy.teacher_heads=4", "--set", "strategy.teacher_head_size=12",
            "--set", "strategy.teacher_ffn=192",
            "--set", "strategy.teacher_steps=20", "--set", "strategy.vocab_size=300", "--set", "strategy.seq_len=32",
            "--set", "strategy.eval_sequences=32", "--set", "search.budget=6", "--set", "train.batch_size=16"]


def _text_file(tmp_path: Path, words: int = 6000) -> Path:
    rng = np.random.default_rng(0)
    vocab = "the a of to and in is it that was for on are with as his they be at one have this from".split()
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(rng.choice(vocab, size=words)) + ".\n")
    return path


# --- the space -------------------------------------------------------------------------------------------------
def test_bert_base_sub_spaces_are_the_reference_yamls():
    """§6.2's table: Base, Small, Tiny with 256 students each, and K = 1 with 13,824."""
    space = TransformerSpace()
    table = {"base": ((9, 10, 11, 12), (9, 10, 11, 12), (544, 576, 608, 640), (2.5, 3.0, 3.5, 4.0)),
             "small": ((9, 10, 11, 12), (7, 8, 9, 10), (256, 288, 320, 352), (2.5, 3.0, 3.5, 4.0)),
             "tiny": ((4, 5, 6, 7), (7, 8, 9, 10), (128, 160, 192, 224), (2.0, 2.5, 3.0, 3.5))}
    for name, values in table.items():
        sub = space.subspace(name)
        assert tuple(tuple(a) for a in sub.allowed) == values
        assert sub.size() == 256
    full = space.subspace("full")
    assert full.size() == 13_824
    assert tuple(full.allowed[2]) == tuple(range(64, 769, 64))


def test_depth_keeps_the_evenly_spaced_teacher_layers():
    assert layer_indices(9) == (0, 1, 2, 4, 5, 6, 8, 9, 10)
    assert layer_indices(10) == (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)
    assert layer_indices(12) == tuple(range(12))


def test_params_equal_hugging_face_counts_where_a_bertmodel_holds_the_student():
    """HF's BertModel fixes head size = hidden / heads; where A * 64 == H our real-shape count must equal its
    count (the reference formula, which assumes a Q/K/V width of H * A / 12, gives another number there)."""
    import transformers

    space = TransformerSpace()
    for text in ("L2-A9-H576-R3.0", "L1-A10-H640-R2.5", "L3-A4-H256-R4.0"):
        arch = space.parse(text)
        layers, heads, hidden, ratio = arch.choices
        config = transformers.BertConfig(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
                                         intermediate_size=int(hidden * ratio))
        hf = sum(p.numel() for p in transformers.BertModel(config).parameters())
        assert space.params(arch) == hf, text
        reference = space.params(arch) - layers * 4 * (hidden * heads * 64 - hidden * hidden * heads // 12)
        assert reference != hf or hidden == 768


def test_a_smaller_teacher_keeps_the_sub_spaces_as_fractions():
    space = TransformerSpace(teacher=Teacher(hidden=96, head_size=8, intermediate=384, vocab_size=100))
    assert tuple(space.subspace("base").allowed[2]) == (68, 72, 76, 80)  # 544/768 .. 640/768 of 96
    assert tuple(space.subspace("tiny").allowed[2]) == (16, 20, 24, 28)
    assert space.teacher_arch().to_string() == "L12-A12-H96-R4.0"


# --- the strategy ----------------------------------------------------------------------------------------------
def _strategy(space, **opts):
    strategy = strategies.get("autodistil", **opts)
    strategy.setup(None, space, seed=3)
    return strategy


def test_students_are_the_sandwich_drawn_from_their_own_generator():
    sub = TransformerSpace().subspace("small")
    strategy = _strategy(sub)
    np.random.seed(11)
    torch.manual_seed(11)
    before = (np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    first = strategy.students(5)
    assert first[0] == sub.largest() and first[1] == sub.smallest() and len(set(first)) == 4
    assert strategy.students(5) == first  # (seed, step) alone decide
    assert any(strategy.students(step) != first for step in range(6, 12))
    assert _strategy(sub).students(5) == first
    np.testing.assert_array_equal(np.random.get_state()[1], before[0])
    assert torch.equal(torch.get_rng_state(), before[1])  # no global generator touched


def test_autodistil_refuses_image_spaces_and_unknown_sub_spaces(tmp_path):
    import searchspaces

    with pytest.raises(ValueError, match="transformer"):
        strategies.get("autodistil").check_space(searchspaces.get("nb201"))
    with pytest.raises(ValueError, match="unknown sub-space 'huge'"):
        strategies.get("autodistil", subspaces="base,huge")
    mine = tmp_path / "mine.yaml"
    mine.write_text("mini: {layers: [1, 2], heads: [2], hidden: [16, 24], mlp_ratio: [2.0]}\n")
    strategy = strategies.get("autodistil", subspaces="mini,tiny", subspace_file=str(mine))
    subs = strategy.subspaces(TransformerSpace(teacher=SMALL))
    assert subs["mini"].size() == 4 and list(subs) == ["mini", "tiny"]


# --- the losses ------------------------------------------------------------------------------------------------
def _outputs(seed: int, width: int = 48, batch: int = 2, seq: int = 6) -> EncoderOutput:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, seq, width, generator=g) for _ in range(3))
    return EncoderOutput(q, k, v, hidden=torch.randn(batch, seq, 8, generator=g), pooled=torch.zeros(batch, 8))


def test_relation_losses_vanish_only_on_the_teachers_relations():
    teacher, student = _outputs(0), _outputs(1)
    for form in ("mse_scores", "kl_softmax"):
        assert relation_loss(teacher, teacher, form=form).item() == pytest.approx(0.0, abs=1e-6)
        assert relation_loss(student, teacher, form=form).item() > 0.01
    # A width the 12 relation heads do not divide is truncated to 12 * floor(width / 12) dims.
    odd = _outputs(2, width=50)
    assert relations(odd.query, None).shape == (2, 12, 6, 6)
    trimmed = EncoderOutput(*(t[..., :48] for t in (odd.query, odd.key, odd.value)), odd.hidden, odd.pooled)
    assert torch.equal(relation_loss(odd, teacher), relation_loss(trimmed, teacher))


def test_mse_relations_of_different_widths_compare_head_by_head():
    """A student of attention width 48 against a teacher of width 96: 12 relation heads of 4 and of 8 dims."""
    student, teacher = _outputs(3, width=48), _outputs(4, width=96)
    loss = relation_loss(student, teacher)
    rs, rt = relations(student.key, None), relations(teacher.key, None)
    assert rs.shape == rt.shape
    assert loss.item() > torch.nn.functional.mse_loss(rs, rt).item()


# --- end to end ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("autodistil")
    corpus = _text_file(root)
    out = root / "run"
    assert main([*TINY_RUN, "--data", str(corpus), "--out", str(out)]) == 0
    return out


def test_a_text_search_trains_superlms_that_learn_and_exports_its_student(tiny_run):
    rows = [r for r in _csv(tiny_run / "metrics.csv")]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    first, last = rows[0], rows[-1]
    assert float(last["heldout_smallest"]) < float(first["heldout_smallest"])  # the smallest student learns
    info = json.loads((tiny_run / "arch.json").read_text())
    assert info["subspace"] == "tiny" and info["evaluated"] == 6
    from supernets.bert_student import BertStudent  # noqa: F401 - the documented module

    student = json.loads((tiny_run / "student" / "student.json").read_text())
    assert student["arch"] == info["arch"]
    state = checkpoint.load(tiny_run / "student" / "model.pt")
    assert sum(v.numel() for v in state.values()) == info["params"]
    assert (tiny_run / "teacher" / "config.json").is_file() and (tiny_run / "plots" / "distillation.png").is_file()
    config = (tiny_run / "config.yaml").read_text()
    assert "autodistil" in config and "relation_loss: mse_scores" in config


def test_the_search_scores_students_by_their_held_out_loss(tiny_run):
    from nas.hfbert import load_teacher

    search = json.loads((tiny_run / "search.json").read_text())["picks"][0]
    losses = [h["heldout_loss"] for h in search["history"]]
    assert search["heldout_loss"] == min(losses) and len(set(losses)) > 1
    teacher, _ = load_teacher(tiny_run / "teacher")
    assert teacher.teacher.hidden == 48 and teacher.teacher.layers == 4


def test_a_text_search_interrupted_after_an_epoch_resumes_bit_exact(tmp_path, interrupt_after):
    corpus = _text_file(tmp_path)
    args = [*TINY_RUN, "--data", str(corpus), "--set", "search.method=none"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*args, "--out", str(full)]) == 0
    interrupt_after(2)  # rows: epoch 0 (before training), epoch 1
    assert main([*args, "--out", str(cut)]) == 130
    interrupt_after.disarm()
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0
    a = checkpoint.load(full / "superlms" / "tiny" / "checkpoints" / "last.pt")
    b = checkpoint.load(cut / "superlms" / "tiny" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_bad_text_and_impossible_limits_stop_with_one_sentence(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    corpus = _text_file(tmp_path)
    for args, needle in (([*TINY_RUN, "--data", str(empty)], "empty"),
                         ([*TINY_RUN, "--data", str(binary)], "binary"),
                         ([*TINY_RUN, "--data", str(corpus), "--max-params", "10"], "excludes every student")):
        assert main([*args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
        assert not (tmp_path / "out").exists()  # refused before a run directory was created


def test_a_teacher_whose_vocabulary_does_not_match_is_refused(tmp_path, capsys):
    from nas.hfbert import export_teacher_dir

    net = ElasticBert(SMALL)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(55)]) + "\n")
    export_teacher_dir(tmp_path / "teacher", net, vocab, lowercase=True)
    (tmp_path / "teacher" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nshort\n")
    code = main([*TINY_RUN, "--data", str(_text_file(tmp_path)), "--teacher", str(tmp_path / "teacher"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "vocab" in err[0], err


def test_image_strategies_and_datasets_do_not_fit_the_text_space(capsys):
    assert main(["search", "--space", "transformer", "--strategy", "uniform", "--quiet"]) == 2
    assert "strategies that fit: autodistil" in capsys.readouterr().err
    assert main(["search", "--space", "transformer", "--dataset", "digits", "--quiet"]) == 2
    assert "accepted: text" in capsys.readouterr().err


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_bert_base_teacher_shape_is_the_default():
    assert BERT_BASE.layers == 12 and BERT_BASE.hidden == 768 and set(SUBSPACES) == {"base", "small", "tiny", "full"}


def test_analyze_students_ranks_inherited_against_stand_alone_losses(tiny_run):
    assert main(["analyze", "students", str(tiny_run), "--students", "4", "--quiet"]) == 0
    result = json.loads((tiny_run / "analysis" / "students.json").read_text())
    rows = result["rows"]
    assert len(rows) == 4 and len({r["arch"] for r in rows}) == 4
    import nasbench

    tau = nasbench.kendall_tau([-r["inherited_loss"] for r in rows], [-r["standalone_loss"] for r in rows])
    assert result["all"]["kendall_tau"]["value"] == pytest.approx(tau)
    assert (tiny_run / "analysis" / "students.png").is_file()


def test_nas_teacher_train_writes_a_checkpoint_bert_loads(tmp_path):
    import transformers

    out = tmp_path / "teacher"
    assert main(["teacher", "train", "--data", str(_text_file(tmp_path)), "--out", str(out), "--layers", "2",
                 "--hidden", "32", "--heads", "4", "--head-size", "8", "--ffn", "64", "--steps", "30",
                 "--vocab-size", "200", "--seq-len", "16", "--quiet"]) == 0
    model = transformers.BertForMaskedLM.from_pretrained(out).eval()
    from nas.hfbert import load_teacher

    net, _ = load_teacher(out)
    ids = torch.randint(len((out / "vocab.txt").read_text().splitlines()), (2, 12))
    with torch.no_grad():
        ours = net(ids, net.largest()).hidden
        theirs = model.bert(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert main(["teacher", "train", "--out", str(out), "--quiet"]) == 2  # never overwrites

"""Hugging Face BERT checkpoints (nas.hfbert) and plain students (supernets.bert_student), checked against
`transformers` itself: parameter counts, reproduction of BertModel's outputs, export round trips, read errors."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers

from nas import hfbert
from nas.errors import UserError
from searchspaces.transformer import BERT_BASE, Teacher, TransformerSpace
from supernets.bert_student import BertStudent, extract_student, hf_compatible, hf_incompatibility, student_config
from supernets.transformer import ElasticBert

transformers.logging.set_verbosity_error()

SMALL_HF = {"hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 12, "intermediate_size": 384,
            "vocab_size": 500, "max_position_embeddings": 64}
SMALL = Teacher(layers=3, hidden=96, heads=12, head_size=8, intermediate=384, vocab_size=500, max_positions=64)
DEEP = Teacher(layers=12, hidden=96, heads=12, head_size=8, intermediate=384, vocab_size=500, max_positions=64)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`module` with noise on every parameter (LayerNorms and biases too), so that no weight is trivially 0 or 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return module.eval()


def write_vocab(path: Path, size: int) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("".join(f"{t}\n" for t in specials + [f"w{i}" for i in range(size - len(specials))]))
    return path


def hf_dir(folder: Path, model: transformers.PreTrainedModel, pickled: bool = False) -> Path:
    """`model` saved as a checkpoint directory (safetensors by save_pretrained, or a torch.save'd state dict)."""
    if pickled:
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    write_vocab(folder / "vocab.txt", model.config.vocab_size)
    return folder


def batch(vocab_size: int, seq: int = 16, size: int = 2, seed: int = 1):
    """Token ids, an attention mask with padding, and token type ids with both types."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab_size, (size, seq), generator=generator)
    mask = torch.ones_like(ids)
    mask[-1, seq * 3 // 4:] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2:] = 1
    return ids, mask, types


def hf_outputs(model: transformers.BertModel, ids, mask, types) -> tuple[object, dict[str, torch.Tensor]]:
    """BertModel's outputs and what its last layer's query/key/value linear modules produced."""
    captured: dict[str, torch.Tensor] = {}
    attention = model.encoder.layer[-1].attention.self
    hooks = [getattr(attention, name).register_forward_hook(
        lambda module, inputs, output, name=name: captured.__setitem__(name, output))
        for name in ("query", "key", "value")]
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    for hook in hooks:
        hook.remove()
    return out, captured


def assert_reproduces(net: ElasticBert, model: transformers.BertModel, ids, mask, types, pooler: bool = True) -> None:
    """The largest student of `net` gives BertModel's last hidden state, pooled output and last-layer Q, K, V."""
    theirs, qkv = hf_outputs(model, ids, mask, types)
    with torch.no_grad():
        ours = net(ids, net.largest(), attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(ours.hidden, theirs.last_hidden_state, atol=1e-5, rtol=0)
    if pooler:
        torch.testing.assert_close(ours.pooled, theirs.pooler_output, atol=1e-5, rtol=0)
    for name in ("query", "key", "value"):
        torch.testing.assert_close(getattr(ours, name), qkv[name], atol=1e-5, rtol=0)


def random_bert(seed: int = 0, **overrides) -> transformers.BertModel:
    torch.manual_seed(seed)
    return perturbed(transformers.BertModel(transformers.BertConfig(**{**SMALL_HF, **overrides})), seed)


@pytest.fixture(scope="module")
def bert_base() -> transformers.BertModel:
    """One `BertModel(BertConfig())` for the module (building it takes seconds)."""
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig()).eval()


@pytest.fixture()
def small_dir(tmp_path) -> Path:
    """A small checkpoint directory written by this package (the base of the read-error cases)."""
    vocab = write_vocab(tmp_path / "vocab.txt", SMALL.vocab_size)
    return hfbert.export_teacher_dir(tmp_path / "ckpt", perturbed(ElasticBert(SMALL)), vocab)


# --- counts -----------------------------------------------------------------------------------------------------
def test_bert_base_counts_match_hugging_face(bert_base):
    net = ElasticBert(BERT_BASE)
    space = TransformerSpace()
    assert count(bert_base) == 109_482_240 == space.params(space.teacher_arch(), BERT_BASE) == count(net)
    embeddings = sum(count(getattr(net, name)) for name in ("word_embeddings", "position_embeddings",
                                                            "token_type_embeddings", "embedding_norm"))
    assert count(bert_base.embeddings) == 23_837_184 == embeddings
    assert count(bert_base.encoder) == 85_054_464 == count(net.layers)
    assert count(bert_base.pooler) == count(net.pooler)
    assert set(hfbert.to_hf_state(net.state_dict())) == set(bert_base.state_dict()) - {"embeddings.position_ids"}


# --- students -----------------------------------------------------------------------------------------------------
STUDENTS = ("L12-A12-H96-R4.0", "L9-A7-H64-R2.5", "L5-A12-H40-R3.0", "L1-A1-H8-R0.5", "L9-A8-H64-R2.0")


@pytest.mark.parametrize("text", STUDENTS)
def test_an_extracted_student_computes_what_the_supernet_does(text):
    torch.manual_seed(0)
    net = perturbed(ElasticBert(DEEP))
    arch = net.space.parse(text)
    student = extract_student(net, arch)
    assert count(student) == net.space.params(arch) == TransformerSpace().params(arch, DEEP)
    ids, mask, types = batch(DEEP.vocab_size)
    with torch.no_grad():
        theirs, ours = net(ids, arch, mask, types), student(ids, mask, types)
    for name in ("query", "key", "value", "hidden", "pooled"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), atol=1e-6, rtol=0)


def test_an_extracted_student_shares_no_storage_and_keeps_the_kept_layers():
    net = perturbed(ElasticBert(DEEP))
    arch = net.space.parse("L9-A7-H64-R2.5")
    student = extract_student(net, arch)
    theirs = {p.untyped_storage().data_ptr() for p in net.parameters()}
    assert not theirs & {p.untyped_storage().data_ptr() for p in student.parameters()}
    config = student_config(arch, DEEP)
    assert config["teacher_layers"] == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert (config["hidden"], config["attention"], config["ffn"], config["heads"]) == (64, 56, 160, 7)
    torch.testing.assert_close(student.layers[3].query.weight, net.layers[4].query.weight[:56, :64])
    before = student.layers[0].ffn_output.weight.clone()
    with torch.no_grad():
        net.layers[0].ffn_output.weight.add_(1.0)
    assert torch.equal(student.layers[0].ffn_output.weight, before)
    assert set(student.state_dict()) <= set(net.state_dict())  # ElasticBert's names


def test_a_student_config_is_json_and_rebuilds_the_student():
    net = perturbed(ElasticBert(DEEP))
    arch = net.space.parse("L5-A12-H40-R3.0")
    config = json.loads(json.dumps(student_config(arch, DEEP)))
    rebuilt = BertStudent.from_config(config)
    rebuilt.load_state_dict(extract_student(net, arch).state_dict())
    ids, mask, types = batch(DEEP.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(ids, mask, types).hidden, net(ids, arch, mask, types).hidden,
                                   atol=1e-6, rtol=0)
    assert config["eps"] == DEEP.eps and config["vocab_size"] == 500 and config["head_size"] == 8


def test_hugging_face_holds_a_student_only_when_heads_times_head_size_is_hidden():
    space = TransformerSpace(teacher=SMALL)
    good, bad = space.parse("L2-A8-H64-R2.0"), space.parse("L2-A12-H64-R2.0")
    assert hf_compatible(good, SMALL) and hf_incompatibility(good, SMALL) is None
    why = hf_incompatibility(bad, SMALL)
    assert not hf_compatible(bad, SMALL) and "96" in why and "64" in why and why.count(". ") == 0
    assert hf_compatible(TransformerSpace().teacher_arch(), BERT_BASE)
    assert not hf_compatible(TransformerSpace().parse("L12-A9-H544-R3.0"), BERT_BASE)


# --- reproduction of Hugging Face's BertModel --------------------------------------------------------------------
@pytest.mark.parametrize("pickled", [False, True], ids=["safetensors", "pytorch_model.bin"])
def test_a_loaded_teacher_reproduces_bert_model(tmp_path, pickled):
    model = random_bert()
    net, ckpt = hfbert.load_teacher(hf_dir(tmp_path, model, pickled))
    assert ckpt.teacher == SMALL and not ckpt.missing_pooler and ckpt.lowercase
    assert ckpt.weights_file.name == ("pytorch_model.bin" if pickled else "model.safetensors")
    ids, mask, types = batch(SMALL.vocab_size)
    assert_reproduces(net, model, ids, mask, types)
    assert_reproduces(net, model, ids, mask, torch.zeros_like(types))


def test_a_masked_lm_checkpoint_loads_without_its_bert_prefix_and_pooler(tmp_path):
    torch.manual_seed(0)
    model = perturbed(transformers.BertForMaskedLM(transformers.BertConfig(**SMALL_HF)))
    net, ckpt = hfbert.load_teacher(hf_dir(tmp_path, model))
    assert ckpt.missing_pooler and "cls.predictions.transform.dense.weight" in ckpt.head_state
    ids, mask, types = batch(SMALL.vocab_size)
    assert_reproduces(net, model.bert, ids, mask, types, pooler=False)


def test_old_layer_norm_names_and_other_heads_are_understood(tmp_path):
    model = random_bert()
    state = {f"bert.{k}".replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in model.state_dict().items()}
    state["classifier.weight"] = torch.zeros(2, 96)
    model.config.save_pretrained(tmp_path)
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    write_vocab(tmp_path / "vocab.txt", 500)
    net, ckpt = hfbert.load_teacher(tmp_path)
    assert "classifier.weight" in ckpt.ignored
    ids, mask, types = batch(SMALL.vocab_size)
    assert_reproduces(net, model, ids, mask, types)


@pytest.mark.slow
def test_a_bert_base_teacher_reproduces_bert_model(tmp_path, bert_base):
    net, ckpt = hfbert.load_teacher(hf_dir(tmp_path, bert_base))
    assert ckpt.teacher == BERT_BASE and ckpt.eps == 1e-12
    ids, mask, types = batch(BERT_BASE.vocab_size, seq=32)
    assert_reproduces(net, bert_base, ids, mask, types)


# --- safetensors ------------------------------------------------------------------------------------------------
def test_safetensors_dtypes_are_read_and_what_is_written_is_standard(tmp_path):
    tensors = {"f32": torch.randn(3, 4), "f16": torch.randn(5).half(), "bf16": torch.randn(2, 3).bfloat16(),
               "i64": torch.arange(7), "empty": torch.zeros(0, 3)}
    safetensors.torch.save_file(tensors, tmp_path / "theirs.safetensors", metadata={"format": "pt"})
    read = hfbert.read_safetensors(tmp_path / "theirs.safetensors")
    assert read["f16"].dtype == read["bf16"].dtype == torch.float32 and read["i64"].dtype == torch.int64
    for name, tensor in tensors.items():
        torch.testing.assert_close(read[name], tensor.float() if tensor.is_floating_point() else tensor)
    hfbert.write_safetensors(tmp_path / "ours.safetensors", tensors)
    raw = (tmp_path / "ours.safetensors").read_bytes()
    assert (8 + int.from_bytes(raw[:8], "little")) % 8 == 0
    back = safetensors.torch.load_file(tmp_path / "ours.safetensors")
    assert back["f16"].dtype == torch.float32 and back["i64"].dtype == torch.int64
    for name, tensor in tensors.items():
        torch.testing.assert_close(back[name], tensor.float() if tensor.is_floating_point() else tensor)
    swapped = hfbert._byteswap(torch.tensor([1.5, -2.0]))
    assert torch.equal(hfbert._byteswap(swapped), torch.tensor([1.5, -2.0]))
    assert hfbert._byteswap(torch.tensor([1], dtype=torch.int32)).item() == 1 << 24


# --- export -------------------------------------------------------------------------------------------------------
def test_an_exported_student_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    net = perturbed(ElasticBert(SMALL))
    arch = net.space.parse("L2-A8-H64-R2.0")
    vocab = write_vocab(tmp_path / "vocab.txt", SMALL.vocab_size)
    folder = hfbert.export_student_dir(tmp_path / "student", extract_student(net, arch), arch, SMALL, vocab,
                                       lowercase=False)
    model = transformers.BertModel.from_pretrained(folder).eval()
    assert (model.config.hidden_size, model.config.num_attention_heads, model.config.num_hidden_layers,
            model.config.intermediate_size) == (64, 8, 2, 128)
    ids, mask, types = batch(SMALL.vocab_size)
    theirs, qkv = hf_outputs(model, ids, mask, types)
    with torch.no_grad():
        ours = net(ids, arch, mask, types)
    torch.testing.assert_close(theirs.last_hidden_state, ours.hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.pooler_output, ours.pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(qkv["query"], ours.query, atol=1e-5, rtol=0)
    tokenizer = transformers.BertTokenizer.from_pretrained(folder)
    assert len(tokenizer) == SMALL.vocab_size and tokenizer.do_lower_case is False
    assert json.loads((folder / hfbert.STUDENT_JSON).read_text())["arch"] == "L2-A8-H64-R2.0"
    assert hfbert.read_bert_dir(folder).lowercase is False
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir left


def test_an_incompatible_student_is_refused(tmp_path):
    net = ElasticBert(SMALL)
    arch = net.space.parse("L2-A12-H64-R2.0")
    vocab = write_vocab(tmp_path / "vocab.txt", SMALL.vocab_size)
    with pytest.raises(UserError, match="Hugging Face BertModel needs them equal"):
        hfbert.export_student_dir(tmp_path / "student", extract_student(net, arch), arch, SMALL, vocab)
    assert not (tmp_path / "student").exists()


def test_an_exported_teacher_round_trips_and_its_mlm_head_loads(tmp_path):
    torch.manual_seed(0)
    net = perturbed(ElasticBert(SMALL, eps=1e-7))
    vocab = write_vocab(tmp_path / "vocab.txt", SMALL.vocab_size)
    head = {"cls.predictions.transform.dense.weight": torch.randn(96, 96),
            "cls.predictions.transform.dense.bias": torch.randn(96),
            "cls.predictions.transform.LayerNorm.weight": torch.randn(96),
            "cls.predictions.transform.LayerNorm.bias": torch.randn(96),
            "cls.predictions.bias": torch.randn(500)}
    folder = hfbert.export_teacher_dir(tmp_path / "teacher", net, vocab, mlm_head_state=head)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["layer_norm_eps"] == 1e-7
    loaded, ckpt = hfbert.load_teacher(folder)
    assert ckpt.eps == 1e-7 and loaded.embedding_norm.eps == 1e-7
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    assert all(torch.equal(ckpt.head_state[k], v) for k, v in head.items())
    mlm = transformers.BertForMaskedLM.from_pretrained(folder)
    dense = head["cls.predictions.transform.dense.weight"]
    torch.testing.assert_close(mlm.cls.predictions.transform.dense.weight, dense)
    torch.testing.assert_close(mlm.cls.predictions.decoder.weight, net.word_embeddings.weight)
    ids, mask, types = batch(SMALL.vocab_size)
    assert_reproduces(net, transformers.BertModel.from_pretrained(folder).eval(), ids, mask, types)


def test_writing_refuses_a_non_empty_directory_and_fills_an_empty_one(tmp_path, small_dir):
    net = ElasticBert(SMALL)
    with pytest.raises(UserError, match="not an empty directory") as error:
        hfbert.export_teacher_dir(small_dir, net, small_dir / "vocab.txt")
    assert str(small_dir) in str(error.value)
    (tmp_path / "empty").mkdir()
    hfbert.export_teacher_dir(tmp_path / "empty", net, small_dir / "vocab.txt")
    assert hfbert.read_bert_dir(tmp_path / "empty").teacher == SMALL
    with pytest.raises(UserError, match="vocabulary"):
        hfbert.export_teacher_dir(tmp_path / "other", net, tmp_path / "missing.txt")


# --- read errors ----------------------------------------------------------------------------------------------------
def _config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _weights(folder: Path, change) -> None:
    state = hfbert.read_safetensors(folder / "model.safetensors")
    change(state)
    hfbert.write_safetensors(folder / "model.safetensors", state)


def _replace_weights_with_pickle(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    torch.save({"weight": torch.zeros(1), "obj": Fraction(1, 3)}, folder / "pytorch_model.bin")  # not a weight


ERRORS = {
    "missing directory": (lambda d: d.rename(d.with_name("gone")), "is not a directory"),
    "a file": (lambda d: None, "is not a directory"),
    "no config": (lambda d: (d / "config.json").unlink(), "has no config.json"),
    "config not json": (lambda d: (d / "config.json").write_text("{not json"), "is not valid JSON"),
    "not bert": (lambda d: _config(d, model_type="gpt2", architectures=["GPT2Model"]), "accepted: BERT"),
    "hidden_act": (lambda d: _config(d, hidden_act="gelu_new"), "hidden_act 'gelu_new'"),
    "relative positions": (lambda d: _config(d, position_embedding_type="relative_key"), "position_embedding_type"),
    "bad dim": (lambda d: _config(d, hidden_size="96"), "hidden_size '96'"),
    "heads do not divide": (lambda d: _config(d, num_attention_heads=7), "the number of heads divides"),
    "no weights": (lambda d: (d / "model.safetensors").unlink(), "has no weights"),
    "corrupt safetensors": (lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 16), "not a valid safetensors"),
    "missing weight": (lambda d: _weights(d, lambda s: s.pop("encoder.layer.1.intermediate.dense.bias")),
                       "lacks the weight encoder.layer.1.intermediate.dense.bias"),
    "wrong shape": (lambda d: _weights(d, lambda s: s.__setitem__("encoder.layer.0.output.dense.weight",
                                                                  torch.zeros(96, 100))),
                    r"encoder.layer.0.output.dense.weight of shape \[96, 100\] but its config.json needs \[96, 384\]"),
    "foreign encoder weight": (lambda d: _weights(d, lambda s: s.__setitem__("encoder.layer.0.crossattention.w",
                                                                             torch.zeros(1))), "does not have"),
    "unpicklable bin": (_replace_weights_with_pickle, "cannot be loaded as plain tensors"),
    "no vocab": (lambda d: (d / "vocab.txt").unlink(), "has no vocab.txt"),
    "short vocab": (lambda d: (d / "vocab.txt").write_text("[PAD]\n[UNK]\n"),
                    "a vocabulary that does not match the teacher"),
    "tokenizer config": (lambda d: (d / "tokenizer_config.json").write_text("[1,"), "is not valid JSON"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_every_read_error_is_one_sentence_naming_the_path(tmp_path, small_dir, case):
    spoil, needle = ERRORS[case]
    spoil(small_dir)
    target = small_dir
    if case == "a file":
        target = small_dir / "config.json"
    with pytest.raises(UserError, match=needle) as error:
        hfbert.load_teacher(target)
    message = str(error.value)
    assert str(target) in message and "\n" not in message and message.count(". ") == 0, message

"""Hugging Face BERT checkpoint directories, read and written without the `transformers` package.

A directory holds `config.json` (a BertConfig), the weights (`model.safetensors`, else `pytorch_model.bin`, either
possibly sharded with an `.index.json`), `vocab.txt` and optionally `tokenizer_config.json` (`do_lower_case`).

- `read_bert_dir` maps the weights of a `BertModel`, or of a `BertForMaskedLM`/`BertForPreTraining` (the `bert.`
  prefix is dropped, old `LayerNorm.gamma/beta` names are renamed), onto `ElasticBert`'s names and checks every
  name and shape against the config; the `cls.*` heads are kept aside (`head_state`), buffers such as
  `position_ids` and other task heads are ignored, and a missing pooler is allowed (`missing_pooler`).
- `load_teacher` builds the `ElasticBert` that holds them; its largest student is the checkpoint's BertModel.
- `write_bert_dir` writes the reverse, atomically as a directory, so `BertModel.from_pretrained(dir)` and
  `BertTokenizer.from_pretrained(dir)` load what `export_teacher_dir` and `export_student_dir` export.

safetensors files are parsed and written here (an 8-byte little-endian header length, a JSON header of dtype,
shape and data offsets per tensor, raw little-endian data), so no pickle is ever run; `pytorch_model.bin` is read
with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from searchspaces import Arch
from searchspaces.transformer import Teacher, TransformerSpace
from supernets.bert_student import BertStudent, hf_incompatibility, student_config
from supernets.transformer import ElasticBert

from .errors import UserError

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
PICKLED = "pytorch_model.bin"
VOCAB = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
STUDENT_JSON = "supernas_student.json"
WEIGHT_FILES = (SAFETENSORS, f"{SAFETENSORS}.index.json", PICKLED, f"{PICKLED}.index.json")
ARCHITECTURES = ("BertModel", "BertForMaskedLM", "BertForPreTraining")

# safetensors dtype -> torch dtype (the ones a BERT checkpoint uses).
_DTYPES: dict[str, torch.dtype] = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                                   "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}

# --- names ------------------------------------------------------------------------------------------------------
# ElasticBert (and BertStudent) name -> Hugging Face BertModel name; per layer with `layers.{i}.<module>`.
_TOP = {"word_embeddings.weight": "embeddings.word_embeddings.weight",
        "position_embeddings.weight": "embeddings.position_embeddings.weight",
        "token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embedding_norm.weight": "embeddings.LayerNorm.weight", "embedding_norm.bias": "embeddings.LayerNorm.bias",
        "pooler.weight": "pooler.dense.weight", "pooler.bias": "pooler.dense.bias"}
_TOP_BACK = {theirs: ours for ours, theirs in _TOP.items()}
_LAYER = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
          "output": "attention.output.dense", "attention_norm": "attention.output.LayerNorm",
          "intermediate": "intermediate.dense", "ffn_output": "output.dense", "output_norm": "output.LayerNorm"}
_LAYER_BACK = {theirs: ours for ours, theirs in _LAYER.items()}
_ENCODER_ROOTS = ("embeddings.", "encoder.", "pooler.")  # a name under these must be one ElasticBert has
_POOLER = ("pooler.weight", "pooler.bias")


def to_hf_name(name: str) -> str:
    """`layers.3.query.weight` -> `encoder.layer.3.attention.self.query.weight` (ElasticBert/BertStudent -> HF)."""
    if name in _TOP:
        return _TOP[name]
    root, index, module, kind = name.split(".")
    if root != "layers" or module not in _LAYER:
        raise KeyError(f"{name!r} is not a parameter name of ElasticBert or BertStudent")
    return f"encoder.layer.{index}.{_LAYER[module]}.{kind}"


def from_hf_name(name: str) -> str | None:
    """The inverse of `to_hf_name` (on a name without the `bert.` prefix), or None where ElasticBert has no such
    tensor."""
    if name in _TOP_BACK:
        return _TOP_BACK[name]
    if not name.startswith("encoder.layer."):
        return None
    index, _, tail = name[len("encoder.layer."):].partition(".")
    module, _, kind = tail.rpartition(".")
    if not index.isdigit() or module not in _LAYER_BACK or kind not in ("weight", "bias"):
        return None
    return f"layers.{int(index)}.{_LAYER_BACK[module]}.{kind}"


def to_hf_state(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """An ElasticBert/BertStudent state dict in Hugging Face BertModel names (`prefix` "bert." for the encoder of a
    BertForMaskedLM)."""
    return {prefix + to_hf_name(name): tensor for name, tensor in state.items()}


def _normalise(name: str) -> str:
    """A checkpoint's tensor name as BertModel names it: no `bert.` prefix, LayerNorm `gamma`/`beta` (TF-era
    checkpoints) as `weight`/`bias`."""
    if name.startswith("bert."):
        name = name[len("bert."):]
    if ".LayerNorm." in name:
        name = name.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
    return name


# --- safetensors --------------------------------------------------------------------------------------------------
def _byteswap(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` with the bytes of every element reversed (little- <-> big-endian)."""
    if tensor.element_size() == 1:
        return tensor
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
    swapped = torch.from_numpy(tensor.view(as_int).numpy().byteswap())
    return swapped.view(tensor.dtype)


def _bad_safetensors(path: Path, why: str) -> UserError:
    return UserError(f"{path} is not a valid safetensors file ({why}); accepted: a file written by safetensors or "
                     "by save_pretrained")


def _header(path: Path, raw: bytearray) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and where its data starts."""
    if len(raw) < 8:
        raise _bad_safetensors(path, "shorter than its 8-byte header length")
    length = int.from_bytes(raw[:8], "little")
    if length > len(raw) - 8:
        raise _bad_safetensors(path, f"a header of {length:,} bytes in a file of {len(raw):,}")
    try:
        header = json.loads(bytes(raw[8:8 + length]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _bad_safetensors(path, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad_safetensors(path, "its header is not a JSON object")
    return header, 8 + length


def _tensor(path: Path, raw: bytearray, start: int, name: str, spec: Any) -> torch.Tensor:
    """One tensor of a safetensors file, built on the file's buffer (floats then converted to float32)."""
    if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= spec.keys():
        raise _bad_safetensors(path, f"tensor {name} lacks its dtype, shape or data_offsets")
    if spec["dtype"] not in _DTYPES:
        raise UserError(f"{path} stores tensor {name} as {spec['dtype']}; accepted dtypes: {', '.join(_DTYPES)}")
    dtype, shape = _DTYPES[spec["dtype"]], spec["shape"]
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise _bad_safetensors(path, f"tensor {name} has shape {shape!r}")
    offsets = spec["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(n, int) for n in offsets):
        raise _bad_safetensors(path, f"tensor {name} has data offsets {offsets!r}")
    begin, end = offsets
    count = int(np.prod(shape, dtype=np.int64))
    size = torch.empty((), dtype=dtype).element_size()
    if not 0 <= begin <= end <= len(raw) - start or end - begin != count * size:
        raise _bad_safetensors(path, f"tensor {name} has data offsets {[begin, end]} for {count:,} {spec['dtype']}")
    if count == 0:
        tensor = torch.empty(shape, dtype=dtype)
    else:
        offset = start + begin
        if offset % size:  # misaligned data: copy it to a buffer of its own
            tensor = torch.frombuffer(bytearray(raw[offset:offset + count * size]), dtype=dtype)
        else:
            tensor = torch.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        tensor = tensor.reshape(shape)
    if sys.byteorder == "big":
        tensor = _byteswap(tensor)
    return tensor.float() if tensor.is_floating_point() else tensor


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, parsed by hand (floating tensors as float32)."""
    path = Path(path)
    raw = bytearray(path.stat().st_size)
    with open(path, "rb") as fh:
        fh.readinto(raw)
    header, start = _header(path, raw)
    return {name: _tensor(path, raw, start, name, spec) for name, spec in header.items() if name != "__metadata__"}


def _little_endian_bytes(tensor: torch.Tensor) -> bytes:
    """The raw little-endian bytes of a (CPU, contiguous) tensor."""
    tensor = tensor.contiguous()
    if sys.byteorder == "big":
        tensor = _byteswap(tensor)
    return tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def _storable(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` as written: on the CPU, floats as float32, integers as they are."""
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        return tensor.to(torch.float32)
    if tensor.dtype not in _NAMES:
        raise ValueError(f"cannot write a {tensor.dtype} tensor to safetensors; accepted: floats, int32, int64")
    return tensor


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write `tensors` as a safetensors file (floats as float32 little-endian, 8-byte types first so that every
    tensor is aligned, the JSON header padded with spaces to a multiple of 8, `__metadata__` {"format": "pt"})."""
    path = Path(path)
    order = sorted(tensors, key=lambda name: -tensors[name].element_size())
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in order:
        tensor = tensors[name]
        dtype = torch.float32 if tensor.is_floating_point() else tensor.dtype
        size = tensor.numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _NAMES.get(dtype, str(dtype)), "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        for name in order:
            fh.write(_little_endian_bytes(_storable(tensors[name])))
        fh.flush()
        os.fsync(fh.fileno())
    return path


# --- reading ------------------------------------------------------------------------------------------------------
@dataclass
class BertCheckpoint:
    """What a Hugging Face BERT checkpoint directory holds, in this package's terms."""

    path: Path
    teacher: Teacher  # the shape (head size = hidden / heads, as Hugging Face fixes it)
    eps: float  # LayerNorm epsilon (`layer_norm_eps`)
    state: dict[str, torch.Tensor]  # the encoder's weights in ElasticBert names, float32
    vocab_file: Path
    lowercase: bool  # the tokenizer's `do_lower_case`
    config: dict[str, Any]  # config.json as read
    weights_file: Path
    missing_pooler: bool = False  # the checkpoint has no pooler (a BertForMaskedLM): ElasticBert keeps its init
    head_state: dict[str, torch.Tensor] = field(default_factory=dict)  # `cls.*` heads, Hugging Face names
    ignored: list[str] = field(default_factory=list)  # tensors with no place in an encoder (buffers, task heads)


# BertConfig's defaults, for the fields a config.json may leave out.
_CONFIG_DEFAULTS: dict[str, Any] = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                    "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512,
                                    "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
                                    "position_embedding_type": "absolute"}
_DIMS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
         "max_position_embeddings", "type_vocab_size")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise UserError(f"{path} is not valid JSON; accepted: the {what} of a Hugging Face BERT checkpoint") from None


def _read_config(folder: Path) -> dict[str, Any]:
    """config.json, checked to describe a BERT this package reproduces (absolute positions, exact GELU)."""
    path = folder / CONFIG
    if not path.is_file():
        raise UserError(f"{folder} has no {CONFIG}; accepted: a Hugging Face BERT checkpoint directory ({CONFIG}, "
                        f"{SAFETENSORS} or {PICKLED}, {VOCAB})")
    config = _read_json(path, "BertConfig")
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object; accepted: the BertConfig of a Hugging Face BERT checkpoint")
    architectures = config.get("architectures")
    architectures = [str(a) for a in architectures] if isinstance(architectures, list) else []
    model_type = config.get("model_type")
    if model_type != "bert" and not (model_type is None and set(architectures) & set(ARCHITECTURES)):
        described = f"model_type {model_type!r}" if model_type is not None else "no model_type"
        raise UserError(f"{path} describes a model of {described} (architectures {architectures}); accepted: BERT "
                        f"(model_type bert, or architectures {', '.join(ARCHITECTURES)})")
    act = config.get("hidden_act", "gelu")
    if act != "gelu":
        raise UserError(f"{path} uses hidden_act {act!r}; accepted: gelu (BERT's exact erf GELU)")
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise UserError(f"{path} uses position_embedding_type {position!r}; accepted: absolute")
    return config


def _teacher(folder: Path, config: dict[str, Any]) -> Teacher:
    """The shape config.json gives (BertConfig's defaults for missing fields)."""
    path = folder / CONFIG
    values = {key: config.get(key, _CONFIG_DEFAULTS[key]) for key in (*_DIMS, "layer_norm_eps")}
    for key in _DIMS:
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
            raise UserError(f"{path} has {key} {values[key]!r}; accepted: a positive integer")
    eps = values["layer_norm_eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise UserError(f"{path} has layer_norm_eps {eps!r}; accepted: a positive number")
    hidden, heads = values["hidden_size"], values["num_attention_heads"]
    if hidden % heads:
        raise UserError(f"{path} has hidden_size {hidden} and {heads} attention heads; accepted: a hidden size that "
                        "the number of heads divides")
    return Teacher(layers=values["num_hidden_layers"], hidden=hidden, heads=heads, head_size=hidden // heads,
                   intermediate=values["intermediate_size"], vocab_size=values["vocab_size"],
                   max_positions=values["max_position_embeddings"], type_vocab_size=values["type_vocab_size"],
                   eps=float(eps))


def _load_pickled(path: Path) -> dict[str, torch.Tensor]:
    """A `pytorch_model.bin`: a dict of tensors, loaded with `weights_only=True` (no code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every refusal to unpickle is the same user error
        raise UserError(f"{path} cannot be loaded as plain tensors by torch.load(weights_only=True) "
                        f"({type(exc).__name__}: not a torch file, or objects other than tensors in it); accepted: a "
                        "saved state dict") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a dict of tensors; accepted: a saved state dict")
    return {str(k): v.float() if v.is_floating_point() else v for k, v in state.items()}


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path) if path.name.endswith(".safetensors") else _load_pickled(path)


def _load_sharded(index: Path) -> dict[str, torch.Tensor]:
    """The tensors of a sharded checkpoint (`*.index.json` naming each tensor's shard)."""
    index_json = _read_json(index, "shard index")
    weight_map = index_json.get("weight_map") if isinstance(index_json, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UserError(f"{index} has no weight_map; accepted: a shard index written by save_pretrained")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not (index.parent / shard).is_file():
            raise UserError(f"{index} names the shard {shard}, which {index.parent} lacks")
        state.update(_load_file(index.parent / shard))
    return state


def _read_weights(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights file of `folder` (safetensors first, as Hugging Face prefers) and its tensors."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            return path, _load_sharded(path) if name.endswith(".index.json") else _load_file(path)
    raise UserError(f"{folder} has no weights; accepted: {SAFETENSORS} or {PICKLED} (or their sharded .index.json)")


def _expected_shapes(teacher: Teacher) -> dict[str, tuple[int, ...]]:
    """Every ElasticBert tensor's name and shape for `teacher` (built on the meta device: nothing allocated)."""
    with torch.device("meta"):
        net = ElasticBert(teacher, eps=teacher.eps)
    return {name: tuple(tensor.shape) for name, tensor in net.state_dict().items()}


def _sort_tensors(weights_file: Path, tensors: Mapping[str, torch.Tensor]
                  ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Split a checkpoint's tensors into the encoder (ElasticBert names), the `cls.*` heads and the ignored rest;
    a tensor under embeddings/encoder/pooler that ElasticBert lacks means another architecture and is refused."""
    state, heads, ignored = {}, {}, []
    for original, tensor in tensors.items():
        name = _normalise(original)
        ours = from_hf_name(name)
        if ours is not None:
            state[ours] = tensor
        elif name.startswith("cls."):
            heads[name] = tensor
        elif name.endswith((".position_ids", ".token_type_ids")) or not name.startswith(_ENCODER_ROOTS):
            ignored.append(original)
        else:
            raise UserError(f"{weights_file} has the tensor {original}, which a BERT encoder (BertModel) does not "
                            "have; accepted: the weights of BertModel, BertForMaskedLM or BertForPreTraining")
    return state, heads, ignored


def _check_state(weights_file: Path, state: dict[str, torch.Tensor], teacher: Teacher) -> bool:
    """Check every weight the config needs is there at its shape; returns whether the pooler is missing."""
    missing_pooler = not any(name in state for name in _POOLER)
    for name, shape in _expected_shapes(teacher).items():
        if name in _POOLER and missing_pooler:
            continue
        if name not in state:
            raise UserError(f"{weights_file} lacks the weight {to_hf_name(name)}, which its config.json needs")
        tensor = state[name]
        if tuple(tensor.shape) != shape:
            raise UserError(f"{weights_file} has {to_hf_name(name)} of shape {list(tensor.shape)} but its config.json "
                            f"needs {list(shape)}")
        if not tensor.is_floating_point():
            raise UserError(f"{weights_file} stores {to_hf_name(name)} as {tensor.dtype}; accepted: floating point")
    return missing_pooler


def _vocab(folder: Path, teacher: Teacher) -> Path:
    """vocab.txt, whose line count (as BertTokenizer reads it) must be the config's vocab_size."""
    path = folder / VOCAB
    if not path.is_file():
        raise UserError(f"{folder} has no {VOCAB}; accepted: a checkpoint directory with the WordPiece vocabulary "
                        "the model was trained with")
    try:
        with open(path, encoding="utf-8") as fh:
            count = len(fh.readlines())
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; accepted: a WordPiece vocabulary, one token a line") from None
    if count != teacher.vocab_size:
        raise UserError(f"{path} has {count:,} tokens but config.json's vocab_size is {teacher.vocab_size:,}, a "
                        "vocabulary that does not match the teacher; accepted: the vocab.txt it was trained with")
    return path


def _lowercase(folder: Path) -> bool:
    """tokenizer_config.json's `do_lower_case` (True where absent, as BertTokenizer's default)."""
    path = folder / TOKENIZER_CONFIG
    if not path.is_file():
        return True
    config = _read_json(path, "tokenizer config")
    value = config.get("do_lower_case", True) if isinstance(config, dict) else None
    if not isinstance(value, bool):
        raise UserError(f"{path} has do_lower_case {value!r}; accepted: true or false")
    return value


def read_bert_dir(path: str | os.PathLike) -> BertCheckpoint:
    """Read a Hugging Face BERT checkpoint directory (see the module docstring); every problem is a UserError
    naming the path."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a directory; accepted: a Hugging Face BERT checkpoint directory")
    config = _read_config(folder)
    teacher = _teacher(folder, config)
    vocab_file = _vocab(folder, teacher)
    lowercase = _lowercase(folder)
    weights_file, tensors = _read_weights(folder)
    state, heads, ignored = _sort_tensors(weights_file, tensors)
    missing_pooler = _check_state(weights_file, state, teacher)
    return BertCheckpoint(folder, teacher, teacher.eps, state, vocab_file, lowercase, config, weights_file,
                          missing_pooler, heads, ignored)


def load_teacher(path: str | os.PathLike) -> tuple[ElasticBert, BertCheckpoint]:
    """An `ElasticBert` (eval mode) holding a checkpoint directory's weights, loaded strictly (a missing pooler
    keeps its initialisation), and what the directory held."""
    ckpt = read_bert_dir(path)
    net = ElasticBert(ckpt.teacher, eps=ckpt.eps)
    state = dict(ckpt.state)
    if ckpt.missing_pooler:
        state.update({name: tensor for name, tensor in net.state_dict().items() if name in _POOLER})
    net.load_state_dict(state)
    return net.eval(), ckpt


# --- writing ------------------------------------------------------------------------------------------------------
def bert_config(teacher: Teacher, eps: float | None = None, architectures: Iterable[str] = ("BertModel",)
                ) -> dict[str, Any]:
    """A full BertConfig of `teacher`'s shape (Hugging Face fixes the head size at hidden / heads)."""
    return {"architectures": list(architectures), "model_type": "bert", "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": teacher.hidden,
            "initializer_range": 0.02, "intermediate_size": teacher.intermediate,
            "layer_norm_eps": float(teacher.eps if eps is None else eps),
            "max_position_embeddings": teacher.max_positions, "num_attention_heads": teacher.heads,
            "num_hidden_layers": teacher.layers, "pad_token_id": 0, "position_embedding_type": "absolute",
            "type_vocab_size": teacher.type_vocab_size, "vocab_size": teacher.vocab_size}


_BASE_CONFIG = {"architectures": ["BertModel"], "model_type": "bert", "attention_probs_dropout_prob": 0.1,
                "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                "pad_token_id": 0, "position_embedding_type": "absolute", "type_vocab_size": 2}


def _full_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` over BertConfig's fixed fields; the dims must all be given."""
    missing = [key for key in _DIMS if key not in config and key != "type_vocab_size"]
    if missing:
        raise ValueError(f"a BERT config needs {', '.join(missing)}")
    return {**_BASE_CONFIG, **config}


def _refuse_existing(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target} already exists and is not an empty directory; accepted: a new or empty directory")


def _write_file(path: Path, data: bytes | str) -> None:
    with open(path, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())


def _fill(folder: Path, state_hf: Mapping[str, torch.Tensor], config: dict[str, Any], vocab_file: Path,
          lowercase: bool, extra_files: Mapping[str, bytes | str]) -> None:
    """Write every file of a checkpoint directory into `folder`."""
    _write_file(folder / CONFIG, json.dumps(config, indent=2) + "\n")
    write_safetensors(folder / SAFETENSORS, state_hf)
    shutil.copyfile(vocab_file, folder / VOCAB)
    tokenizer = {"do_lower_case": bool(lowercase), "tokenizer_class": "BertTokenizer"}
    _write_file(folder / TOKENIZER_CONFIG, json.dumps(tokenizer, indent=2) + "\n")
    for name, data in extra_files.items():
        _write_file(folder / name, data)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_bert_dir(path: str | os.PathLike, state_hf: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                   vocab_file: str | os.PathLike, lowercase: bool = True,
                   extra_files: Mapping[str, bytes | str] | None = None) -> Path:
    """Write a Hugging Face BERT checkpoint directory: `config.json` (`config`, Hugging Face names, over BertConfig's
    fixed fields), `model.safetensors` (`state_hf`, Hugging Face names), `vocab.txt` (a copy of `vocab_file`),
    `tokenizer_config.json` and `extra_files` (name -> contents). Atomic as a directory: everything is written to a
    sibling temporary directory that is then renamed into place; an existing non-empty `path` is refused."""
    target = Path(path)
    extra = dict(extra_files or {})
    reserved = {CONFIG, SAFETENSORS, VOCAB, TOKENIZER_CONFIG}
    if any(Path(name).name != name or name in reserved for name in extra):
        raise ValueError(f"extra files must be plain names other than {', '.join(sorted(reserved))}: {list(extra)}")
    if not Path(vocab_file).is_file():
        raise UserError(f"the vocabulary {vocab_file} is not a file; accepted: a WordPiece vocab.txt")
    full = _full_config(config)
    _refuse_existing(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _fill(scratch, state_hf, full, Path(vocab_file), lowercase, extra)
        _refuse_existing(target)
        os.replace(scratch, target)  # replaces an empty directory; refuses a non-empty one
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise UserError(f"cannot write the checkpoint directory {target} ({exc.strerror or exc}); accepted: a new "
                        "or empty directory in a writable place") from None
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return target


def export_teacher_dir(path: str | os.PathLike, net: ElasticBert, vocab_file: str | os.PathLike,
                       lowercase: bool = True, mlm_head_state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """The whole `ElasticBert` as a BertModel checkpoint directory; with `mlm_head_state` (`cls.predictions.*`,
    Hugging Face names) a BertForMaskedLM one (encoder under `bert.`), which BertModel loads too."""
    state = to_hf_state(net.state_dict())
    architectures = ["BertModel"]
    if mlm_head_state:
        strange = [name for name in mlm_head_state if not name.startswith("cls.predictions.")]
        if strange:
            raise ValueError(f"an MLM head's tensors are named cls.predictions.*, got {strange}")
        state = {**to_hf_state(net.state_dict(), prefix="bert."), **mlm_head_state}
        architectures = ["BertForMaskedLM"]
    config = bert_config(net.teacher, net.embedding_norm.eps, architectures)
    return write_bert_dir(path, state, config, vocab_file, lowercase)


def _check_student(student: BertStudent, arch: Arch, teacher: Teacher) -> None:
    """`student` must have `arch`'s shape (a programming error otherwise)."""
    d = TransformerSpace.dims(arch, teacher)
    shape = student.shape
    got = (shape.layers, shape.heads, shape.hidden, shape.head_size, shape.intermediate)
    if got != (d["layers"], d["heads"], d["hidden"], teacher.head_size, d["ffn"]):
        raise ValueError(f"the student's shape {got} is not that of {arch.to_string()}")


def export_student_dir(path: str | os.PathLike, student: BertStudent, arch: Arch, teacher: Teacher,
                       vocab_file: str | os.PathLike, lowercase: bool = True, *, eps: float | None = None) -> Path:
    """A `BertStudent` (student `arch` of `teacher`) as a BertModel checkpoint directory, with its
    `student_config` as `supernas_student.json`; a UserError (`hf_incompatibility`) where a BertModel cannot hold
    it. `eps` defaults to the student's LayerNorm epsilon."""
    why = hf_incompatibility(arch, teacher)
    if why is not None:
        raise UserError(why)
    _check_student(student, arch, teacher)
    eps = student.eps if eps is None else eps
    description = json.dumps(student_config(arch, teacher, eps), indent=2) + "\n"
    return write_bert_dir(path, to_hf_state(student.state_dict()), bert_config(student.shape, eps), vocab_file,
                          lowercase, extra_files={STUDENT_JSON: description})


__all__ = ["BertCheckpoint", "bert_config", "export_student_dir", "export_teacher_dir", "from_hf_name", "load_teacher",
           "read_bert_dir", "read_safetensors", "to_hf_name", "to_hf_state", "write_bert_dir", "write_safetensors"]

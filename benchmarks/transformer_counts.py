"""Parameter counts of the Transformer space (specs/ALGORITHMS.md §6.2, §6.6), checked against Hugging Face.

Writes a JSON file (default results/transformer_counts.json) with:
- the BERT-base teacher's parameters by our real-shape count, by `ElasticBert`'s tensors, and by
  `transformers.BertModel(BertConfig())` (the optional `transformers` extra): total, encoder, embeddings, pooler;
- the largest student of a BERT-base-shaped SuperLM initialised from a random `BertModel` and the BertModel's own
  outputs: the largest absolute difference of the last hidden states and of the last layer's Q, K, V;
- per sub-space (base, small, tiny, full): students, smallest and largest parameter counts from the real slice
  shapes, the reference's formula (Q/K/V width H * A / 12 instead of A * 64) and the yaml comments' figures, and
  the FLOPs range for a sequence of 128 tokens.

    python benchmarks/transformer_counts.py [--out results/transformer_counts.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from searchspaces.transformer import BERT_BASE, SUBSPACES, TransformerSpace  # noqa: E402

# The yaml comments of the reference's sub-space files (§6.2), made with the formula of §6.6.
YAML_COMMENTS = {"base": "~38.5M-79.3M", "small": "~12.3M-27.8M", "tiny": "~4.4M-10.6M"}


def reference_params(arch) -> int:
    """The reference's count (`run_wiki_plus_book_NoAssist_RndSampl.py:1058-1067` as §6.6 describes it): our count
    with a Q/K/V width of H * A / 12, which only equals the real A * 64 when H = 768."""
    layers, heads, hidden, ratio = arch.choices
    t = BERT_BASE
    a = hidden * heads // 12
    f = int(hidden * ratio)
    embeddings = (t.vocab_size + t.max_positions + t.type_vocab_size) * hidden + 2 * hidden
    layer = 3 * (hidden * a + a) + (a * hidden + hidden) + 2 * hidden + (hidden * f + f) + (f * hidden + hidden)
    layer += 2 * hidden
    return embeddings + layers * layer + hidden * hidden + hidden


def hugging_face_counts() -> dict[str, int] | None:
    try:
        import transformers
    except ImportError:
        return None
    model = transformers.BertModel(transformers.BertConfig())

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {"total": count(model), "encoder": count(model.encoder), "embeddings": count(model.embeddings),
            "pooler": count(model.pooler), "transformers": transformers.__version__, "_model": model}


def reproduction(model) -> dict[str, float]:
    """The largest student of a SuperLM loaded from `model` (saved as a checkpoint directory) against the model."""
    from nas.hfbert import load_teacher

    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        rest = [f"[unused{i}]" for i in range(model.config.vocab_size - len(specials))]
        Path(folder, "vocab.txt").write_text("".join(f"{token}\n" for token in specials + rest))
        net, _ = load_teacher(folder)
    ids = torch.randint(model.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 48:] = 0
    captured = {}
    layer = model.encoder.layer[-1].attention.self
    hooks = [getattr(layer, name).register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
             for name in ("query", "key", "value")]
    with torch.no_grad():
        theirs = model(input_ids=ids, attention_mask=mask)
        ours = net.eval()(ids, net.largest(), attention_mask=mask)
    for hook in hooks:
        hook.remove()
    keep = mask.bool()
    return {"last_hidden": float((ours.hidden - theirs.last_hidden_state)[keep].abs().max()),
            "pooled": float((ours.pooled - theirs.pooler_output).abs().max()),
            **{name: float((getattr(ours, name) - captured[name])[keep].abs().max())
               for name in ("query", "key", "value")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "transformer_counts.json"))
    args = parser.parse_args(argv)
    from nas.io import atomic_write_json
    from supernets.transformer import ElasticBert

    space = TransformerSpace()
    teacher_arch = space.teacher_arch()
    net = ElasticBert(BERT_BASE)
    embeddings = sum(p.numel() for name, p in net.named_parameters() if "embedding" in name)
    encoder = sum(p.numel() for p in net.layers.parameters())
    ours = {"space.params": space.params(teacher_arch), "tensors": sum(p.numel() for p in net.parameters()),
            "encoder": encoder, "embeddings": embeddings, "pooler": sum(p.numel() for p in net.pooler.parameters())}
    hf = hugging_face_counts()
    model = hf.pop("_model") if hf else None
    rows = []
    for name in SUBSPACES:
        sub = space.subspace(name)
        archs = list(sub.enumerate())
        real = [space.params(a) for a in archs]
        formula = [reference_params(a) for a in archs]
        flops = [space.flops(a, seq_len=128) for a in archs]
        rows.append({"subspace": name, "students": len(archs), "params_min": min(real), "params_max": max(real),
                     "smallest": sub.smallest().to_string(), "largest": sub.largest().to_string(),
                     "formula_min": min(formula), "formula_max": max(formula),
                     "formula_differs": sum(r != f for r, f in zip(real, formula)),
                     "yaml_comment": YAML_COMMENTS.get(name), "flops_min": min(flops), "flops_max": max(flops)})
    result = {"command": "python benchmarks/transformer_counts.py", "teacher": BERT_BASE.to_json(), "ours": ours,
              "hugging_face": hf, "reproduction_max_abs_diff": reproduction(model) if model is not None else None,
              "subspaces": rows}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

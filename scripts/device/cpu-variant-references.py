#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for model variants the fixtures don't cover:
RoPE scaling (linear, dynamic NTK, llama3, YaRN) and Qwen2's q/k/v biases. Each variant is the stories260K
fp16 fixture with an edited config.json (and, for the bias variant, extra seeded random bias tensors).

Writes, per variant, OUT_DIR/<variant>/{config.json, reference.json}, plus extra.safetensors (the added
bias tensors only) for the bias variant. test/cpu/variants.test.ts reads them from test/cpu/fixtures/variants/.

Run (needs torch, transformers, safetensors; no GPU needed; VARIANTS=a,b makes only those):
  python3 scripts/device/cpu-variant-references.py test/cpu/fixtures/variants
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIXTURE = os.path.join(ROOT, "fixtures", "models", "stories260K")
SEQ_LEN = 160  # past the 64-position contexts set below, so every scaling rule is exercised


def variants():
    base = json.load(open(os.path.join(FIXTURE, "config.json")))
    out = {}
    c = dict(base, rope_scaling={"type": "linear", "rope_type": "linear", "factor": 2.0})
    out["rope-linear"] = (c, None)
    # Dynamic NTK only rescales past max_position_embeddings, so shrink it to 64.
    c = dict(base, max_position_embeddings=64, rope_scaling={"type": "dynamic", "rope_type": "dynamic", "factor": 2.0})
    out["rope-dynamic"] = (c, None)
    # head_dim 8: wavelengths 6.3, 63, 628, 6283 against 64/4=16 and 64/1=64: one high, one medium, two low.
    c = dict(base, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    out["rope-llama3"] = (c, None)
    # YaRN: factor 4 over an original context of 64 (max_position_embeddings 512 would give a ratio of 8, which
    # transformers uses only where factor is absent); head_dim 8 puts the ramp over frequencies 0-2.
    c = dict(base, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})
    out["rope-yarn"] = (c, None)
    # The attention factor from mscale / mscale_all_dim, other betas, and the ramp's bounds not rounded.
    c = dict(base, rope_scaling={"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32,
                                 "mscale": 1.0, "mscale_all_dim": 0.5, "beta_fast": 16.0, "beta_slow": 2.0,
                                 "truncate": False})
    out["rope-yarn-mscale"] = (c, None)
    c = dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False,
             sliding_window=None, max_window_layers=5, attention_dropout=0.0)
    for k in ("attention_bias", "mlp_bias", "pretraining_tp", "head_dim"):
        c.pop(k, None)
    out["qwen2-qkv-bias"] = (c, "qkv-bias")
    return out


def bias_tensors(config):
    tensors = {}
    g = torch.Generator().manual_seed(1234)
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    sizes = {"q_proj": config["num_attention_heads"] * head_dim, "k_proj": config["num_key_value_heads"] * head_dim,
             "v_proj": config["num_key_value_heads"] * head_dim}
    for layer in range(config["num_hidden_layers"]):
        for proj, n in sizes.items():
            tensors[f"model.layers.{layer}.self_attn.{proj}.bias"] = (torch.randn(n, generator=g) * 0.5).to(torch.float16)
    return tensors


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("OUT", "."), "cpu-variants")
    ref = json.load(open(os.path.join(FIXTURE, "reference.json")))
    ids = ref["ppl_text"]["ids"][:SEQ_LEN]
    only = [v for v in os.environ.get("VARIANTS", "").split(",") if v]
    for name, (config, extra) in variants().items():
        if only and name not in only:
            continue
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        for f in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(FIXTURE, f), d)
        json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
        if extra == "qkv-bias":
            extra_tensors = bias_tensors(config)
            save_file(extra_tensors, os.path.join(d, "extra.safetensors"), metadata={"format": "pt"})
            full = dict(load_file(os.path.join(FIXTURE, "model.safetensors")), **extra_tensors)
            save_file(full, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        else:
            shutil.copy(os.path.join(FIXTURE, "model.safetensors"), d)
        try:
            model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager")
        model.eval()
        rope_type = getattr(model.model.rotary_emb, "rope_type", "?")
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        top = torch.topk(logits, 5, dim=-1)
        record = {
            "variant": name,
            "computed_with": {"transformers": transformers.__version__, "torch": torch.__version__,
                              "class": type(model).__name__, "rope_type": rope_type},
            "recipe": "one float32 eager forward over ids (no KV cache); top5 at every position; all logits at the last",
            "rope": {"inv_freq": [float(v) for v in model.model.rotary_emb.inv_freq],
                     "attention_scaling": float(getattr(model.model.rotary_emb, "attention_scaling", 1.0))},
            "ids": ids,
            "top5": [[[int(i), float(v)] for i, v in zip(top.indices[t], top.values[t])] for t in range(len(ids))],
            "last_logits": [float(v) for v in logits[-1]],
        }
        # The test rebuilds the model from the fixture's weights (+ extra.safetensors): keep the folder small.
        for f in ("model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(d, f))
        json.dump(record, open(os.path.join(d, "reference.json"), "w"))
        print(f"{name}: {type(model).__name__}, rope_type {rope_type}, last top1 {record['top5'][-1][0]}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes fixtures/models/random-hd128-gptq-4bit-g128: a tiny Llama with the real models' head size (head_dim 128,
2 query heads sharing 1 KV head), random weights quantized to GPTQ 4-bit (group 128, asymmetric zeros, AutoGPTQ's
v1 packing), so that the CUDA kernels that only run at head_dim 128 (the tensor-core decode and prompt attention)
are checked against transformers (scripts/device/hd128-reference.py writes reference.json on the GPU machine).

The weights are not a trained model: their scales are picked so that attention scores spread (std ~2) and the
logits are peaked (std ~4), so a wrong key, value or position shows in the logits. The tokenizer is stories260K's
(vocab 512). numpy only; deterministic (seed below):
  python3 scripts/make-hd128-fixture.py [--act-order]
With --act-order it writes random-hd128-gptq-4bit-g128-actorder instead: the same random weights, each linear
quantized as GPTQ's desc_act does (its inputs in a shuffled order, groups of 128 along that order, g_idx mapping each
input to its group), so act-order at head_dim 128 (rows reordered at load, each GEMV's input gathered at run time,
beside the tensor-core attention) is checked against transformers too.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ACT_ORDER = "--act-order" in sys.argv[1:]
OUT = os.path.join(ROOT, "fixtures", "models", "random-hd128-gptq-4bit-g128" + ("-actorder" if ACT_ORDER else ""))
TOKENIZER_FROM = os.path.join(ROOT, "fixtures", "models", "stories260K")
SEED = 20261203
PERM_SEED = 20261205  # the act-order input orders, from a generator of their own (the weights stay the same)

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS, VOCAB, GROUP = 256, 2, 1, 128, 512, 2, 512, 128
# Standard deviations of the full-precision weights before quantization (see the docstring).
STD = {"q_proj": 0.09, "k_proj": 0.09, "v_proj": 0.06, "o_proj": 0.06, "gate_proj": 0.06, "up_proj": 0.06,
       "down_proj": 0.06}
LM_HEAD_STD = 0.25
# Which input each linear reads (act-order: the linears that share an input share its order).
INPUT_OF = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "o_proj": "o", "gate_proj": "gate_up",
            "up_proj": "gate_up", "down_proj": "down"}

QUANT = {"bits": 4, "group_size": GROUP, "damp_percent": 0.01, "desc_act": ACT_ORDER, "static_groups": False,
         "sym": False, "true_sequential": True, "model_name_or_path": None, "model_file_base_name": "model",
         "quant_method": "gptq", "checkpoint_format": "gptq"}


def quantize(w):
    """w: float [K, N] (input rows, output columns as GPTQ stores them). Per (group, column) min-max asymmetric
    4-bit: returns q [K, N] in 0..15, zero [K/G, N] in 1..15, scale fp16 [K/G, N]."""
    K, N = w.shape
    g = w.reshape(K // GROUP, GROUP, N)
    lo, hi = np.minimum(g.min(axis=1), 0), np.maximum(g.max(axis=1), 0)
    scale = ((hi - lo) / 15).astype(np.float16)
    s32 = scale.astype(np.float32)
    # AutoGPTQ's v1 format stores zero - 1 in 4 bits, so a zero of 0 cannot be written: keep zeros in 1..15.
    zero = np.clip(np.round(-lo / s32), 1, 15).astype(np.int32)
    q = np.clip(np.round(g / s32[:, None, :]) + zero[:, None, :], 0, 15).astype(np.int32).reshape(K, N)
    return q, zero, scale


def quantize_in_order(w, order):
    """quantize() over w's rows taken in `order` (desc_act: groups are runs of GROUP inputs along that order):
    returns q [K, N] in the rows' own order, zero and scale per group, and g_idx [K] (input k's group)."""
    q_sorted, zero, scale = quantize(w[order])
    q = np.empty_like(q_sorted)
    q[order] = q_sorted
    g_idx = np.empty(len(order), np.int32)
    g_idx[order] = np.arange(len(order)) // GROUP
    return q, zero, scale, g_idx


def pack_rows(q):
    """[K, N] nibbles -> int32 [K/8, N]: packed row r holds rows 8r..8r+7, row 8r+j in bits 4j..4j+3."""
    K, N = q.shape
    u = q.astype(np.uint32).reshape(K // 8, 8, N)
    out = np.zeros((K // 8, N), np.uint32)
    for j in range(8):
        out |= u[:, j, :] << np.uint32(4 * j)
    return out.view(np.int32)


def pack_cols(z):
    """[G, N] nibbles -> int32 [G, N/8]: word c holds columns 8c..8c+7, column 8c+j in bits 4j..4j+3."""
    G, N = z.shape
    u = z.astype(np.uint32).reshape(G, N // 8, 8)
    out = np.zeros((G, N // 8), np.uint32)
    for j in range(8):
        out |= u[:, :, j] << np.uint32(4 * j)
    return out.view(np.int32)


def write_safetensors(path, tensors, metadata):
    dtypes = {np.dtype(np.float16): "F16", np.dtype(np.int32): "I32"}
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def main():
    rng = np.random.default_rng(SEED)
    perm_rng = np.random.default_rng(PERM_SEED)
    t = {}
    t["model.embed_tokens.weight"] = rng.standard_normal((VOCAB, HIDDEN)).astype(np.float16)
    shapes = {"q_proj": HEADS * HEAD_DIM, "k_proj": KV_HEADS * HEAD_DIM, "v_proj": KV_HEADS * HEAD_DIM,
              "o_proj": HIDDEN, "gate_proj": FFN, "up_proj": FFN, "down_proj": HIDDEN}
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            t[p + norm + ".weight"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float16)
        # One input order per input: q/k/v share theirs and gate/up theirs, as GPTQ's orders (from the input's
        # Hessian) do.
        orders = {i: perm_rng.permutation(n) if ACT_ORDER else np.arange(n)
                  for i, n in (("qkv", HIDDEN), ("o", HEADS * HEAD_DIM), ("gate_up", HIDDEN), ("down", FFN))}
        for name, n_out in shapes.items():
            n_in = HEADS * HEAD_DIM if name == "o_proj" else FFN if name == "down_proj" else HIDDEN
            w = rng.standard_normal((n_in, n_out)) * STD[name]
            order = orders[INPUT_OF[name]]
            q, zero, scale, g_idx = quantize_in_order(w, order)
            mod = p + ("mlp." if name.endswith(("gate_proj", "up_proj", "down_proj")) else "self_attn.") + name
            t[mod + ".qweight"] = pack_rows(q)
            t[mod + ".qzeros"] = pack_cols(zero - 1)  # v1: zero - 1
            t[mod + ".scales"] = scale
            t[mod + ".g_idx"] = g_idx
    t["model.norm.weight"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float16)
    t["lm_head.weight"] = (rng.standard_normal((VOCAB, HIDDEN)) * LM_HEAD_STD).astype(np.float16)

    os.makedirs(OUT, exist_ok=True)
    meta = {"format": "pt", "quantizer": "scripts/make-hd128-fixture.py (min-max 4-bit of random weights, AutoGPTQ v1 "
            "packing)", **{f"gptq_{k}": str(QUANT[k]) for k in ("bits", "group_size", "desc_act", "sym")}}
    write_safetensors(os.path.join(OUT, "model.safetensors"), t, meta)
    config = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "head_dim": HEAD_DIM, "hidden_act": "silu", "hidden_size": HIDDEN,
        "initializer_range": 0.02, "intermediate_size": FFN, "max_position_embeddings": 2048, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float16", "use_cache": True,
        "vocab_size": VOCAB, "quantization_config": QUANT}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(OUT, "quantize_config.json"), "w") as f:
        json.dump(QUANT, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER_FROM, name), os.path.join(OUT, name))
    print(f"wrote {OUT} ({os.path.getsize(os.path.join(OUT, 'model.safetensors'))} bytes of weights)")


if __name__ == "__main__":
    main()

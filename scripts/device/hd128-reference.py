#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers for fixtures/models/random-hd128-gptq-4bit-g128 (written by
scripts/make-hd128-fixture.py): the GPTQ tensors dequantized here, independently of xllama's loaders, as AutoGPTQ's
v1 format defines them (W[k, n] = scales[g_idx[k], n] * (q[k, n] - (zero[g_idx[k], n] + 1)), q packed 8 per int32
along k, zeros 8 per int32 along n), then LlamaForCausalLM in float32 with eager attention. Writes reference.json in
the schema of the stories260K fixtures (fixtures/models/README.md) into the folder, and a copy under $OUT.

Run on the GPU machine (needs torch, transformers, safetensors; runs on the CPU):
  python3 scripts/device/hd128-reference.py fixtures/models/random-hd128-gptq-4bit-g128
"""
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

SEQ_LEN = 500     # check-cuda opens models with 512 positions; past 384 keys its decode attention uses 4 splits
PPL_LEN, PPL_CHUNK = 512, 128
GREEDY_STEPS = 64


def unpack_along_rows(packed):  # int32 [K/8, N] -> [K, N]
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    q = (packed.unsqueeze(1) >> shifts.view(1, 8, 1)) & 15
    return q.reshape(-1, packed.shape[1])


def unpack_along_cols(packed):  # int32 [G, N/8] -> [G, N]
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    z = (packed.unsqueeze(2) >> shifts.view(1, 1, 8)) & 15
    return z.reshape(packed.shape[0], -1)


def dequantized_state(folder):
    src = load_file(os.path.join(folder, "model.safetensors"))
    out = {}
    for name, t in src.items():
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            q = unpack_along_rows(t)
            zeros = unpack_along_cols(src[base + ".qzeros"]) + 1  # v1 stores zero - 1
            g_idx = src[base + ".g_idx"].long()
            scales = src[base + ".scales"].float()
            w = scales[g_idx] * (q - zeros[g_idx]).float()  # [K, N]
            out[base + ".weight"] = w.t().contiguous()  # nn.Linear: [out, in]
        elif not name.endswith((".qzeros", ".scales", ".g_idx")):
            out[name] = t.float()
    return out


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def nll_list(logits, ids):
    lp = torch.log_softmax(logits.double(), dim=-1)
    return [float(-lp[t, ids[t + 1]]) for t in range(len(ids) - 1)]


def sequence_record(model, name, ids):
    logits = logits_of(model, ids)
    nll = nll_list(logits, ids)
    top = torch.topk(logits, 5, dim=-1)
    return {"name": name, "ids": ids, "n_predictions": len(nll), "total_nll": sum(nll),
            "ppl": math.exp(sum(nll) / len(nll)), "nll": nll,
            "top5": [[[int(i), float(v)] for i, v in zip(top.indices[t], top.values[t])] for t in range(len(ids))],
            "last_logits": [float(v) for v in logits[-1]]}


def greedy(model, prompt, steps):
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(torch.argmax(logits_of(model, ids)[-1])))
    return ids[len(prompt):]


def main():
    folder = sys.argv[1]
    config = json.load(open(os.path.join(folder, "config.json")))
    plain = {k: v for k, v in config.items() if k != "quantization_config"}
    plain["torch_dtype"] = "float32"
    with tempfile.TemporaryDirectory() as tmp:
        json.dump(plain, open(os.path.join(tmp, "config.json"), "w"))
        save_file(dequantized_state(folder), os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        try:
            model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager")
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(tmp, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    rng = np.random.default_rng(1203)
    vocab = config["vocab_size"]
    seq = [1] + [int(i) for i in rng.integers(3, vocab, SEQ_LEN - 1)]
    ppl_ids = [1] + [int(i) for i in rng.integers(3, vocab, PPL_LEN - 1)]
    chunks = [ppl_ids[c * PPL_CHUNK:(c + 1) * PPL_CHUNK] for c in range(PPL_LEN // PPL_CHUNK)]
    chunk_nll = [sum(nll_list(logits_of(model, c), c)) for c in chunks]
    n_pred = len(chunks) * (PPL_CHUNK - 1)
    ref = {
        "model": os.path.basename(os.path.normpath(folder)),
        "computed_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                          "safetensors": safetensors.__version__, "numpy": np.__version__,
                          "class": type(model).__name__},
        "linear_impl": "GPTQ v1 tensors dequantized in float32 by scripts/device/hd128-reference.py, then nn.Linear",
        "recipe": {
            "forward": "transformers LlamaForCausalLM, float32 weights and activations, eager attention, CPU; one "
                       "forward over the whole sequence (no KV cache)",
            "ids": "BOS then ids drawn uniformly from 3..vocab-1 by numpy default_rng(1203): the sequence first, "
                   "then the ppl ids",
            "nll": "nll[t] = -log_softmax(logits[t])[ids[t+1]] in float64 over the float32 logits",
            "top5": "torch.topk(logits[t], 5) at every position",
            "greedy": f"{GREEDY_STEPS} steps, each re-running the whole sequence and appending the argmax",
            "ppl_text": f"{len(chunks)} chunks of {PPL_CHUNK} ids, each scored from a fresh context"},
        "sequences": [sequence_record(model, f"random{SEQ_LEN}", seq)],
        "greedy": {
            "from_bos": {"prompt": [1], "n_new": GREEDY_STEPS, "new_ids": greedy(model, [1], GREEDY_STEPS)},
            "from_golden": {"prompt": seq[:35], "n_new": GREEDY_STEPS, "new_ids": greedy(model, seq[:35], GREEDY_STEPS)},
        },
        "ppl_text": {"file": None, "ids": ppl_ids, "n_tokens": len(ppl_ids), "chunk_len": PPL_CHUNK,
                     "n_chunks": len(chunks), "n_predictions": n_pred, "chunk_total_nll": chunk_nll,
                     "total_nll": sum(chunk_nll), "ppl": math.exp(sum(chunk_nll) / n_pred)},
    }
    path = os.path.join(folder, "reference.json")
    json.dump(ref, open(path, "w"))
    if os.environ.get("OUT"):
        shutil.copy(path, os.path.join(os.environ["OUT"], "hd128-reference.json"))
    s = ref["sequences"][0]
    print(f"hd128 reference: {type(model).__name__}, ppl {s['ppl']:.3f} over {SEQ_LEN} ids, recipe ppl "
          f"{ref['ppl_text']['ppl']:.3f}, greedy from BOS {ref['greedy']['from_bos']['new_ids'][:8]}")


if __name__ == "__main__":
    main()

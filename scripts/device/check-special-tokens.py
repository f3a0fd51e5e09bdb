#!/usr/bin/env python3
"""Which bos_token / eos_token transformers' AutoTokenizer takes from a model folder, against xllama's tokenizer,
for tokenizer_config.json / special_tokens_map.json variants of the fp16 fixture (the legacy path, where the map
replaces the config's tokens, and the current one, where it is ignored). Needs transformers and tokenizers, not
torch or a GPU (transformers prints that PyTorch was not found; the tokenizer needs none).
Run from the repo root, with node on PATH and dist/ built:  python3 scripts/device/check-special-tokens.py
Prints a line per variant and exits 1 if any differs."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import transformers
from transformers import AutoTokenizer

FIXTURE = Path("fixtures/models/stories260K")
ADDED = lambda s: {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}

NAMES = ["bos_token", "eos_token", "unk_token"]
# name: (drop added_tokens_decoder?, keys to drop from tokenizer_config.json, special_tokens_map.json or None
# [, fields to set in tokenizer_config.json, DROP to remove one; the fixture's tokenizer_class is LlamaTokenizer
#  [, tokens to rename in the vocabulary, {old: new}]])
DROP = object()
VARIANTS = {
    "current config, map ignored": (False, [], {"eos_token": "<unk>"}),
    "legacy config, map replaces eos": (True, [], {"bos_token": ADDED("<s>"), "eos_token": "<unk>"}),
    "legacy config without tokens": (True, ["bos_token", "eos_token"], {"bos_token": ADDED("<s>"), "eos_token": ADDED("</s>")}),
    "legacy config, null in map": (True, [], {"bos_token": None}),
    "legacy config, no map": (True, [], None),
    "legacy config, null eos in map": (True, [], {"eos_token": None, "bos_token": ADDED("<unk>")}),
    "no tokenizer_config.json tokens, map only": (True, ["bos_token", "eos_token", "unk_token"],
                                                   {"bos_token": "<s>", "eos_token": ADDED("</s>"), "unk_token": "<unk>"}),
    # No file names the tokens: the tokenizer class's defaults, if it has any.
    "no tokens named, LlamaTokenizer": (False, NAMES, None),
    "no tokens named, LlamaTokenizerFast": (False, NAMES, None, {"tokenizer_class": "LlamaTokenizerFast"}),
    "no tokens named, PreTrainedTokenizerFast": (False, NAMES, None, {"tokenizer_class": "PreTrainedTokenizerFast"}),
    "no tokens named, no class": (False, NAMES, None, {"tokenizer_class": DROP}),
    "legacy, no tokens named, no map, LlamaTokenizerFast": (True, NAMES, None, {"tokenizer_class": "LlamaTokenizerFast"}),
    "legacy, map names eos only, LlamaTokenizer": (True, NAMES, {"eos_token": "<unk>"}),
    "no tokens named, Qwen2Tokenizer": (False, NAMES, None, {"tokenizer_class": "Qwen2Tokenizer"}, {"</s>": "<|endoftext|>"}),
    "bos null, LlamaTokenizer": (False, ["eos_token"], None, {"bos_token": None}),
}

OURS = """
import { loadModelSpec } from './dist/cli/engine/loader/index.js';
import { TextTokenizer } from './dist/cli/engine/tokenizer.js';
const spec = loadModelSpec(process.argv[1]);
const t = TextTokenizer.fromFiles(spec.tokenizer, spec);
console.log(JSON.stringify([t.bosToken, t.eosToken]));
"""


def rename_tokens(folder: Path, renames: dict) -> None:
    path = folder / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer["model"]["vocab"]
    tokenizer["model"]["vocab"] = {renames.get(k, k): v for k, v in vocab.items()}
    for added in tokenizer["added_tokens"]:
        added["content"] = renames.get(added["content"], added["content"])
    path.write_text(json.dumps(tokenizer))


def variant_folder(root: Path, legacy: bool, drop: list, special_map, overrides=None, renames=None) -> Path:
    dest = root / "model"
    shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("*.txt", "reference.json"))
    if renames:
        rename_tokens(dest, renames)
    config_path = dest / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for added in config.get("added_tokens_decoder", {}).values():
        added["content"] = (renames or {}).get(added["content"], added["content"])
    if legacy:
        config.pop("added_tokens_decoder", None)
    for key in drop:
        config.pop(key, None)
    for key, value in (overrides or {}).items():
        if value is DROP:
            config.pop(key, None)
        else:
            config[key] = value
    config_path.write_text(json.dumps(config))
    if special_map is not None:
        (dest / "special_tokens_map.json").write_text(json.dumps(special_map))
    return dest


def main() -> int:
    failed = 0
    print(f"transformers {transformers.__version__}")
    for name, variant in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = variant_folder(Path(tmp), *variant)
            tok = AutoTokenizer.from_pretrained(folder)
            theirs = [tok.bos_token, tok.eos_token]
            run = subprocess.run(["node", "--input-type=module", "-e", OURS, str(folder)], capture_output=True, text=True)
            ours = json.loads(run.stdout) if run.returncode == 0 else f"error: {run.stderr.strip()}"
            same = ours == theirs
            failed += not same
            print(f"{'PASS' if same else 'FAIL'} {name}: transformers {theirs}, xllama {ours}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

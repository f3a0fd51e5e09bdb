// Where neither tokenizer_config.json nor special_tokens_map.json names bos_token / eos_token, transformers gives
// the tokenizer class's own defaults (LlamaTokenizer's <s> and </s>, Qwen2Tokenizer's <|endoftext|>), and a generic
// class none. scripts/device/check-special-tokens.py compares these cases with transformers' AutoTokenizer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';
import { FP16, copyFixture, editJson } from './model-dir.js';

/** The fp16 fixture's tokenizer with no special tokens named in tokenizer_config.json, then `edit`. */
function tokenizerWith(edit: (c: Record<string, unknown>) => void) {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'tokenizer_config.json'), (c) => {
    for (const key of ['bos_token', 'eos_token', 'unk_token']) delete c[key];
    edit(c);
  });
  const spec = loadModelSpec(dir);
  return TextTokenizer.fromFiles(spec.tokenizer, spec);
}

test("Llama tokenizer classes name <s> and </s> when no file does", () => {
  for (const tokenizerClass of ['LlamaTokenizer', 'LlamaTokenizerFast', 'CodeLlamaTokenizerFast']) {
    const tok = tokenizerWith((c) => { c.tokenizer_class = tokenizerClass; });
    assert.deepEqual([tok.bosToken, tok.eosToken, tok.bosId, tok.eosIds], ['<s>', '</s>', 1, [2]], tokenizerClass);
  }
  // A legacy config (no added_tokens_decoder, no special_tokens_map.json) too.
  const legacy = tokenizerWith((c) => { delete c.added_tokens_decoder; });
  assert.deepEqual([legacy.bosToken, legacy.eosToken], ['<s>', '</s>']);
});

test('a generic tokenizer class, or none, has no default tokens', () => {
  for (const edit of [(c: Record<string, unknown>) => { c.tokenizer_class = 'PreTrainedTokenizerFast'; },
    (c: Record<string, unknown>) => { delete c.tokenizer_class; }]) {
    const tok = tokenizerWith(edit);
    assert.deepEqual([tok.bosToken, tok.eosToken], [null, null]);
    assert.deepEqual([tok.bosId, tok.eosIds], [1, [2]], 'the ids still come from config.json');
  }
});

test('an explicit null is kept, and a default missing from the vocabulary is no token', () => {
  const nulled = tokenizerWith((c) => { c.bos_token = null; });
  assert.deepEqual([nulled.bosToken, nulled.eosToken], [null, '</s>']);
  // Qwen2Tokenizer's <|endoftext|> is not in this vocabulary: no token (and no error), as no file named it.
  const qwen = tokenizerWith((c) => { c.tokenizer_class = 'Qwen2Tokenizer'; });
  assert.deepEqual([qwen.bosToken, qwen.eosToken, qwen.eosIds], [null, null, [2]]);
});

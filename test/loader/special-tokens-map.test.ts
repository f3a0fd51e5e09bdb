// special_tokens_map.json: transformers reads it only on its legacy path, for a tokenizer_config.json without
// added_tokens_decoder (saved before transformers 4.34, as many GPTQ folders were), and its bos_token / eos_token
// then replace the config's. The fixture's config has added_tokens_decoder; these tests remove it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/run-cli.js';
import { assertCliRefused } from '../helpers/assert-refused.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';
import { FP16, copyFixture, editJson } from './model-dir.js';

/** A copy of the fp16 fixture with the given special_tokens_map.json; `legacy` drops added_tokens_decoder. */
function folderWith(map: unknown, { legacy, config }: { legacy: boolean; config?: (c: Record<string, any>) => void }): string {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'tokenizer_config.json'), (c) => {
    if (legacy) delete c.added_tokens_decoder;
    config?.(c);
  });
  writeFileSync(join(dir, 'special_tokens_map.json'), typeof map === 'string' ? map : JSON.stringify(map));
  return dir;
}

const tokenizerOf = (dir: string) => {
  const spec = loadModelSpec(dir);
  return TextTokenizer.fromFiles(spec.tokenizer, spec);
};

const AS_ADDED_TOKEN = (content: string) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false });

test('a legacy tokenizer_config.json takes bos_token and eos_token from special_tokens_map.json', () => {
  // The map's eos replaces the config's: it is the tokenizer's own EOS, first of the ids that stop generation.
  const tok = tokenizerOf(folderWith({ bos_token: AS_ADDED_TOKEN('<s>'), eos_token: '<unk>' }, { legacy: true }));
  assert.equal(tok.bosToken, '<s>');
  assert.equal(tok.eosToken, '<unk>');
  assert.deepEqual(tok.eosIds, [0, 2], 'the map\'s <unk> first, then config.json\'s eos_token_id 2');
  // A config without the tokens at all gets them from the map (the chat template's bos_token renders).
  const bare = tokenizerOf(folderWith({ bos_token: AS_ADDED_TOKEN('<s>'), eos_token: AS_ADDED_TOKEN('</s>') }, {
    legacy: true, config: (c) => { delete c.bos_token; delete c.eos_token; },
  }));
  assert.equal(bare.bosToken, '<s>');
  assert.equal(bare.eosToken, '</s>');
  // An absent entry leaves the config's token; null removes it, as in transformers.
  const nulled = tokenizerOf(folderWith({ bos_token: null }, { legacy: true }));
  assert.equal(nulled.bosToken, null);
  assert.equal(nulled.eosToken, '</s>');
  assert.equal(nulled.bosId, 1, 'BOS id from config.json still');
});

test('special_tokens_map.json is ignored where tokenizer_config.json has added_tokens_decoder', () => {
  const tok = tokenizerOf(folderWith({ eos_token: '<unk>' }, { legacy: false }));
  assert.equal(tok.eosToken, '</s>');
  assert.deepEqual(tok.eosIds, [2]);
  // Not even read: a broken one does not stop the model.
  const broken = folderWith('{not json', { legacy: false });
  assert.equal(runCli(['info', broken]).status, 0);
});

test('a bad special_tokens_map.json is refused in one line that names it', () => {
  assertCliRefused(['info', folderWith('{not json', { legacy: true })], 'special_tokens_map.json: not valid JSON');
  assertCliRefused(['info', folderWith({ eos_token: 7 }, { legacy: true })], 'special_tokens_map.json: eos_token is 7, expected a token (a string) or null');
  assertCliRefused(['info', folderWith({ eos_token: { content: 1 } }, { legacy: true })], 'special_tokens_map.json: eos_token is');
  // A token the vocabulary lacks: the message names the file that gave it, not tokenizer_config.json.
  const missing = folderWith({ bos_token: '<|begin_of_text|>' }, { legacy: true });
  assertCliRefused(['info', missing], `${join(missing, 'special_tokens_map.json')}: bos_token "<|begin_of_text|>" is not a token of tokenizer.json`);
  // A folder where special_tokens_map.json is a folder: one line, not a crash.
  const dir = folderWith({}, { legacy: true });
  rmSync(join(dir, 'special_tokens_map.json'));
  mkdirSync(join(dir, 'special_tokens_map.json'));
  assertCliRefused(['info', dir], 'special_tokens_map.json: is a folder');
});

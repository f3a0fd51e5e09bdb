import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';
import { fixtureTokenizer, storiesDir, storiesTokenizer } from './fixture-tokenizers.js';

/** llama.cpp's test-tokenizer-0 format: cases separated by "\n__ggml_vocab_test__\n", one id line per case. */
function goldenCases(dir: string): { text: string; ids: number[] }[] {
  const inp = readFileSync(join(dir, 'cases.inp'), 'utf8');
  const out = readFileSync(join(dir, 'cases.out'), 'utf8');
  const texts = inp.split('\n__ggml_vocab_test__\n');
  assert.equal(texts.pop(), '', 'cases.inp ends with a separator');
  const lines = out.split('\n');
  assert.equal(lines.pop(), '', 'cases.out ends with a newline');
  assert.equal(texts.length, lines.length);
  return texts.map((text, i) => ({
    text,
    ids: lines[i]!.trim() === '' ? [] : lines[i]!.trim().split(/\s+/).map(Number),
  }));
}

const llamaCases = goldenCases(join(fixtures, 'tokenizers', 'llama2', 'tests'));

test('llama2: every golden case of llama.cpp encodes to the expected ids (no BOS)', () => {
  const tok = fixtureTokenizer('llama2');
  assert.equal(llamaCases.length, 46);
  for (const c of llamaCases) assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
});

test('llama2: decoding the golden ids gives the text back', () => {
  const tok = fixtureTokenizer('llama2');
  for (const c of llamaCases) assert.equal(tok.decode(c.ids), c.text, JSON.stringify(c.text));
});

test('llama2: the old `__type: AddedToken` config gives <s>/</s>, add_bos true, add_eos false', () => {
  const tok = fixtureTokenizer('llama2');
  assert.equal(tok.bosToken, '<s>');
  assert.equal(tok.eosToken, '</s>');
  assert.equal(tok.bosId, 1);
  assert.deepEqual(tok.eosIds, [2]);
  assert.equal(tok.addBos, true);
  assert.equal(tok.addEos, false);
  assert.deepEqual(tok.encode('Hello world', { addSpecial: true }), [1, 15043, 3186]);
  assert.equal(tok.decode([1, 15043, 3186, 2]), 'Hello world');
  assert.equal(tok.decode([1, 15043, 3186, 2], { skipSpecial: false }), '<s> Hello world</s>');
});

test('a raw config with AddedToken objects and add_eos_token true is read the same way', () => {
  const dir = join(fixtures, 'tokenizers', 'llama2');
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const tok = new TextTokenizer(json, { ...config, add_eos_token: true }, { bosTokenId: null, eosTokenIds: [] });
  assert.deepEqual(tok.encode('Hello world', { addSpecial: true }), [1, 15043, 3186, 2]);
});

test('mistral: its own vocabulary (ids checked against tokenizer.json and published ids)', () => {
  const tok = fixtureTokenizer('mistral');
  const vocab = JSON.parse(readFileSync(join(fixtures, 'tokenizers', 'mistral', 'tokenizer.json'), 'utf8')).model.vocab;
  // Mistral-7B's well-known encoding of "Hello world": <s> ▁Hello ▁world = 1 22557 1526.
  assert.deepEqual(tok.encode('Hello world', { addSpecial: true }), [1, 22557, 1526]);
  assert.equal(vocab['▁Hello'], 22557);
  assert.deepEqual(tok.encode('Hello, world!'), [vocab['▁Hello'], vocab[','], vocab['▁world'], vocab['!']]);
  assert.deepEqual(tok.encode('\n'), [vocab['▁'], vocab['<0x0A>']]);
  assert.deepEqual(tok.encode('你好'), [vocab['▁'], vocab['你'], vocab['好']]);
  // A character outside the vocabulary falls back to its UTF-8 bytes.
  const emoji = tok.encode('🦙').filter((id) => id !== vocab['▁']);
  assert.deepEqual(emoji, [...Buffer.from('🦙', 'utf8')].map((b) => vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`]));
  assert.equal(tok.addBos, true);
  assert.deepEqual(tok.eosIds, [2]);
});

test('mistral: every golden text round-trips through encode and decode', () => {
  const tok = fixtureTokenizer('mistral');
  for (const c of llamaCases) assert.equal(tok.decode(tok.encode(c.text)), c.text, JSON.stringify(c.text));
});

test('stories260K: the golden sentence gives the reference ids, with BOS', () => {
  const tok = storiesTokenizer();
  const golden = '1 385 328 432 261 280 305 330 272 414 444 272 277 264 261 262 415 271 422 410 354 422 318 264 285 265 334 341 334 412 433 259 276 411 426';
  assert.deepEqual(tok.encode('One day, a clever fox found a shiny key under the old oak tree.', { addSpecial: true }),
    golden.split(' ').map(Number));
});

test("stories260K: llama2.c's 201 greedy ids decode to its expected text", () => {
  const tok = storiesTokenizer();
  const ref = JSON.parse(readFileSync(join(storiesDir, 'reference.json'), 'utf8'));
  const ids = ref.sequences.find((s: { name: string }) => s.name === 'greedy201').ids as number[];
  const expected = readFileSync(join(storiesDir, 'llama2c_expected_greedy_200.txt'), 'utf8');
  assert.equal(tok.decode(ids), expected);
  assert.deepEqual(tok.encode(expected, { addSpecial: true }), ids);
});

test('without add_bos_token in tokenizer_config.json, the post-processor of tokenizer.json decides', () => {
  const json = JSON.parse(readFileSync(join(storiesDir, 'tokenizer.json'), 'utf8'));
  const ids = { bosTokenId: 1, eosTokenIds: [2] };
  // stories260K's TemplateProcessing adds <s>.
  const withTemplate = new TextTokenizer(json, { bos_token: '<s>', eos_token: '</s>' }, ids);
  assert.equal(withTemplate.addBos, null);
  assert.deepEqual(withTemplate.encode('One day', { addSpecial: true }), [1, ...withTemplate.encode('One day')]);
  // No post-processor (as Qwen2): nothing is added.
  const plain = new TextTokenizer({ ...json, post_processor: null }, {}, ids);
  assert.deepEqual(plain.encode('One day', { addSpecial: true }), plain.encode('One day'));
  // BOS/EOS ids then come from config.json / generation_config.json.
  assert.equal(plain.bosId, 1);
  assert.deepEqual(plain.eosIds, [2]);
});

test('EOS ids: the tokenizer eos_token first, then every id of config/generation_config', () => {
  const json = JSON.parse(readFileSync(join(storiesDir, 'tokenizer.json'), 'utf8'));
  const tok = new TextTokenizer(json, { eos_token: { __type: 'AddedToken', content: '</s>' } },
    { bosTokenId: 1, eosTokenIds: [0, 2] });
  assert.deepEqual(tok.eosIds, [2, 0]);
});

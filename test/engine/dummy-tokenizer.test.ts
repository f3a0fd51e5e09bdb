import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dummyTokenizer } from '../../cli/engine/dummy-tokenizer.js';
import { UserError } from '../../cli/errors.js';

test('dummy models get a real tokenizer of their vocabulary size', () => {
  const llama = dummyTokenizer('llama-7b', 32000);
  // Llama 2's ids for "Hello world" (BOS, then the SentencePiece pieces).
  assert.deepEqual(llama.encode('Hello world', { addSpecial: true }), [1, 15043, 3186]);
  assert.deepEqual(llama.eosIds, [2]);
  const tiny = dummyTokenizer('tiny', 512);
  assert.equal(tiny.decode(tiny.encode('Once upon a time')), 'Once upon a time');
});

test('a vocabulary with no shipped tokenizer is a one-line user error', () => {
  assert.throws(() => dummyTokenizer('llama3-8b', 128256), (e: unknown) =>
    e instanceof UserError && /--dummy llama3-8b: no tokenizer ships for a 128256-token vocabulary/.test(e.message));
});

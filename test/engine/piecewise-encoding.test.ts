// Long texts are encoded word by word (cli/engine/piecewise-encoding.ts): the ids must be exactly those of one
// @huggingface/tokenizers call over the whole text, for the real SentencePiece-style tokenizers in fixtures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { fixtures } from '../helpers/run-cli.js';
import { PiecewiseEncoder } from '../../cli/engine/piecewise-encoding.js';
import { fixtureTokenizer, storiesDir, storiesTokenizer } from './fixture-tokenizers.js';

const wiki = readFileSync(join(fixtures, 'text', 'wikitext-2-raw', 'wiki.test.raw'), 'utf8');
const stories = readFileSync(join(storiesDir, 'stories.txt'), 'utf8');

/** The ids of one call over the whole text, straight from the library (no piecewise path). */
function oneCall(dir: string, text: string): number[] {
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  return new Tokenizer(json, config).encode(text, { add_special_tokens: false }).ids;
}

// Spaces in runs, at the start and end, literal special-token text, "▁", newlines, tabs, emoji and CJK, long words.
const awkward = '  leading spaces, double  and triple   spaces, a tab\there, <s> and </s> typed out, ' +
  'a literal \u2581 mark, \u2581\u2581 two, a run of four     , café 東京 🎉🎉, supercalifragilisticexpialidocious\n\n' +
  ' = = Heading = = \n @-@ 1 @,@ 000 \n trailing   ';

for (const [name, dir, text] of [
  ['llama2', join(fixtures, 'tokenizers', 'llama2'), wiki.slice(0, 24_000) + awkward],
  ['mistral', join(fixtures, 'tokenizers', 'mistral'), wiki.slice(100_000, 116_000) + awkward],
  ['stories260K', storiesDir, stories + awkward],
] as const) {
  test(`${name}: a long text encodes word by word to the ids of one call over it`, () => {
    const tok = name === 'stories260K' ? storiesTokenizer() : fixtureTokenizer(name);
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const pieces = PiecewiseEncoder.forTokenizer(json)?.split(text) ?? [];
    assert.ok(pieces.length > text.length / 20, `the text should be cut into words (${pieces.length} pieces)`);
    assert.equal(pieces.join(''), text);
    const want = oneCall(dir, text);
    assert.deepEqual(tok.encode(text), want);
    assert.deepEqual(tok.encode(text, { addSpecial: true }), [tok.bosId, ...want]);
  });
}

test('tokenizers this is not exact for keep the one-call path', () => {
  const llama2 = JSON.parse(readFileSync(join(fixtures, 'tokenizers', 'llama2', 'tokenizer.json'), 'utf8'));
  assert.ok(PiecewiseEncoder.forTokenizer(llama2));
  // A pre-tokenizer (byte-level BPE, Metaspace), another normalizer, or a token holding a newline.
  assert.equal(PiecewiseEncoder.forTokenizer({ ...llama2, pre_tokenizer: { type: 'ByteLevel' } }), null);
  assert.equal(PiecewiseEncoder.forTokenizer({ ...llama2, normalizer: { type: 'NFKC' } }), null);
  const withNewline = { ...llama2, model: { ...llama2.model, vocab: { ...llama2.model.vocab, '.\n': 40000 } } };
  assert.equal(PiecewiseEncoder.forTokenizer(withNewline), null);
  // A token with "x▁" inside forbids cutting between "x" and a space.
  const xMark = { ...llama2, model: { ...llama2.model, vocab: { ...llama2.model.vocab, 'x\u2581y': 40001 } } };
  assert.deepEqual(PiecewiseEncoder.forTokenizer(xMark)?.split('ax b c'), ['ax b', ' c']);
});

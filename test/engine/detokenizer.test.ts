import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamingDetokenizer } from '../../cli/engine/detokenizer.js';
import type { TextTokenizer } from '../../cli/engine/tokenizer.js';
import { fixtureTokenizer, storiesTokenizer } from './fixture-tokenizers.js';

const TEXTS = [
  'Hello world, 🦙 llamas 👩‍👩‍👧 are here',
  '你好，世界！日本語のテキスト。',
  ' leading space and  double  spaces\nnew line\ttab',
  '🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅',
  'Ünïcödé ½ €100 — “quotes” …',
];

/**
 * Pushes ids one at a time; after each push the streamed text must be a prefix of the full decode of the
 * ids so far, equal to it whenever that decode is complete (no trailing U+FFFD), and free of U+FFFD.
 */
function checkEveryPrefix(tok: TextTokenizer, context: number[], ids: number[]): void {
  const detok = new StreamingDetokenizer(tok, context);
  const contextText = tok.decode(context);
  let streamed = '';
  for (let k = 1; k <= ids.length; k++) {
    streamed += detok.push(ids[k - 1]!);
    const full = tok.decode([...context, ...ids.slice(0, k)]);
    assert.ok(full.startsWith(contextText));
    const expected = full.slice(contextText.length);
    assert.ok(!streamed.includes('\uFFFD'), `U+FFFD after ${k} ids: ${JSON.stringify(streamed)}`);
    assert.ok(expected.startsWith(streamed), `not a prefix after ${k} ids: ${JSON.stringify(streamed)} vs ${JSON.stringify(expected)}`);
    if (!expected.endsWith('\uFFFD')) assert.equal(streamed, expected, `after ${k} ids`);
  }
  streamed += detok.flush();
  assert.equal(streamed, tok.decode([...context, ...ids]).slice(contextText.length));
}

for (const [name, get] of [['llama2', () => fixtureTokenizer('llama2')], ['mistral', () => fixtureTokenizer('mistral')],
  ['stories260K (byte fallback for every non-ASCII character)', storiesTokenizer]] as const) {
  test(`${name}: streaming equals the full decode at every prefix, never U+FFFD`, () => {
    const tok = get();
    for (const text of TEXTS) {
      const ids = tok.encode(text, { addSpecial: true });
      checkEveryPrefix(tok, [], ids);
      assert.equal(tok.decode(ids), text);
      // As in generation: the prompt's tail is context, the rest streams with its spacing intact.
      // (A prompt is whole text, so the context ends on a whole character.)
      let split = 3;
      while (tok.decode(ids.slice(0, split)).endsWith('\uFFFD')) split++;
      checkEveryPrefix(tok, ids.slice(0, split), ids.slice(split));
    }
  });
}

test('the first streamed piece keeps its leading space after a prompt (SentencePiece strip)', () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Once upon', { addSpecial: true });
  const rest = tok.encode(' a time').slice(0); // "▁a ▁time" with the prepended ▁ of the normalizer
  const detok = new StreamingDetokenizer(tok, prompt);
  const out = rest.map((id) => detok.push(id)).join('');
  assert.equal(`Once upon${out}`, tok.decode([...prompt, ...rest]));
  assert.ok(out.startsWith(' '));
});

test('bytes of one emoji are held until the character is complete', () => {
  const tok = storiesTokenizer();
  const bytes = [...Buffer.from('🦙', 'utf8')].map((b) => tok.tokenToId(`<0x${b.toString(16).toUpperCase()}>`)!);
  assert.equal(bytes.length, 4);
  const detok = new StreamingDetokenizer(tok, tok.encode('A', { addSpecial: true }));
  assert.deepEqual(bytes.map((id) => detok.push(id)), ['', '', '', '🦙']);
});

test('an incomplete byte sequence at the end comes out on flush as a full decode shows it', () => {
  const tok = storiesTokenizer();
  const first = tok.tokenToId('<0xF0>')!;
  const detok = new StreamingDetokenizer(tok, tok.encode('A', { addSpecial: true }));
  assert.equal(detok.push(first), '');
  assert.equal(detok.flush(), tok.decode([first]));
});

test('BOS in the output decodes to nothing', () => {
  const tok = storiesTokenizer();
  const detok = new StreamingDetokenizer(tok, tok.encode('Once', { addSpecial: true }));
  assert.equal(detok.push(tok.bosId!), '');
  assert.equal(detok.push(tok.encode(' upon')[1]!), ' upon');
});

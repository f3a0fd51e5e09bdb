import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generate, type GenerateOptions } from '../../cli/engine/generate.js';
import { StopStringFilter } from '../../cli/engine/stop-strings.js';
import type { SamplingParams } from '../../cli/engine/sampler.js';
import { storiesTokenizer } from './fixture-tokenizers.js';
import { ScriptedModel } from './scripted-model.js';
import type { TokenSampling } from '../../cli/engine/model-handle.js';

const GREEDY: SamplingParams = {
  temperature: 0, topK: 0, topP: 1, minP: 0, typicalP: 1, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
};

async function collect(run: AsyncIterable<{ id: number; text: string }>): Promise<{ ids: number[]; texts: string[] }> {
  const ids: number[] = [];
  const texts: string[] = [];
  for await (const t of run) {
    ids.push(t.id);
    texts.push(t.text);
  }
  return { ids, texts };
}

function setup(continuation: string, opts: Partial<GenerateOptions> = {}, maxSeqLen = 512) {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Once upon a time', { addSpecial: true });
  // The continuation as the model would produce it: the ids of prompt + continuation after the prompt's.
  const all = tok.encode(`Once upon a time${continuation}`, { addSpecial: true });
  assert.deepEqual(all.slice(0, prompt.length), prompt);
  const script = all.slice(prompt.length);
  const model = new ScriptedModel(512, maxSeqLen, prompt.length, [...script, ...(opts.stopTokenIds ?? [2])]);
  const run = generate(model, tok, prompt, { maxTokens: 100, sampling: GREEDY, seed: 1, ...opts });
  return { tok, prompt, script, model, run };
}

test('stop strings: the text before the stop string, even when it spans tokens, and not the string', async () => {
  const { tok, script, run } = setup(', there was a cat. The end. Then more text', { stop: ['The end'] });
  const { ids, texts } = await collect(run);
  const text = texts.join('');
  assert.equal(text, ', there was a cat. ');
  // The stop string really was split over several tokens.
  const pieces = script.map((id) => tok.idToToken(id)!);
  assert.ok(!pieces.some((p) => p.includes('The▁end') || p.includes('end.')), pieces.join('|'));
  assert.equal(run.stats.stopReason, 'stop-string');
  assert.deepEqual(ids, run.generatedIds);
  assert.ok(ids.length < script.length);
});

test('stop strings: a held-back prefix that does not complete is released, order kept', async () => {
  const filter = new StopStringFilter(['The end.']);
  const out = ['a The', ' e', 'nding'].map((t) => filter.push(t));
  assert.deepEqual(out.map((o) => o.text), ['a ', '', 'The ending']);
  assert.ok(out.every((o) => !o.stopped));
  const { run } = setup(', The endless sea.', { stop: ['The end.', 'xyz'] });
  const { texts } = await collect(run);
  assert.equal(texts.join(''), ', The endless sea.');
  assert.equal(run.stats.stopReason, 'eos');
});

test('EOS ends generation; its id is reported and its text is empty', async () => {
  const { script, run } = setup(', there was a dog.');
  const { ids, texts } = await collect(run);
  assert.deepEqual(ids, [...script, 2]);
  assert.equal(texts.at(-1), '');
  assert.equal(texts.join(''), ', there was a dog.');
  assert.equal(run.stats.stopReason, 'eos');
  assert.equal(run.stats.generatedTokens, script.length + 1);
});

test('BOS in the output is not a stop by default, and decodes to nothing', async () => {
  const { run, script } = setup(' there.', { maxTokens: 12, stopTokenIds: [1] });
  const { ids, texts } = await collect(run);
  assert.deepEqual(ids, [...script, 1]);
  assert.equal(run.stats.stopReason, 'eos');
  assert.equal(texts.join(''), ' there.');
  // Without stopTokenIds the same BOS is just an invisible token and generation goes on to the limit.
  const tok = storiesTokenizer();
  const prompt = tok.encode('Hi', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [1]);
  const run2 = generate(model, tok, prompt, { maxTokens: 5, sampling: GREEDY, seed: 1 });
  const r2 = await collect(run2);
  assert.deepEqual(r2.ids, [1, 1, 1, 1, 1]);
  assert.equal(r2.texts.join(''), '');
  assert.equal(run2.stats.stopReason, 'length');
});

test('max tokens: exactly n tokens, and text held for a possible stop string is flushed at the end', async () => {
  const { script, run } = setup(' and the dog ran away', { maxTokens: 4, stop: ['dog ate'] });
  const { ids, texts } = await collect(run);
  assert.deepEqual(ids, script.slice(0, 4));
  assert.equal(texts.join(''), storiesTokenizer().decode([...run.promptIds, ...ids]).slice('Once upon a time'.length));
  assert.equal(run.stats.stopReason, 'length');
});

test('prefill runs in chunks at the right positions, then one token per forward on the backend', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Once upon a time there was a little girl named Lily', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [300, 301, 2]);
  const run = generate(model, tok, prompt, { maxTokens: 10, sampling: GREEDY, seed: 1, prefillChunk: 4 });
  await collect(run);
  const n = prompt.length;
  const chunks = model.calls.filter((c) => c.pos < n);
  assert.deepEqual(chunks.map((c) => c.pos), Array.from({ length: Math.ceil(n / 4) }, (_, i) => i * 4));
  assert.deepEqual(chunks.flatMap((c) => c.tokens), prompt);
  assert.ok(chunks.slice(0, -1).every((c) => c.kind === 'forward' && c.tokens.length === 4));
  assert.equal(chunks.at(-1)!.kind, 'forwardSample');
  const steps = model.calls.filter((c) => c.pos >= n);
  assert.deepEqual(steps.map((c) => [c.pos, c.tokens]), [[n, [300]], [n + 1, [301]]]);
  assert.equal(run.stats.promptTokens, n);
  assert.ok(run.stats.promptMs >= 0 && run.stats.timeToFirstTokenMs >= 0 && run.stats.promptTokensPerSec > 0);
});

test('maxTokens 0: the whole prompt is read into the cache in chunks and timed; nothing is picked or yielded', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Once upon a time there was a little girl named Lily', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [300, 2]);
  const run = generate(model, tok, prompt, { maxTokens: 0, sampling: GREEDY, seed: 1, prefillChunk: 4 });
  const { ids } = await collect(run);
  assert.deepEqual(ids, []);
  assert.deepEqual(model.calls.map((c) => c.kind), Array(Math.ceil(prompt.length / 4)).fill('forward'));
  assert.deepEqual(model.calls.map((c) => c.pos), Array.from({ length: Math.ceil(prompt.length / 4) }, (_, i) => i * 4));
  assert.deepEqual(model.cachedTokens, prompt);
  assert.equal(run.stats.stopReason, 'length');
  assert.equal(run.stats.generatedTokens, 0);
  assert.equal(run.stats.timeToFirstTokenMs, 0);
  assert.ok(run.stats.promptMs > 0 && run.stats.promptTokensPerSec > 0, JSON.stringify(run.stats));
});

test('each backend pick names the next step for pipelining, but the last pick maxTokens allows', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Once upon a time', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [300, 301, 302, 303, 304]);
  const run = generate(model, tok, prompt, { maxTokens: 4, sampling: GREEDY, seed: 1 });
  const { ids } = await collect(run);
  assert.deepEqual(ids, [300, 301, 302, 303]);
  const picks = model.calls.filter((c) => c.kind === 'forwardSample');
  assert.equal(picks.length, 4);
  assert.deepEqual(picks.map((c) => c.next), [...Array(3).fill({ temperature: 0, topK: 0, uniform: 0 }), undefined]);
});

test('penalties sample on the host from full logits where the backend keeps no token history', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Hi', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [300, 2]);
  const run = generate(model, tok, prompt, { maxTokens: 5, sampling: { ...GREEDY, repeatPenalty: 1.1 }, seed: 1 });
  assert.deepEqual((await collect(run)).ids, [300, 2]);
  assert.ok(model.calls.every((c) => c.kind === 'forward'));
});

test('penalties go to a backend that keeps the token history: the prompt first, then picks pipelined there', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Hi', { addSpecial: true });
  const histories: number[][][] = [];
  const model = new (class extends ScriptedModel {
    async setTokenHistory(seen: ArrayLike<number>, generated: ArrayLike<number>): Promise<void> {
      histories.push([Array.from(seen), Array.from(generated)]);
    }
    override async forwardSample(tokens: ArrayLike<number>, pos: number, sampling: TokenSampling, next?: TokenSampling) {
      assert.deepEqual(sampling, PENALIZED_GREEDY);
      return super.forwardSample(tokens, pos, { temperature: 0, topK: 0, uniform: 0 }, next);
    }
  })(512, 512, prompt.length, [300, 301, 2]);
  const run = generate(model, tok, prompt, { maxTokens: 5, sampling: { ...GREEDY, repeatPenalty: 1.1 }, seed: 1 });
  assert.deepEqual((await collect(run)).ids, [300, 301, 2]);
  assert.deepEqual(histories, [[Array.from(prompt), []]]);
  assert.ok(model.calls.every((c) => c.kind === 'forwardSample'));
  assert.deepEqual(model.calls.map((c) => c.next), [PENALIZED_GREEDY, PENALIZED_GREEDY, PENALIZED_GREEDY]);
});
const PENALIZED_GREEDY = { temperature: 1, topK: 1, uniform: 0, repeatPenalty: 1.1, frequencyPenalty: 0, presencePenalty: 0 };

test('the end of the KV cache stops generation cleanly', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Hi there', { addSpecial: true });
  const model = new ScriptedModel(512, prompt.length + 3, prompt.length, [300]);
  const run = generate(model, tok, prompt, { maxTokens: 100, sampling: GREEDY, seed: 1 });
  const { ids } = await collect(run);
  assert.equal(ids.length, 4); // positions n..n+2 are fed; the 4th token is picked but never fed
  assert.equal(run.stats.stopReason, 'context');
  assert.throws(() => generate(model, tok, [...prompt, ...prompt, ...prompt], { maxTokens: 1, sampling: GREEDY, seed: 1 }),
    /context holds/);
});

test('an abort stops after the token in flight, with no further forward', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Hi', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [300]);
  const abort = new AbortController();
  const run = generate(model, tok, prompt, { maxTokens: 100, sampling: GREEDY, seed: 1, signal: abort.signal });
  let seen = 0;
  for await (const _ of run) {
    if (++seen === 3) abort.abort();
  }
  assert.equal(seen, 4);
  assert.equal(run.stats.stopReason, 'abort');
  assert.equal(model.calls.length, 4); // prefill+first pick, then one forward per later token
});

test('reuseCache prefills only the tokens after the prefix the cache already holds', async () => {
  const tok = storiesTokenizer();
  const first = tok.encode('Once upon a time there was a girl', { addSpecial: true });
  const model = new ScriptedModel(512, 512, first.length, [300, 2]);
  await collect(generate(model, tok, first, { maxTokens: 5, sampling: GREEDY, seed: 1 }));
  // The cache holds the first prompt and the fed reply token (300; the EOS pick is never fed).
  assert.deepEqual(model.cachedTokens, [...first, 300]);
  const second = [...first, 300, 2, 301, 302];
  model.calls.length = 0;
  const run = generate(model, tok, second, { maxTokens: 1, sampling: GREEDY, seed: 1, reuseCache: true });
  await collect(run);
  assert.deepEqual(model.calls.map((c) => [c.pos, c.tokens]), [[first.length + 1, [2, 301, 302]]]);
  assert.equal(run.stats.cachedPromptTokens, first.length + 1);
  // A prompt the cache holds whole still runs its last token, for the first pick's logits.
  model.calls.length = 0;
  await collect(generate(model, tok, second, { maxTokens: 1, sampling: GREEDY, seed: 1, reuseCache: true }));
  assert.deepEqual(model.calls.map((c) => [c.pos, c.tokens]), [[second.length - 1, [302]]]);
});

test('look-ahead: the next step is queued before the consumer sees a token', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Hi', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [300, 301, 302, 2]);
  const queuedWhenSeen: number[][] = [];
  for await (const t of generate(model, tok, prompt, { maxTokens: 10, sampling: GREEDY, seed: 1 })) {
    // the token being handled has already been fed at the next position (unless it ends generation)
    queuedWhenSeen.push([t.id, model.calls.at(-1)!.tokens[0]!]);
  }
  assert.deepEqual(queuedWhenSeen, [[300, 300], [301, 301], [302, 302], [2, 302]]);
});

test('look-ahead: a stop string leaves the cache as if the stopping token had never been fed', async () => {
  const { prompt, model, run } = setup(', there was a cat. The end. Then more text', { stop: ['The end'] });
  const { ids } = await collect(run);
  assert.equal(run.stats.stopReason, 'stop-string');
  // the last id completed the stop string: its queued step was dropped and trimmed away
  assert.equal(model.calls.at(-1)!.tokens[0], ids.at(-1));
  assert.deepEqual(model.cachedTokens, [...prompt, ...ids.slice(0, -1)]);
});

test('look-ahead: a consumer that stops iterating leaves the cache at the tokens it was given', async () => {
  const tok = storiesTokenizer();
  const prompt = tok.encode('Hi', { addSpecial: true });
  const model = new ScriptedModel(512, 512, prompt.length, [300, 301, 302, 303, 2]);
  const seen: number[] = [];
  for await (const t of generate(model, tok, prompt, { maxTokens: 10, sampling: GREEDY, seed: 1 })) {
    seen.push(t.id);
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen, [300, 301]);
  // 300 was fed to pick 301; 301's queued step is dropped when the loop stops
  assert.deepEqual(model.cachedTokens, [...prompt, 300]);
});

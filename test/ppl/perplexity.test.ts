// The perplexity engine (cli/engine/perplexity.ts) on its definitions: which windows each mode cuts and which
// predictions it scores, checked on small cases by hand and against transformers' per-position NLLs
// (reference.json) or NLLs computed here from forward() logits; the error estimate on numbers worked by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NllStats, planWindows, runPerplexity, windowInputs } from '../../cli/engine/perplexity.js';
import { UserError } from '../../cli/errors.js';
import { loadReference, nll, openModel, row } from '../cpu/reference.js';

const BOS = 1;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('gptq mode: non-overlapping chunks, every prediction scored, the partial tail dropped', () => {
  const plan = planWindows(10, { mode: 'gptq', ctx: 4 }, BOS);
  assert.deepEqual(plan.windows, [{ start: 0, firstScored: 0, bos: false }, { start: 4, firstScored: 0, bos: false }]);
  assert.equal(plan.predictions, 6);
  const ids = [1, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  assert.deepEqual(windowInputs(ids, 4, plan.windows[1], BOS),
    { tokens: Int32Array.from([14, 15, 16]), targets: Int32Array.from([15, 16, 17]) });
  assert.equal(planWindows(10, { mode: 'gptq', ctx: 4, maxChunks: 1 }, BOS).windows.length, 1);
});

test('llama.cpp mode: each chunk starts with BOS and scores its second half', () => {
  const plan = planWindows(10, { mode: 'llama.cpp', ctx: 5 }, BOS);
  assert.deepEqual(plan.windows.map((w) => [w.start, w.firstScored, w.bos]), [[0, 2, true], [5, 2, true]]);
  assert.equal(plan.predictions, 4);  // rows 2 and 3 of each: ctx - floor(ctx/2) - 1
  const ids = [1, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  assert.deepEqual(windowInputs(ids, 5, plan.windows[1], BOS),
    { tokens: Int32Array.from([BOS, 16, 17, 18]), targets: Int32Array.from([-1, -1, 18, 19]) });
  // A tokenizer that adds no BOS: chunks keep their own first token.
  assert.equal(windowInputs(ids, 5, planWindows(10, { mode: 'llama.cpp', ctx: 5 }, null).windows[1], null).tokens[0], 15);
});

test('--stride: windows every S tokens scoring their last S predictions (gptq: the first scores all)', () => {
  const gptq = planWindows(10, { mode: 'gptq', ctx: 4, stride: 2 }, BOS);
  assert.deepEqual(gptq.windows.map((w) => [w.start, w.firstScored]), [[0, 0], [2, 1], [4, 1], [6, 1]]);
  assert.equal(gptq.predictions, 9);  // every token after the first, once
  const ids = [1, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  assert.deepEqual(windowInputs(ids, 4, gptq.windows[3], BOS),
    { tokens: Int32Array.from([16, 17, 18]), targets: Int32Array.from([-1, 18, 19]) });
  const lcpp = planWindows(10, { mode: 'llama.cpp', ctx: 4, stride: 2 }, BOS);
  assert.deepEqual(lcpp.windows.map((w) => [w.start, w.firstScored, w.bos]), [[0, 1, true], [2, 1, true], [4, 1, true], [6, 1, true]]);
  assert.equal(lcpp.predictions, 8);
});

test('window shapes that score nothing, and texts shorter than a chunk, are refused', () => {
  const refuses = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof UserError && re.test(e.message));
  refuses(() => planWindows(10, { mode: 'gptq', ctx: 1 }, BOS), /--ctx: gptq mode needs chunks of at least 2 tokens, got 1/);
  refuses(() => planWindows(10, { mode: 'llama.cpp', ctx: 2 }, BOS), /at least 3/);
  refuses(() => planWindows(10, { mode: 'gptq', ctx: 4, stride: 4 }, BOS), /--stride: must be from 1 to 3/);
  refuses(() => planWindows(7, { mode: 'gptq', ctx: 8 }, BOS, 'a.txt'), /a\.txt: the text is 7 tokens; one chunk of --ctx 8 needs 8 tokens/);
});

test('the error is the standard error of the mean NLL carried to PPL (llama-perplexity\'s)', () => {
  const s = new NllStats();
  for (const v of [1, 2, 3, 4]) s.add(v);
  assert.equal(s.mean, 2.5);
  assert.ok(Math.abs(s.ppl - Math.exp(2.5)) < 1e-12);
  // population variance 1.25, over n - 1 = 3, square-rooted, times PPL
  assert.ok(Math.abs((s.pplError as number) - Math.sqrt(1.25 / 3) * Math.exp(2.5)) < 1e-12);
  const one = new NllStats();
  one.add(2);
  assert.equal(one.pplError, null);
});

test("llama.cpp mode on two reference sequences scores transformers' NLLs of their second halves", async () => {
  const ref = loadReference('stories260K');
  const [a, b] = ref.sequences.filter((s) => s.name.startsWith('sampled')).slice(0, 2);
  assert.equal(a.ids.length, 128);
  // Chunk 2 starts with 300, which llama.cpp mode replaces by BOS: it is then exactly sequence b.
  const ids = [...a.ids, 300, ...b.ids.slice(1)];
  const plan = planWindows(ids.length, { mode: 'llama.cpp', ctx: 128 }, BOS);
  const model = await openModel('stories260K');
  try {
    const r = await runPerplexity(model, ids, plan, BOS);
    const want = [...a.nll.slice(64, 127), ...b.nll.slice(64, 127)];
    assert.equal(r.tokens, want.length);
    assert.equal(r.chunks, 2);
    assert.ok(Math.abs(r.nll - mean(want)) < 1e-5, `${r.nll} vs ${mean(want)}`);
    assert.ok(Math.abs(r.runningPpl[0] - Math.exp(mean(a.nll.slice(64, 127)))) < 1e-4);
  } finally {
    model.close();
  }
});

test('--stride in gptq mode: the first window is the sequence itself, later ones match forward() logits', async () => {
  const ref = loadReference('stories260K');
  const seq = ref.sequences.find((s) => s.name === 'greedy201')!;
  const ctx = 64, stride = 16;
  const plan = planWindows(seq.ids.length, { mode: 'gptq', ctx, stride }, BOS);
  assert.equal(plan.windows.length, 9);  // starts 0, 16, ..., 128; the last ends at 192
  assert.equal(plan.predictions, 191);   // tokens 1..191, each once
  const model = await openModel('stories260K');
  try {
    const want: number[] = seq.nll.slice(0, ctx - 1);  // window 0: transformers' NLLs from the sequence start
    for (const w of plan.windows.slice(1)) {
      const window = seq.ids.slice(w.start, w.start + ctx - 1);
      const logits = await model.forward(window, 0, true);
      for (let r = ctx - 1 - stride; r < ctx - 1; r++) want.push(nll(row(logits, model.vocabSize, r), seq.ids[w.start + r + 1]));
    }
    const r = await runPerplexity(model, seq.ids, plan, BOS);
    assert.equal(r.tokens, want.length);
    assert.ok(Math.abs(r.nll - mean(want)) < 1e-5, `${r.nll} vs ${mean(want)}`);
    // Later windows see less context than the whole sequence does: their NLLs are not the sequence's.
    assert.ok(Math.abs(mean(want) - mean(seq.nll.slice(0, 191))) > 1e-4);
  } finally {
    model.close();
  }
});

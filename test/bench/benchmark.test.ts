// The measurement side of bench (cli/engine/benchmark.ts): test names, the order of the plan, mean and sd,
// what a run asks of the model (depth filled once, warm-up, timed runs), and the bandwidth arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bandwidthUse, decodeBytesPerToken, meanDecodeContext, meanSd, parseTestName, planTests, runTest, syntheticTokens, testName,
} from '../../cli/engine/benchmark.js';
import { ScriptedModel } from '../engine/scripted-model.js';

test('test names are llama-bench\'s, and parse back', () => {
  const plan = planTests([512, 2048], [128], [0, 2048]);
  assert.deepEqual(plan.map(testName), ['pp512', 'pp512@d2048', 'pp2048', 'pp2048@d2048', 'tg128', 'tg128@d2048']);
  for (const t of plan) assert.deepEqual(parseTestName(testName(t)), t);
  for (const bad of ['pp0', 'tg', 'pp512@d0', 'xx12', 'pp12@2048', 'pp-1']) assert.equal(parseTestName(bad), null, bad);
});

test('mean and sample standard deviation', () => {
  // Σ(x - 5)² = 32 over 8 values: sample variance 32/7.
  assert.deepEqual(meanSd([2, 4, 4, 4, 5, 5, 7, 9]), { mean: 5, sd: Math.sqrt(32 / 7) });
  assert.deepEqual(meanSd([42]), { mean: 42, sd: 0 });
});

test('a run fills the depth once, reuses it, warms up, then times each repetition from the same cache length', async () => {
  const model = new ScriptedModel(512, 64, 0, [7]);
  const runs: number[] = [];
  const pp = await runTest(model, { kind: 'pp', tokens: 4, depth: 8 }, 2, (i) => runs.push(i));
  assert.deepEqual(runs, [0, 0, 1, 2]);  // two warm-ups for a prompt test
  assert.equal(pp.tokensPerSec.length, 2);
  assert.ok(pp.tokensPerSec.every((x) => x > 0));
  assert.ok(pp.startMs <= pp.endMs);
  const ids = syntheticTokens(12, 512);
  assert.deepEqual(model.calls.map((c) => [c.kind, c.pos, c.tokens.length]), [
    ['forward', 0, 8],  // the depth, once
    ['forward', 8, 4], ['forward', 8, 4], ['forward', 8, 4], ['forward', 8, 4],  // 2 warm-ups + 2 timed, from depth 8
  ]);
  assert.deepEqual(model.calls[1].tokens, ids.slice(8));

  // A tg test at the same depth finds it cached and prefills nothing; it warms up once.
  model.calls.length = 0;
  const tg = await runTest(model, { kind: 'tg', tokens: 3, depth: 8 }, 1);
  assert.equal(tg.tokensPerSec.length, 1);
  assert.deepEqual(model.calls.map((c) => [c.kind, c.pos]), [
    ['forwardSample', 8], ['forwardSample', 9], ['forwardSample', 10],
    ['forwardSample', 8], ['forwardSample', 9], ['forwardSample', 10],
  ]);
  // A deeper test prefills only the positions the cache lacks: the tg runs fed synthetic id 8 at position 8
  // and then their own picks (id 7), so the cache still agrees with the synthetic ids up to position 9.
  assert.deepEqual(model.cachedTokens, [...ids.slice(0, 9), 7, 7]);
  model.calls.length = 0;
  await runTest(model, { kind: 'pp', tokens: 2, depth: 12 }, 1);
  assert.deepEqual(model.calls[0].pos, 9);
  assert.deepEqual(model.calls[0].tokens, ids.slice(9, 12));
});

test('bytes per token and bandwidth use, per stage of a split', () => {
  const memory = {
    weightsBytes: 3e9, kvCacheBytes: 4096 * 3000, scratchBytes: 0,
    devices: [
      { device: 0, weightsBytes: 1e9, kvCacheBytes: 4096 * 1000, scratchBytes: 0 },
      { device: 1, weightsBytes: 2e9, kvCacheBytes: 4096 * 2000, scratchBytes: 0 },
    ],
  };
  assert.equal(meanDecodeContext({ kind: 'tg', tokens: 128, depth: 2048 }), 2112);
  const stages = decodeBytesPerToken(memory, 4096, 100);
  assert.deepEqual(stages, [{ device: 0, bytes: 1e9 + 100 * 1000 }, { device: 1, bytes: 2e9 + 100 * 2000 }]);
  // GPU 0 reads at 1 TB/s, GPU 1 at 2 TB/s: one token needs ≥ 1.0001 ms + 1.0001 ms; at 250 t/s (4 ms) that is 50%.
  const use = bandwidthUse(stages, new Map([[0, 1e12], [1, 2e12]]), 250) as number;
  assert.ok(Math.abs(use - 0.0020002 * 250) < 1e-12, String(use));
  assert.equal(bandwidthUse(stages, new Map([[0, 1e12]]), 250), null, 'a GPU without a figure');
  assert.equal(bandwidthUse([{ device: -1, bytes: 1 }], new Map(), 10), null, 'the CPU');
});

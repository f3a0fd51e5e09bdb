import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_SAMPLING, NonFiniteLogitsError, Sampler, allCandidates, likelyCandidates, sortByLogit, applyPenalties, argmax, checkSampling, minPFilter, pickIndex, softmax,
  topKCandidates, topPFilter, typicalFilter, type SamplingParams,
} from '../../cli/engine/sampler.js';
import { Rng } from '../../cli/engine/rng.js';

const OFF: SamplingParams = {
  temperature: 1, topK: 0, topP: 1, minP: 0, typicalP: 1, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
};

/** Deterministic pseudo-random logits in [-5, 5). */
function randomLogits(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.uniform() * 10 - 5);
}

test('argmax takes the first index on ties', () => {
  assert.equal(argmax([1, 3, 3, 2]), 1);
  assert.equal(argmax(Float32Array.from([-2, -1, -3])), 1);
});

test('top-k keeps exactly the k largest logits, largest first, lower id on ties', () => {
  const logits = randomLogits(1000, 1);
  for (const k of [1, 5, 40, 999]) {
    const c = topKCandidates(logits, k);
    assert.equal(c.ids.length, k);
    const sorted = [...logits].sort((a, b) => b - a);
    assert.deepEqual(c.logits, sorted.slice(0, k));
    for (const id of c.ids) assert.ok(logits[id]! >= sorted[k - 1]!);
  }
  assert.deepEqual(topKCandidates([1, 2, 2, 2, 0], 2).ids, [1, 2]);
});

test('sortByLogit orders float32 rows as the comparator does: largest first, ties (and -0 / +0) by id', () => {
  const byComparator = (ids: number[], l: ArrayLike<number>) => [...ids].sort((a, b) => l[b]! - l[a]! || a - b);
  const row = randomLogits(5000, 11);
  for (const i of [7, 99, 4000]) row[i] = 2.5;  // ties
  row[10] = -0; row[11] = 0; row[12] = -0;
  row[13] = -Infinity; row[14] = -Infinity; row[15] = 3.4e38; row[16] = -3.4e38; row[17] = 1e-45; row[18] = -1e-45;
  const ids = Array.from({ length: row.length }, (_, i) => i);
  assert.deepEqual(sortByLogit([...ids], row), byComparator(ids, row));
  const some = [4000, 12, 99, 10, 7, 11, 13, 3, 14];
  assert.deepEqual(sortByLogit([...some], row), byComparator(some, row));
  // Plain number arrays keep the comparator (their values need not be float32).
  const plain = [0.1, 0.30000000000000004, 0.3, -0];
  assert.deepEqual(sortByLogit([0, 1, 2, 3], plain), [1, 2, 0, 3]);
});

test('top-p keeps the smallest most-likely set whose mass reaches p', () => {
  const all = allCandidates(randomLogits(200, 2));
  const probs = softmax(all.logits);
  for (const p of [0.1, 0.5, 0.9, 0.99]) {
    const kept = topPFilter(all, p);
    const n = kept.ids.length;
    assert.deepEqual(kept.ids, all.ids.slice(0, n));
    const mass = probs.slice(0, n).reduce((a, b) => a + b, 0);
    const massWithoutLast = mass - probs[n - 1]!;
    assert.ok(mass >= p, `mass ${mass} < ${p}`);
    assert.ok(massWithoutLast < p, `a smaller set already had ${massWithoutLast} >= ${p}`);
  }
  // Hand example: probabilities 0.5, 0.3, 0.2 → p = 0.79 keeps two, p = 0.81 keeps three.
  const hand = { ids: [7, 8, 9], logits: [Math.log(0.5), Math.log(0.3), Math.log(0.2)] };
  assert.deepEqual(topPFilter(hand, 0.79).ids, [7, 8]);
  assert.deepEqual(topPFilter(hand, 0.81).ids, [7, 8, 9]);
  assert.deepEqual(topPFilter(hand, 0.01).ids, [7]);
});

test('without top-k, top-p and min-p sort only likely tokens and keep exactly the same set', () => {
  for (const seed of [4, 5, 6]) {
    const logits = randomLogits(5000, seed);
    for (const t of [0.3, 1, 2]) {
      const all = allCandidates(logits);
      const scaled = { ids: all.ids, logits: all.logits.map((v) => v / t) };
      for (const p of [0.05, 0.5, 0.9, 0.999]) {
        const fast = topPFilter(likelyCandidates(logits, 1 / t, 1e-4, p), p);
        assert.deepEqual(fast.ids, topPFilter(scaled, p).ids, `T=${t} p=${p}`);
      }
      for (const m of [0.001, 0.2]) {
        assert.deepEqual(minPFilter(likelyCandidates(logits, 1 / t, m), m).ids, minPFilter(scaled, m).ids, `T=${t} min-p=${m}`);
      }
    }
  }
});

test('min-p drops exactly the tokens below min-p × the top probability', () => {
  const all = allCandidates(randomLogits(300, 3));
  const probs = softmax(all.logits);
  for (const m of [0.01, 0.1, 0.5]) {
    const kept = minPFilter(all, m);
    const expected = all.ids.filter((_, i) => probs[i]! >= m * probs[0]!);
    assert.deepEqual(kept.ids, expected);
  }
  const hand = { ids: [0, 1, 2], logits: [Math.log(0.6), Math.log(0.3), Math.log(0.1)] };
  assert.deepEqual(minPFilter(hand, 0.49).ids, [0, 1]); // 0.3 >= 0.294 > 0.1
  assert.deepEqual(minPFilter(hand, 0.51).ids, [0]); // 0.3 < 0.306
});

test('typical-p keeps the tokens whose surprisal is nearest the entropy until the mass reaches p', () => {
  // Probabilities 0.5, 0.25, 0.125, 0.125: entropy 1.75 bits = 1.2130 nats; surprisals (nats) 0.693,
  // 1.386, 2.079, 2.079 → distances 0.520, 0.173, 0.866, 0.866: order 1, 0, 2, 3.
  const hand = { ids: [10, 11, 12, 13], logits: [0.5, 0.25, 0.125, 0.125].map(Math.log) };
  assert.deepEqual(typicalFilter(hand, 0.2).ids, [11]);
  assert.deepEqual(typicalFilter(hand, 0.6).ids, [10, 11]);
  assert.deepEqual(typicalFilter(hand, 0.8).ids, [10, 11, 12]);
});

test('repetition penalty divides positive and multiplies negative logits (HF); frequency/presence as OpenAI', () => {
  const logits = Float32Array.from([2, -2, 1, 0.5, -1]);
  const p = { ...OFF, repeatPenalty: 1.25, frequencyPenalty: 0.5, presencePenalty: 0.25 };
  applyPenalties(logits, p, [0, 1, 3], new Map([[3, 2], [4, 1]]));
  // id 0: 2/1.25; id 1: -2*1.25; id 2 untouched; id 3: 0.5/1.25 - 2*0.5 - 0.25; id 4: -1 - 0.5 - 0.25.
  const expected = [1.6, -2.5, 1, 0.4 - 1 - 0.25, -1.75];
  expected.forEach((v, i) => assert.ok(Math.abs(logits[i]! - v) < 1e-6, `id ${i}: ${logits[i]} vs ${v}`));
});

test('greedy with a repetition penalty picks the best unpenalized token', () => {
  const s = new Sampler({ ...OFF, temperature: 0, repeatPenalty: 10 }, 1);
  s.observePrompt([0]);
  assert.equal(s.sample(Float32Array.from([5, 4, 3])), 1);
  assert.equal(s.backendSampling(), null);
  assert.deepEqual(new Sampler({ ...OFF, temperature: 0 }, 1).backendSampling(), { temperature: 0, topK: 0, uniform: 0 });
});

test('penalties go to the backend once it holds the token history, with the same random numbers as here', () => {
  const penalties = { repeatPenalty: 1.2, frequencyPenalty: 0.5, presencePenalty: -0.25 };
  const greedy = new Sampler({ ...OFF, temperature: 0, ...penalties }, 1);
  assert.equal(greedy.backendSampling(), null);
  greedy.penaltiesOnBackend();
  assert.deepEqual(greedy.backendSampling(), { temperature: 1, topK: 1, uniform: 0, ...penalties });
  const params = { ...DEFAULT_SAMPLING, ...penalties };
  const onBackend = new Sampler(params, 9), here = new Sampler(params, 9);
  onBackend.penaltiesOnBackend();
  const draw = onBackend.backendSampling()!;
  assert.deepEqual({ ...draw, uniform: 0 }, { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, uniform: 0, ...penalties });
  assert.equal(draw.uniform, new Rng(9).uniform());  // the draw the host pick would have made
  assert.equal(here.backendSampling(), null);
  const typical = new Sampler({ ...params, typicalP: 0.9 }, 9);
  typical.penaltiesOnBackend();
  assert.deepEqual({ ...typical.backendSampling(), uniform: 0 },
    { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, typicalP: 0.9, uniform: 0, ...penalties });
});

test('pickIndex follows the cumulative distribution', () => {
  const probs = [0.2, 0.5, 0.3];
  assert.equal(pickIndex(probs, 0), 0);
  assert.equal(pickIndex(probs, 0.19), 0);
  assert.equal(pickIndex(probs, 0.2), 1);
  assert.equal(pickIndex(probs, 0.69), 1);
  assert.equal(pickIndex(probs, 0.71), 2);
  assert.equal(pickIndex(probs, 0.999999), 2);
});

function picks(params: SamplingParams, seed: number, n = 50): number[] {
  const s = new Sampler(params, seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = s.sample(randomLogits(500, 100 + i));
    s.accept(id);
    out.push(id);
  }
  return out;
}

test('same seed → same picks; a different seed → different picks', () => {
  for (const params of [OFF, { ...DEFAULT_SAMPLING }, { ...OFF, topK: 20, typicalP: 0.9, presencePenalty: 0.5 }]) {
    assert.deepEqual(picks(params, 42), picks(params, 42));
    assert.notDeepEqual(picks(params, 42), picks(params, 43));
  }
});

test('temperature sampling matches the softmax distribution (chi-square)', () => {
  const logits = Float32Array.from([1, 0, -1, 0.5]);
  const t = 0.7;
  const expected = softmax([...logits].map((v) => v / t));
  const s = new Sampler({ ...OFF, temperature: t }, 7);
  const n = 20000;
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) counts[s.sample(Float32Array.from(logits))]!++;
  const chi2 = counts.reduce((acc, c, i) => acc + (c - n * expected[i]!) ** 2 / (n * expected[i]!), 0);
  assert.ok(chi2 < 16.27, `chi-square ${chi2} (3 dof, p=0.001 cut-off 16.27)`);
});

test('samples only ever come from the filtered set', () => {
  const logits = randomLogits(500, 9);
  const top5 = new Set(topKCandidates(logits, 5).ids);
  const s = new Sampler({ ...OFF, topK: 5, temperature: 2 }, 3);
  for (let i = 0; i < 500; i++) assert.ok(top5.has(s.sample(Float32Array.from(logits))));
  assert.deepEqual(s.backendSampling()?.topK, 5); // temperature + top-k alone can run on the backend
});

test('top-p, min-p and typical-p go to the backend with the pick, with any top-k (0: the whole vocabulary)', () => {
  const chat = new Sampler({ ...DEFAULT_SAMPLING }, 5).backendSampling();
  assert.ok(chat !== null && chat.uniform >= 0 && chat.uniform < 1);
  assert.deepEqual({ ...chat, uniform: 0 }, { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, uniform: 0 });
  for (const topK of [0, 100, 50000]) {
    const draw = new Sampler({ ...DEFAULT_SAMPLING, topK }, 5).backendSampling();
    assert.deepEqual({ ...draw, uniform: 0 }, { temperature: 0.8, topK, topP: 0.95, minP: 0.05, uniform: 0 });
  }
  assert.equal(new Sampler({ ...DEFAULT_SAMPLING, topP: 1, minP: 0, topK: 0 }, 5).backendSampling()?.topK, 0);
  const typical = new Sampler({ ...DEFAULT_SAMPLING, typicalP: 0.9 }, 5).backendSampling();
  assert.deepEqual({ ...typical, uniform: 0 }, { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, typicalP: 0.9, uniform: 0 });
  assert.equal('typicalP' in chat, false);  // off: not sent
});

test('peekBackendSampling draws the next backend pick ahead: the same numbers, in the same order', () => {
  const params = { ...OFF, topK: 40, temperature: 0.8 };
  const plain = new Sampler(params, 7), peeking = new Sampler(params, 7);
  const a = Array.from({ length: 6 }, () => plain.backendSampling());
  const b: (ReturnType<Sampler['backendSampling']>)[] = [];
  for (let i = 0; i < 6; i++) {
    b.push(peeking.backendSampling());
    if (i % 2 === 0) assert.deepEqual(peeking.peekBackendSampling(), a[i + 1]);  // peeked once ...
    if (i === 2) assert.deepEqual(peeking.peekBackendSampling(), a[i + 1]);     // ... or twice: drawn once
  }
  assert.deepEqual(b, a);
  assert.ok(a.every((x) => x !== null && x.uniform > 0 && x.uniform < 1));
  assert.equal(new Sampler({ ...OFF, repeatPenalty: 1.1 }, 1).peekBackendSampling(), null);
});

test('out-of-range parameters are named, with the value given', () => {
  assert.match(checkSampling({ ...OFF, temperature: -1 })!, /temperature/);
  assert.match(checkSampling({ ...OFF, topP: 0 })!, /top-p/);
  assert.equal(checkSampling({ ...OFF, topP: 1.5 }), 'top-p must be in (0, 1] (got 1.5)');
  assert.equal(checkSampling({ ...OFF, repeatPenalty: -2 }), 'repeat-penalty must be > 0 (got -2; 1: off)');
  assert.match(checkSampling({ ...OFF, topK: 1.5 })!, /top-k/);
  assert.match(checkSampling({ ...OFF, minP: 2 })!, /min-p/);
  assert.match(checkSampling({ ...OFF, typicalP: 0 })!, /typical-p/);
  assert.match(checkSampling({ ...OFF, repeatPenalty: 0 })!, /repeat-penalty/);
  assert.match(checkSampling({ ...OFF, presencePenalty: 3 })!, /presence-penalty/);
  // Values the backend would read as an int or a float out of range.
  assert.match(checkSampling({ ...OFF, topK: 2 ** 31 })!, /top-k/);
  assert.match(checkSampling({ ...OFF, temperature: 1e39 })!, /temperature/);
  assert.equal(checkSampling({ ...OFF, topK: 2 ** 31 - 1 }), null);
  assert.equal(checkSampling(DEFAULT_SAMPLING), null);
});

test('NaN or infinite logits stop every sampling mode with one clear error; -infinity alone is a mask', () => {
  const modes: SamplingParams[] = [
    { ...OFF, temperature: 0 }, { ...OFF, temperature: 0.8 }, { ...OFF, temperature: 0.8, topK: 5 },
    DEFAULT_SAMPLING, { ...OFF, typicalP: 0.5 }, { ...OFF, temperature: 0, repeatPenalty: 1.3 },
  ];
  for (const params of modes) {
    const s = new Sampler(params, 3);
    assert.throws(() => s.sample(Float32Array.from([0.5, NaN, 1])), (e: Error) =>
      e instanceof NonFiniteLogitsError && /logits are not finite \(NaN at token 1 of 3\)/.test(e.message));
    assert.throws(() => s.sample(Float32Array.from([0.5, Infinity, 1])), /\+infinity at token 1 of 3/);
    assert.throws(() => s.sample(Float32Array.from([-Infinity, -Infinity])), /all 2 are -infinity/);
    assert.equal(s.sample(Float32Array.from([-Infinity, 2, -Infinity])), 1);
  }
});

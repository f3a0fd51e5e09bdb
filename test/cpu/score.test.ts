// The backend's scoring entry (perplexity): one NLL per position, checked against transformers' reference
// NLLs, and the KV-cache mirror that multi-turn chat relies on.
import test from 'node:test';
import assert from 'node:assert/strict';
import { MODELS, loadReference, openModel } from './reference.js';

for (const name of MODELS) {
  test(`score() gives transformers' per-position NLL on ${name}`, async () => {
    const ref = loadReference(name);
    const model = await openModel(name);
    try {
      for (const seq of ref.sequences) {
        const tokens = seq.ids.slice(0, -1);
        const targets = seq.ids.slice(1);
        const nll = await model.score(tokens, 0, targets);
        assert.equal(nll.length, tokens.length);
        for (let i = 0; i < tokens.length; i++) {
          assert.ok(Math.abs(nll[i] - seq.nll[i]) <= 1e-4 * Math.max(1, Math.abs(seq.nll[i])),
            `${seq.name} position ${i}: ${nll[i]} vs ${seq.nll[i]}`);
        }
      }
    } finally {
      model.close();
    }
  });
}

test('score() skips targets < 0 and continues an existing cache', async () => {
  const ref = loadReference('stories260K');
  const seq = ref.sequences[0];
  const model = await openModel('stories260K');
  try {
    const half = 10;
    await model.forward(seq.ids.slice(0, half), 0);
    const targets = seq.ids.slice(half + 1).map((t, i) => (i % 2 ? -1 : t));
    const nll = await model.score(seq.ids.slice(half, -1), half, targets);
    for (let i = 0; i < targets.length; i++) {
      if (targets[i] < 0) assert.equal(nll[i], 0);
      else assert.ok(Math.abs(nll[i] - seq.nll[half + i]) < 1e-4, `position ${half + i}`);
    }
    assert.deepEqual(model.cachedTokens, seq.ids.slice(0, -1));
  } finally {
    model.close();
  }
});

test('cachedTokens mirrors the cache through forwards, trims and a failed call', async () => {
  const model = await openModel('stories260K');
  try {
    await model.forward([1, 300, 301, 302], 0);
    assert.deepEqual(model.cachedTokens, [1, 300, 301, 302]);
    const trimmed = model.trimCache(2);
    assert.deepEqual(model.cachedTokens, [1, 300]);  // the mirror moves at once; the trim is queued in order
    await trimmed;
    await model.forward([400], 2);
    assert.deepEqual(model.cachedTokens, [1, 300, 400]);
    await assert.rejects(model.forward([999_999], 3));
    assert.deepEqual(model.cachedTokens, [1, 300, 400]);
    assert.equal(model.cacheLength, 3);
  } finally {
    model.close();
  }
});

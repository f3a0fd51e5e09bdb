// Greedy decoding with the KV cache against the reference continuations (transformers, and llama2.c's own).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODELS, greedy, loadReference, nll, openModel } from './reference.js';

for (const name of MODELS) {
  test(`${name}: 64-token greedy continuations from BOS and from the golden prefix`, async () => {
    const ref = loadReference(name);
    const model = await openModel(name);
    try {
      for (const which of ['from_bos', 'from_golden'] as const) {
        const g = ref.greedy[which];
        assert.deepEqual(await greedy(model, g.prompt, g.n_new), g.new_ids, which);
      }
    } finally {
      model.close();
    }
  });

  test(`${name}: stories.txt perplexity over 37 chunks of 128 ids`, async () => {
    const { ppl_text: p } = loadReference(name);
    const model = await openModel(name);
    try {
      let total = 0, predictions = 0;
      for (let c = 0; c < p.n_chunks; c++) {
        const ids = p.ids.slice(c * p.chunk_len, (c + 1) * p.chunk_len);
        const logits = await model.forward(ids, 0, true);
        for (let t = 0; t + 1 < ids.length; t++) {
          total += nll(logits.subarray(t * model.vocabSize, (t + 1) * model.vocabSize), ids[t + 1]);
          predictions++;
        }
      }
      assert.equal(p.n_chunks, 37);
      assert.equal(predictions, p.n_predictions);
      const ppl = Math.exp(total / predictions);
      assert.ok(Math.abs(ppl / p.ppl - 1) <= 1e-3, `ppl ${ppl} vs ${p.ppl}`);
    } finally {
      model.close();
    }
  });
}

test("stories260K (fp16): greedy from BOS reproduces llama2.c's 200 expected tokens", async () => {
  const ref = loadReference('stories260K');
  const expected = ref.sequences.find((s) => s.name === 'greedy201')!.ids;
  assert.equal(expected.length, 201);
  const model = await openModel('stories260K');
  try {
    assert.deepEqual([1, ...(await greedy(model, [1], 200))], expected);
  } finally {
    model.close();
  }
});

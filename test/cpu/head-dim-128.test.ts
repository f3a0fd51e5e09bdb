// The head_dim-128 GPTQ fixtures (random weights, asymmetric zeros, 2 query heads on 1 KV head; one plain, one
// act-order; see fixtures/models/README.md) against transformers: the real models' head size, which the stories260K
// fixtures (head_dim 8) do not have. The same references check the CUDA backend on the GPU machine (check-cuda.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { argmax, greedy, loadReference, modelDir, nll, openModel, relError, row, type RefSequence } from './reference.js';

const NAMES = [
  { name: 'random-hd128-gptq-4bit-g128', descAct: false },
  { name: 'random-hd128-gptq-4bit-g128-actorder', descAct: true },
];
const TOLERANCE = 1e-3;
const TIE = 1e-2; // top-1 is compared where the reference's first two logits are further apart than this

/** Worst logit error over the top-5 of every row, top-1 mismatches at clear positions, and the sequence's NLLs. */
function compareRows(rowAt: (t: number) => Float32Array, seq: RefSequence) {
  let worst = 0, mismatches = 0, worstNll = 0;
  for (let t = 0; t < seq.ids.length; t++) {
    const r = rowAt(t);
    worst = Math.max(worst, relError(r, seq.top5[t]));
    const [first, second] = seq.top5[t];
    if (first[1] - second[1] > TIE && argmax(r) !== first[0]) mismatches++;
    if (t + 1 < seq.ids.length) worstNll = Math.max(worstNll, Math.abs(nll(r, seq.ids[t + 1]) - seq.nll[t]) / seq.nll[t]);
  }
  return { worst, mismatches, worstNll };
}

for (const { name: NAME, descAct } of NAMES) {
  test(`${NAME}: the folder has the real head size (head_dim 128, grouped-query, asymmetric zeros)`, () => {
    const { arch, quant } = loadModelSpec(modelDir(NAME));
    assert.equal(arch.headDim, 128);
    assert.equal(arch.numHeads / arch.numKvHeads, 2);
    assert.equal(quant?.sym, false);
    assert.equal(quant?.descAct, descAct);
  });

  test(`${NAME}: prompt logits at every position match transformers, in one chunk and in chunks of 37`, async () => {
    const [seq] = loadReference(NAME).sequences;
    for (const maxChunkTokens of [512, 37]) {
      const model = await openModel(NAME, { maxChunkTokens });
      try {
        const V = model.vocabSize;
        const logits = await model.forward(seq.ids, 0, true);
        const { worst, mismatches, worstNll } = compareRows((t) => row(logits, V, t), seq);
        assert.ok(worst <= TOLERANCE, `chunks of ${maxChunkTokens}: relative logit error ${worst}`);
        assert.equal(mismatches, 0, `chunks of ${maxChunkTokens}: top-1 mismatches`);
        assert.ok(worstNll <= TOLERANCE, `chunks of ${maxChunkTokens}: relative NLL error ${worstNll}`);
        const last = row(logits, V, seq.ids.length - 1);
        assert.ok(relError(last, seq.last_logits.map((v, i) => [i, v] as [number, number])) <= TOLERANCE, 'last row');
      } finally {
        model.close();
      }
    }
  });

  test(`${NAME}: one token at a time through the KV cache, every step's logits match transformers`, async () => {
    const [seq] = loadReference(NAME).sequences;
    const model = await openModel(NAME);
    try {
      const V = model.vocabSize;
      const rows: Float32Array[] = [];
      for (let t = 0; t < seq.ids.length; t++) rows.push((await model.forward([seq.ids[t]], t, false)).slice(0, V));
      assert.equal(rows.length, 500);
      const { worst, mismatches, worstNll } = compareRows((t) => rows[t], seq);
      assert.ok(worst <= TOLERANCE, `relative logit error ${worst}`);
      assert.equal(mismatches, 0, 'top-1 mismatches');
      assert.ok(worstNll <= TOLERANCE, `relative NLL error ${worstNll}`);
    } finally {
      model.close();
    }
  });

  test(`${NAME}: greedy continuations and the chunked perplexity match transformers`, async () => {
    const ref = loadReference(NAME);
    const model = await openModel(NAME);
    try {
      for (const which of ['from_bos', 'from_golden'] as const) {
        const g = ref.greedy[which];
        assert.deepEqual(await greedy(model, g.prompt, g.n_new), g.new_ids, which);
      }
      const p = ref.ppl_text;
      let total = 0;
      for (let c = 0; c < p.n_chunks; c++) {
        const ids = p.ids.slice(c * p.chunk_len, (c + 1) * p.chunk_len);
        const logits = await model.forward(ids, 0, true);
        for (let t = 0; t + 1 < ids.length; t++) total += nll(row(logits, model.vocabSize, t), ids[t + 1]);
      }
      const ppl = Math.exp(total / p.n_predictions);
      assert.ok(Math.abs(ppl / p.ppl - 1) <= 1e-3, `ppl ${ppl} vs ${p.ppl}`);
    } finally {
      model.close();
    }
  });
}

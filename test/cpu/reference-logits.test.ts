// Every position's logits from one batched CPU forward against HF transformers' float32 reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODELS, argmax, loadReference, nll, openModel, relError, row } from './reference.js';

const TOLERANCE = 1e-3;

for (const name of MODELS) {
  test(`${name}: logits, top-1 and NLL at every position match transformers`, async () => {
    const ref = loadReference(name);
    const model = await openModel(name);
    try {
      const V = model.vocabSize;
      for (const seq of ref.sequences) {
        const logits = await model.forward(seq.ids, 0, true);
        assert.equal(logits.length, seq.ids.length * V);
        let worst = 0, total = 0;
        for (let t = 0; t < seq.ids.length; t++) {
          const r = row(logits, V, t);
          worst = Math.max(worst, relError(r, seq.top5[t]));
          assert.equal(argmax(r), seq.top5[t][0][0], `${seq.name} top-1 at position ${t}`);
          if (t + 1 < seq.ids.length) {
            const ours = nll(r, seq.ids[t + 1]);
            assert.ok(Math.abs(ours - seq.nll[t]) <= 1e-3 * Math.max(1, seq.nll[t]),
              `${seq.name} NLL at ${t}: ${ours} vs ${seq.nll[t]}`);
            total += ours;
          }
        }
        const last = row(logits, V, seq.ids.length - 1);
        worst = Math.max(worst, relError(last, seq.last_logits.map((v, i) => [i, v] as [number, number])));
        assert.ok(worst <= TOLERANCE, `${seq.name}: relative logit error ${worst}`);
        const ppl = Math.exp(total / (seq.ids.length - 1));
        assert.ok(Math.abs(ppl / seq.ppl - 1) <= 1e-4, `${seq.name}: ppl ${ppl} vs ${seq.ppl}`);
      }
    } finally {
      model.close();
    }
  });
}

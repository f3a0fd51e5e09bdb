// RoPE scaling (linear, dynamic NTK, llama3, YaRN) and Qwen2 q/k/v biases against transformers' float32 logits.
// Each variant is the stories260K fp16 fixture with another config.json (and extra bias tensors);
// test/cpu/fixtures/variants was made by scripts/device/cpu-variant-references.py (transformers 5.18; the
// two YaRN variants with 5.17 on the GPU machine, their reference.json says which).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { NativeModel } from '../../cli/engine/native-model.js';
import { repoRoot } from '../helpers/run-cli.js';
import { readSafetensors, rewriteTensors } from '../helpers/safetensors-writer.js';
import { copyFixture } from '../loader/model-dir.js';
import { argmax, relError, row } from './reference.js';

const VARIANTS = join(repoRoot, 'test', 'cpu', 'fixtures', 'variants');

interface VariantReference {
  ids: number[];
  top5: [number, number][][];
  last_logits: number[];
}

const names = readdirSync(VARIANTS).sort();

test('every variant fixture is present', () => {
  assert.deepEqual(names, ['qwen2-qkv-bias', 'rope-dynamic', 'rope-linear', 'rope-llama3', 'rope-yarn', 'rope-yarn-mscale']);
});

for (const name of names) {
  test(`${name}: logits at every position match transformers`, async () => {
    const src = join(VARIANTS, name);
    const ref = JSON.parse(readFileSync(join(src, 'reference.json'), 'utf8')) as VariantReference;
    const dir = copyFixture('stories260K');
    copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
    if (existsSync(join(src, 'extra.safetensors'))) {
      const extra = readSafetensors(join(src, 'extra.safetensors')).tensors;
      rewriteTensors(join(dir, 'model.safetensors'), (ts) => [...ts, ...extra]);
    }
    const spec = loadModelSpec(dir);
    // Also in chunks of 37 tokens: dynamic NTK must still scale every chunk by the whole call's length.
    for (const maxChunkTokens of [512, 37]) {
      const model = await NativeModel.open(spec, { backend: 'cpu', maxSeqLen: ref.ids.length, maxChunkTokens });
      try {
        const logits = await model.forward(ref.ids, 0, true);
        let worst = 0;
        for (let t = 0; t < ref.ids.length; t++) {
          const r = row(logits, model.vocabSize, t);
          worst = Math.max(worst, relError(r, ref.top5[t]));
          assert.equal(argmax(r), ref.top5[t][0][0], `top-1 at position ${t} (chunks of ${maxChunkTokens})`);
        }
        const last = row(logits, model.vocabSize, ref.ids.length - 1);
        worst = Math.max(worst, relError(last, ref.last_logits.map((v, i) => [i, v] as [number, number])));
        assert.ok(worst <= 1e-3, `relative logit error ${worst} (chunks of ${maxChunkTokens})`);
      } finally {
        model.close();
      }
    }
  });
}

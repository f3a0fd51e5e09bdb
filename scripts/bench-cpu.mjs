#!/usr/bin/env node
// CPU backend throughput on the stories260K fixtures: prompt (batched) and decode (one token per step)
// tokens per second. Not a test; run after `npm run build`:
//   node scripts/bench-cpu.mjs [--threads N] [--prompt 128] [--decode 256] [--model stories260K]
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { loadModelSpec } = await import(join(root, 'dist/cli/engine/loader/index.js'));
const { NativeModel } = await import(join(root, 'dist/cli/engine/native-model.js'));

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '0' },
    prompt: { type: 'string', default: '128' },
    decode: { type: 'string', default: '256' },
    model: { type: 'string', multiple: true },
  },
});
const models = values.model ?? ['stories260K', 'stories260K-gptq-4bit-g32', 'stories260K-gptq-4bit-g64-actorder'];
const promptLen = Number(values.prompt), decodeLen = Number(values.decode), threads = Number(values.threads);

// Real text ids (stories.txt, tokenized by the reference recipe) as the prompt.
const textIds = JSON.parse(readFileSync(join(root, 'fixtures/models/stories260K/reference.json'), 'utf8')).ppl_text.ids;

async function timeIt(fn, minMs = 1000) {
  await fn(); // warm-up
  let runs = 0;
  const start = performance.now();
  while (performance.now() - start < minMs) {
    await fn();
    runs++;
  }
  return (performance.now() - start) / runs / 1000; // seconds per run
}

for (const name of models) {
  const model = await NativeModel.open(loadModelSpec(join(root, 'fixtures/models', name)), { backend: 'cpu', threads });
  const prompt = textIds.slice(0, Math.min(promptLen, model.maxSeqLen));
  const promptS = await timeIt(() => model.forward(prompt, 0, false));
  const steps = Math.min(decodeLen, model.maxSeqLen - 1);
  const decodeS = await timeIt(async () => {
    await model.trimCache(0);
    let next = 1;
    for (let pos = 0; pos < steps; pos++) {
      const logits = await model.forward([next], pos, false);
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
      next = best;
    }
  });
  console.log(`${name.padEnd(36)} prompt ${prompt.length} tok: ${(prompt.length / promptS).toFixed(0).padStart(8)} tok/s   ` +
    `decode ${steps} tok: ${(steps / decodeS).toFixed(0).padStart(7)} tok/s`);
  model.close();
}

// Benchmarks the CUDA backend on random GPTQ 4-bit models of real shapes (--dummy presets), built on the GPU.
//   node scripts/device/bench-cuda.mjs [--models llama-7b,llama-13b,llama-70b] [--copy-gbs 3000] [--json FILE]
// Decode t/s at context 128 and 2048 (one token per step, greedy pick on the GPU, as generation does),
// prefill t/s for 512 and 2048 tokens, load time and GPU memory; bandwidth use = bytes read per token × t/s
// ÷ the measured device copy bandwidth (--copy-gbs, GB/s counting read + write).
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { NativeModel } from '../../dist/cli/engine/native-model.js';

const args = process.argv.slice(2);
const opt = (name, def) => (args.includes(name) ? args[args.indexOf(name) + 1] : def);
const models = opt('--models', 'llama-7b,llama-13b,llama-70b').split(',');
const copyGBs = Number(opt('--copy-gbs', '3000'));
const jsonOut = opt('--json', null);
const SHAPES = {  // layers, hidden, kv dim, vocab: what a token's KV read costs
  'llama-7b': { layers: 32, kvDim: 4096 }, 'llama-13b': { layers: 40, kvDim: 5120 },
  'llama3-8b': { layers: 32, kvDim: 1024 }, 'llama-70b': { layers: 80, kvDim: 1024 }, tiny: { layers: 2, kvDim: 128 },
};

function median(xs) { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; }
function randomTokens(n, vocab) { return Int32Array.from({ length: n }, (_, i) => (i * 7919 + 13) % (vocab - 3) + 3); }

async function prefillRate(model, n, reps) {
  const toks = randomTokens(n, model.vocabSize);
  const times = [];
  for (let r = 0; r < reps + 1; r++) {
    model.trimCache(0);
    const t0 = performance.now();
    await model.forward(toks, 0, false);
    if (r > 0) times.push(performance.now() - t0);  // the first run warms up
  }
  return n / (median(times) / 1000);
}

async function decodeRate(model, ctx, steps) {
  model.trimCache(0);
  await model.forward(randomTokens(ctx, model.vocabSize), 0, false);
  let pos = ctx, id = 5;
  const sampling = { temperature: 0, topK: 0, uniform: 0 };
  for (let i = 0; i < 8; i++) id = await model.forwardSample([id], pos++, sampling);  // warm-up, graph capture
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) id = await model.forwardSample([id], pos++, sampling);
  return steps / ((performance.now() - t0) / 1000);
}

const rows = [];
for (const name of models) {
  const t0 = performance.now();
  const model = await NativeModel.openDummy(name, { maxSeqLen: 4096 });
  const loadS = (performance.now() - t0) / 1000;
  const mem = model.memory();
  const shape = SHAPES[name];
  const row = { model: name, loadSeconds: +loadS.toFixed(2), weightsGiB: mem.weightsBytes / 2 ** 30,
    kvCacheGiB: mem.kvCacheBytes / 2 ** 30, scratchGiB: mem.scratchBytes / 2 ** 30 };
  for (const ctx of [128, 2048]) {
    const tps = await decodeRate(model, ctx, name === 'llama-70b' ? 64 : 256);
    const bytesPerToken = mem.weightsBytes + ctx * shape.layers * 2 * shape.kvDim * 2;
    row[`decode${ctx}`] = +tps.toFixed(1);
    row[`bandwidthUse${ctx}`] = +((bytesPerToken * tps) / (copyGBs * 1e9)).toFixed(3);
    row[`floor${ctx}`] = +((copyGBs * 1e9) / bytesPerToken).toFixed(1);
  }
  for (const n of [512, 2048]) row[`prefill${n}`] = +(await prefillRate(model, n, 5)).toFixed(0);
  // Memory for a 2048-token cache, as a user with --max-seq-len 2048 would get it.
  model.close();
  const small = await NativeModel.openDummy(name, { maxSeqLen: 2048 });
  const m2 = small.memory();
  row.totalGiBAt2048 = +((m2.weightsBytes + m2.kvCacheBytes + m2.scratchBytes) / 2 ** 30).toFixed(3);
  row.totalGBAt2048 = +((m2.weightsBytes + m2.kvCacheBytes + m2.scratchBytes) / 1e9).toFixed(3);
  small.close();
  rows.push(row);
  console.log(JSON.stringify(row));
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(rows, null, 2));
console.log('\nmodel       load s  decode@128  floor  use   decode@2048  floor  use   pp512    pp2048   GB@2048');
for (const r of rows) {
  console.log(`${r.model.padEnd(11)} ${String(r.loadSeconds).padStart(6)}  ${String(r.decode128).padStart(10)} ${String(r.floor128).padStart(6)} ${r.bandwidthUse128.toFixed(2)}  ${String(r.decode2048).padStart(11)} ${String(r.floor2048).padStart(6)} ${r.bandwidthUse2048.toFixed(2)}  ${String(r.prefill512).padStart(7)}  ${String(r.prefill2048).padStart(7)}  ${r.totalGBAt2048}`);
}

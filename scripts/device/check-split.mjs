// The GPU layer split on one GPU named several times (issue 10). Run on the GPU machine after the build:
//   node scripts/device/check-split.mjs [--quick] [--no-speed]
// For each fixture model (the models of ../shared/models): logits of prompt chunks (one chunk, and 16-token
// chunks so that stages overlap across chunks) and of decode steps (1 and 4 rows), plus greedy ids picked on
// the device, unsplit against an explicit one-stage plan (bit for bit), 2-stage and 3-stage plans on GPU 0 with
// the layer boundaries in different places (same greedy ids, NLL within 1e-3 relative), and each stage's memory
// against the planner's estimate (cli/engine/gpu-footprint.ts). The same on the llama-7b dummy (random
// weights, the fused 4-bit decode path at real shapes). The CLI path: generate with --gpus 0,0 --gpu-split
// (budgets the planner turns into a 2|3 boundary) gives the unsplit ids, and bad splits exit 2 in one line.
// Speed: the llama-70b dummy decodes (context 128, 256 tokens, pick on the GPU) unsplit and split 2 ways on
// GPU 0, alternately twice; the split must stay within 3%. Writes $OUT/check-split.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadModelSpec } from '../../dist/cli/engine/loader/index.js';
import { NativeModel } from '../../dist/cli/engine/native-model.js';
import { modelFootprint } from '../../dist/cli/engine/gpu-footprint.js';
import { stageBytes } from '../../dist/cli/engine/gpu-split.js';
import { argmaxRow, nllAt } from './logit-rows.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const speed = !args.includes('--no-speed');
const out = process.env.OUT ?? '.';
mkdirSync(out, { recursive: true });
const NLL_REL = 1e-3, SPEED_SLACK = 0.03, CHUNK = 512;

const results = [];
let failures = 0;
function check(name, ok, detail) {
  results.push({ name, ok, detail });
  console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}  ${detail}`);
  if (!ok) failures++;
}

const bitEqual = (a, b) => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength),
  Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

/** Everything compared between configurations, from one loaded model. */
async function runModel(model, prompt, decodePrompt, steps, vocab) {
  await model.trimCache(0);
  const promptLogits = await model.forward(prompt, 0, true);
  // Decode: greedy from decodePrompt, one row a step, the full logits of each step.
  await model.trimCache(0);
  let logits = await model.forward(decodePrompt, 0, false);
  const ids = [], stepLogits = [];
  let pos = decodePrompt.length;
  for (let i = 0; i < steps; i++) {
    const id = argmaxRow(logits, 0, vocab);
    ids.push(id);
    logits = await model.forward([id], pos++, false);
    stepLogits.push(logits);
  }
  // A 4-row decode step (the multi-row decode graph) after 20 prompt tokens.
  await model.trimCache(0);
  await model.forward(prompt.slice(0, 20), 0, false);
  const fourRows = await model.forward(prompt.slice(20, 24), 20, true);
  // Greedy picked on the device (the last stage's argmax).
  await model.trimCache(0);
  let id = await model.forwardSample(decodePrompt, 0, { temperature: 0, topK: 0, uniform: 0 });
  const deviceIds = [id];
  for (let i = 1, p = decodePrompt.length; i < steps; i++) {
    id = await model.forwardSample([id], p++, { temperature: 0, topK: 0, uniform: 0 });
    deviceIds.push(id);
  }
  return { promptLogits, ids, stepLogits, fourRows, deviceIds, memory: model.memory() };
}

/** Worst relative NLL difference over rows, for the given targets. */
function worstNll(a, b, vocab, targets) {
  let worst = 0;
  for (let t = 0; t < targets.length; t++) {
    const x = nllAt(a, t, vocab, targets[t]), y = nllAt(b, t, vocab, targets[t]);
    worst = Math.max(worst, Math.abs(x - y) / Math.max(Math.abs(y), 1e-6));
  }
  return worst;
}
function argmaxAgree(a, b, vocab, rows) {
  let same = 0;
  for (let t = 0; t < rows; t++) if (argmaxRow(a, t, vocab) === argmaxRow(b, t, vocab)) same++;
  return same;
}

/**
 * got against base. exact (a one-stage plan against unsplit): every logit bit equal, unless the unsplit path
 * itself is not bit-reproducible (decode GEMVs that split K add with atomics): `repeat` is a second unsplit
 * run, and then the tolerance applies, as for a split.
 */
function compare(label, base, got, vocab, prompt, exact, repeat) {
  const targets = prompt.slice(1);
  const promptRel = worstNll(got.promptLogits, base.promptLogits, vocab, targets);
  const promptBits = bitEqual(got.promptLogits, base.promptLogits);
  const agree = argmaxAgree(got.promptLogits, base.promptLogits, vocab, prompt.length);
  let stepRel = 0, stepBits = true;
  for (let i = 0; i < base.stepLogits.length; i++) {
    const next = base.ids[i + 1] ?? argmaxRow(base.stepLogits[i], 0, vocab);
    stepRel = Math.max(stepRel, worstNll(got.stepLogits[i], base.stepLogits[i], vocab, [next]));
    stepBits &&= bitEqual(got.stepLogits[i], base.stepLogits[i]);
  }
  const fourRel = worstNll(got.fourRows, base.fourRows, vocab, prompt.slice(21, 25));
  const fourBits = bitEqual(got.fourRows, base.fourRows);
  const idsSame = got.ids.join() === base.ids.join() && got.deviceIds.join() === base.deviceIds.join();
  const detail = `prompt NLL rel ${promptRel.toExponential(2)} (bits ${promptBits ? 'equal' : 'differ'}, argmax ${agree}/${prompt.length}); ` +
    `decode NLL rel ${stepRel.toExponential(2)} (bits ${stepBits ? 'equal' : 'differ'}); 4-row step ${fourRel.toExponential(2)} ` +
    `(bits ${fourBits ? 'equal' : 'differ'}); greedy ids ${idsSame ? 'equal' : `differ: ${got.ids.join(',')} vs ${base.ids.join(',')}`}`;
  const close = promptRel <= NLL_REL && stepRel <= NLL_REL && fourRel <= NLL_REL && idsSame;
  if (exact) {
    const bits = promptBits && stepBits && fourBits && idsSame;
    const reproducible = repeat.stepLogits.every((l, i) => bitEqual(l, base.stepLogits[i])) &&
      bitEqual(repeat.promptLogits, base.promptLogits) && bitEqual(repeat.fourRows, base.fourRows);
    check(`${label} bit for bit`, bits || (!reproducible && close),
      `${detail}${bits ? '' : `; unsplit vs unsplit: ${reproducible ? 'bit-reproducible' : 'not bit-reproducible either'}`}`);
  } else {
    check(label, close, detail);
  }
}

/** Each stage's memory as the backend reports it against the planner's figures for the same stages. */
function checkMemory(label, memory, fp, ranges, seqLen) {
  const lines = [];
  let ok = memory.devices.length === ranges.length;
  ranges.forEach(([a, b], i) => {
    const want = stageBytes(fp, i === 0, i === ranges.length - 1, a, b, seqLen);
    const got = memory.devices[i] ?? {};
    const same = got.weightsBytes === want.weightsBytes && got.kvCacheBytes === want.kvCacheBytes &&
      got.scratchBytes === want.scratchBytes;
    ok &&= same;
    lines.push(`stage ${i} [${a},${b}): weights ${got.weightsBytes}/${want.weightsBytes} kv ${got.kvCacheBytes}/` +
      `${want.kvCacheBytes} scratch ${got.scratchBytes}/${want.scratchBytes}`);
  });
  check(`${label} memory = estimate`, ok, `backend/estimate: ${lines.join('; ')}`);
}

const stagesOf = (ranges) => ranges.map(([firstLayer, endLayer]) => ({ device: 0, firstLayer, endLayer }));
const label = (ranges) => (ranges.length === 1 ? '1 stage' : `${ranges.length} stages ${ranges.map(([a, b]) => b - a).join('|')}`);

// ---- fixture models ----
const root = 'fixtures/models';
const fixtureDirs = ['stories260K', 'stories260K-gptq-4bit-g32', 'stories260K-gptq-4bit-g64-actorder'];
const plans5 = [[[0, 5]], [[0, 2], [2, 5]], [[0, 4], [4, 5]], [[0, 1], [1, 3], [3, 5]], [[0, 2], [2, 4], [4, 5]]];
for (const name of quick ? fixtureDirs.slice(1, 2) : fixtureDirs) {
  const dir = join(root, name);
  const spec = loadModelSpec(dir);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
  const prompt = ref.sequences.find((s) => s.name === 'greedy201').ids;
  const decodePrompt = ref.greedy.from_golden.prompt;
  const vocab = spec.arch.vocabSize, seqLen = 512, steps = 48;
  for (const chunk of [CHUNK, 16]) {
    const open = (extra) => NativeModel.open(spec, { backend: 'cuda', maxSeqLen: seqLen, maxChunkTokens: chunk, ...extra });
    const fp = modelFootprint(spec, chunk);
    const baseModel = await open({});
    const base = await runModel(baseModel, prompt, decodePrompt, steps, vocab);
    const repeat = await runModel(baseModel, prompt, decodePrompt, steps, vocab);
    baseModel.close();
    checkMemory(`${name} chunk ${chunk} unsplit`, base.memory, fp, [[0, 5]], seqLen);
    for (const ranges of chunk === CHUNK ? plans5 : plans5.slice(1, 4)) {
      const m = await open({ stages: stagesOf(ranges) });
      const got = await runModel(m, prompt, decodePrompt, steps, vocab);
      m.close();
      compare(`${name} chunk ${chunk} ${label(ranges)} vs unsplit`, base, got, vocab, prompt, ranges.length === 1, repeat);
      checkMemory(`${name} chunk ${chunk} ${label(ranges)}`, got.memory, fp, ranges, seqLen);
    }
  }
}

// ---- the 7B dummy: the fused 4-bit decode path at real shapes (split weights equal unsplit: per-layer seeds) ----
{
  const vocab = 32000, seqLen = 1024;
  const prompt = Array.from({ length: 96 }, (_, i) => ((i * 7919 + 13) % (vocab - 3)) + 3);
  const decodePrompt = prompt.slice(0, 12);
  const open = (extra) => NativeModel.openDummy('llama-7b', { maxSeqLen: seqLen, maxChunkTokens: CHUNK, ...extra });
  const baseModel = await open({});
  const base = await runModel(baseModel, prompt, decodePrompt, 24, vocab);
  const repeat = await runModel(baseModel, prompt, decodePrompt, 24, vocab);
  baseModel.close();
  const fp = modelFootprint({ arch: { vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32,
    numKvHeads: 32, headDim: 128, tieWordEmbeddings: false, attentionBias: false },
  quant: { groupSize: 128, descAct: false, sym: true } }, CHUNK);
  checkMemory('llama-7b dummy unsplit', base.memory, fp, [[0, 32]], seqLen);
  for (const ranges of [[[0, 32]], [[0, 16], [16, 32]], [[0, 10], [10, 21], [21, 32]]]) {
    const m = await open({ stages: stagesOf(ranges) });
    const got = await runModel(m, prompt, decodePrompt, 24, vocab);
    m.close();
    compare(`llama-7b dummy ${label(ranges)} vs unsplit`, base, got, vocab, prompt, ranges.length === 1, repeat);
    checkMemory(`llama-7b dummy ${label(ranges)}`, got.memory, fp, ranges, seqLen);
  }
}

// ---- the CLI: --gpus 0,0 --gpu-split puts the boundary after layer 2 of the g32 fixture ----
function cli(cliArgs) {
  const r = spawnSync(process.execPath, ['bin/xllama.js', ...cliArgs], { encoding: 'utf8', timeout: 180_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
{
  const dir = join(root, 'stories260K-gptq-4bit-g32');
  const fp = modelFootprint(loadModelSpec(dir), CHUNK);
  const first = stageBytes(fp, true, false, 0, 2, 512).totalBytes, three = stageBytes(fp, true, false, 0, 3, 512).totalBytes;
  const budget0 = ((first + three) / 2 / 2 ** 30).toFixed(9);
  const gen = ['generate', '-m', dir, '-p', 'Once upon a time', '-n', '40', '--temperature', '0', '--json', '--max-seq-len', '512'];
  const base = cli(gen), split = cli([...gen, '--gpus', '0,0', '--gpu-split', `${budget0},1`, '--verbose']);
  const ids = (r) => (r.status === 0 ? JSON.parse(r.stdout).generatedIds.join(',') : `exit ${r.status}: ${r.stderr.trim()}`);
  check('generate --gpus 0,0 --gpu-split: same ids as unsplit', base.status === 0 && ids(base) === ids(split),
    `${ids(split)} vs ${ids(base)}`);
  check('generate --verbose prints the 2-stage plan', /GPU plan: manual split over 2 GPUs/.test(split.stderr) &&
    /layers 0-1 \+ embeddings/.test(split.stderr) && /layers 2-4 \+ final norm, lm_head/.test(split.stderr),
  split.stderr.split('\n').filter((l) => l.includes('GPU')).join(' | '));
  for (const [what, extra, want] of [
    ['a GPU that does not exist', ['--gpus', '0,64', '--gpu-split', '1,1'], /^xllama: --gpus: GPU 64 does not exist/],
    ['budgets that cannot hold the model', ['--gpus', '0,0', '--gpu-split', '0.1,0.1'], /^xllama: --gpus 0,0 --gpu-split 0\.1,0\.1: the model does not fit: it needs/],
    ['more budgets than GPUs', ['--gpu-split', Array(65).fill('1').join(',')], /^xllama: --gpu-split: 65 budgets, but this machine has/],
  ]) {
    const r = cli([...gen, ...extra]);
    check(`CLI refuses ${what}`, r.status === 2 && want.test(r.stderr) && r.stderr.trim().split('\n').length === 1,
      `exit ${r.status}: ${r.stderr.trim()}`);
  }
  // bench runs each configuration in a child: one that can't fit is a failed row with the numbers, exit 1.
  const big = cli(['bench', '--dummy', 'llama-70b', '--gpus', '0,0', '--gpu-split', '10,10', '-p', '16', '-d', '0', '-n', '1', '-o', 'csv']);
  check('bench --dummy llama-70b --gpus 0,0 --gpu-split 10,10 is a failed row with the numbers', big.status === 1 &&
    /,failed,.*does not fit: it needs 3\d\.\d\d GB on one GPU/.test(big.stdout) && !/^\s+at /m.test(big.stderr),
    big.stdout.trim().split('\n').slice(-1)[0]);
}

// ---- speed: the 70B dummy, unsplit vs two stages on GPU 0 ----
async function decodeSpeed(opts) {
  const m = await NativeModel.openDummy('llama-70b', { maxSeqLen: 4096, ...opts });
  const vocab = 32000, context = 128, warmup = 8, gen = 256;
  const ids = Array.from({ length: context }, (_, i) => ((i * 7919 + 13) % (vocab - 3)) + 3);
  await m.forward(ids, 0, false);
  const greedy = { temperature: 0, topK: 0, uniform: 0 };
  let pos = context, id = 3;
  for (let i = 0; i < warmup; i++) id = await m.forwardSample([id], pos++, greedy);
  const t0 = performance.now();
  for (let i = 0; i < gen; i++) id = await m.forwardSample([id], pos++, greedy);
  const tps = gen / ((performance.now() - t0) / 1000);
  const stages = m.memory().devices.length;
  m.close();
  return { tps, stages };
}
if (speed) {
  const split = { gpuSplit: { gpus: [0, 0], split: [17, 40] } };
  const runs = { unsplit: [], split: [] };
  for (let r = 0; r < 2; r++) {
    runs.unsplit.push((await decodeSpeed({})).tps);
    const s = await decodeSpeed(split);
    if (s.stages !== 2) check('70B split has 2 stages', false, `${s.stages} stages`);
    runs.split.push(s.tps);
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ratio = mean(runs.split) / mean(runs.unsplit);
  check('llama-70b dummy decode @128: 2 stages on GPU 0 within 3% of unsplit', ratio >= 1 - SPEED_SLACK,
    `unsplit ${runs.unsplit.map((v) => v.toFixed(2)).join(', ')} t/s; split ${runs.split.map((v) => v.toFixed(2)).join(', ')} t/s; ` +
    `ratio ${ratio.toFixed(4)}`);
}

writeFileSync(join(out, 'check-split.json'), JSON.stringify({ results }, null, 1));
console.log(`check-split: ${results.length - failures} passed, ${failures} failed`);
process.exitCode = failures === 0 ? 0 : 1;

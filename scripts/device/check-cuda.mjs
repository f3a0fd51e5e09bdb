// Checks a backend (CUDA by default) against the Hugging Face transformers references the CPU tests use:
// fixtures/models/*/reference.json and the variants in test/cpu/fixtures/variants (RoPE scaling, Qwen2 biases).
// Run on the GPU machine after the build:  node scripts/device/check-cuda.mjs [--backend cuda|cpu] [--quick]
// Criteria: per-position NLL within 2e-2 relative (+2e-3 absolute floor for near-zero NLL), from the prompt path
// and from the decode path (one token at a time); top-1 equal wherever the reference's top-2 margin is wider than
// fp16 noise; greedy continuations equal up to the first near-tie; the reference-recipe PPL within 0.5%; variant
// logits within 2e-2 relative, in one call and in chunks of 37 tokens; forwardSample's greedy, top-k and typical-p
// picks equal the host sampler's.
import { copyFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadModelSpec } from '../../dist/cli/engine/loader/index.js';
import { NativeModel } from '../../dist/cli/engine/native-model.js';
import { minPFilter, pickIndex, softmax, topKCandidates, topPFilter, typicalFilter } from '../../dist/cli/engine/sampler.js';
import { readSafetensors, rewriteTensors } from '../../dist/test/helpers/safetensors-writer.js';
import { copyFixture } from '../../dist/test/loader/model-dir.js';
import { argmaxRow, nllAt } from './logit-rows.mjs';

const args = process.argv.slice(2);
const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'cuda';
const quick = args.includes('--quick');
const NLL_REL = 2e-2, NLL_ABS = 2e-3, PPL_REL = 5e-3, TIE_MARGIN = 0.05;


async function greedy(model, prompt, n, vocab) {
  await model.trimCache(0);
  let logits = await model.forward(prompt, 0, false);
  const out = [], margins = [];
  let pos = prompt.length;
  for (let i = 0; i < n; i++) {
    const id = argmaxRow(logits, 0, vocab);
    const sorted = Array.from(logits).sort((a, b) => b - a);
    out.push(id); margins.push(sorted[0] - sorted[1]);
    logits = await model.forward([id], pos++, false);
  }
  return { out, margins };
}

let failures = 0;
const report = [];
function check(name, ok, detail) {
  report.push(`${ok ? 'PASS' : 'FAIL'}  ${name}  ${detail}`);
  if (!ok) failures++;
}

const root = 'fixtures/models';
for (const dirName of readdirSync(root).filter((d) => !d.endsWith('.md')).sort()) {
  const dir = join(root, dirName);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
  const spec = loadModelSpec(dir);
  const model = await NativeModel.open(spec, { backend, maxSeqLen: 512 });
  const vocab = model.vocabSize;
  for (const seq of quick ? ref.sequences.slice(0, 1) : ref.sequences) {
    await model.trimCache(0);
    const logits = await model.forward(seq.ids, 0, true);
    checkPositions(`${dirName} ${seq.name}`, seq, (t) => [logits, t], vocab);
  }
  await checkDecode(model, dirName, ref.sequences.reduce((a, b) => (b.ids.length > a.ids.length ? b : a)), vocab);
  for (const [name, g] of Object.entries(ref.greedy)) {
    const { out, margins } = await greedy(model, g.prompt, g.n_new, vocab);
    const first = out.findIndex((id, i) => id !== g.new_ids[i]);
    const ok = first === -1 || margins[first] < TIE_MARGIN;
    check(`${dirName} greedy ${name}`, ok, first === -1 ? `all ${out.length} equal`
      : `equal for ${first}, then margin ${margins[first].toFixed(4)} at the first difference`);
  }
  if (!quick) {
    const ids = ref.ppl_text.ids, L = ref.ppl_text.chunk_len;
    let total = 0, count = 0;
    for (let c = 0; c < ref.ppl_text.n_chunks; c++) {
      const chunk = ids.slice(c * L, (c + 1) * L);
      await model.trimCache(0);
      const logits = await model.forward(chunk, 0, true);
      for (let t = 0; t + 1 < L; t++) { total += nllAt(logits, t, vocab, chunk[t + 1]); count++; }
    }
    const ppl = Math.exp(total / count);
    const rel = Math.abs(ppl - ref.ppl_text.ppl) / ref.ppl_text.ppl;
    check(`${dirName} recipe PPL`, rel <= PPL_REL, `${ppl.toFixed(5)} vs ${ref.ppl_text.ppl.toFixed(5)} (rel ${rel.toExponential(2)})`);
  }
  await checkSampling(model, dirName, ref.sequences[0].ids.slice(0, 24));
  model.close();
}

// Each predicting position t of seq (rowAt(t) gives [logits, row] holding its logits) against the reference: the
// worst relative NLL error, and top-1 wherever the reference's first two logits are further apart than fp16 noise.
function checkPositions(label, seq, rowAt, vocab) {
  let worst = 0, topMismatch = 0, topCounted = 0;
  for (let t = 0; t + 1 < seq.ids.length; t++) {
    const [logits, row] = rowAt(t);
    const nll = nllAt(logits, row, vocab, seq.ids[t + 1]);
    worst = Math.max(worst, Math.abs(nll - seq.nll[t]) / (Math.abs(seq.nll[t]) + NLL_ABS / NLL_REL));
    const [top1, top2] = seq.top5[t];
    if (top1[1] - top2[1] > TIE_MARGIN) {
      topCounted++;
      if (argmaxRow(logits, row, vocab) !== top1[0]) topMismatch++;
    }
  }
  check(`${label} NLL`, worst <= NLL_REL, `worst rel err ${worst.toExponential(2)} (limit ${NLL_REL}) over ${seq.ids.length - 1} predictions`);
  check(`${label} top-1`, topMismatch === 0, `${topMismatch} mismatches of ${topCounted} clear positions`);
}

// The sequence fed one token at a time (teacher-forced): the decode path (its attention at every depth, over several
// splits past 128 keys), where the checks above run the prompt path.
async function checkDecode(model, dirName, seq, vocab) {
  await model.trimCache(0);
  const steps = [];
  for (let t = 0; t + 1 < seq.ids.length; t++) steps.push(await model.forward([seq.ids[t]], t, false));
  checkPositions(`${dirName} ${seq.name} decode`, seq, (t) => [steps[t], 0], vocab);
}

// The host sampler's rule (addon/backend/token_sampling.cc sample_token_host), in float64: softmax(l / T)
// over the top_k largest (ties: lower id first), then the first id whose cumulative mass exceeds uniform.
// Returns the pick and how far `uniform` lies from the nearest cumulative boundary (fp32 rounding margin).
function hostPick(logits, topK, temperature, uniform) {
  const idx = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, topK);
  const p = idx.map((i) => Math.exp((logits[i] - logits[idx[0]]) / temperature));
  const sum = p.reduce((a, b) => a + b, 0);
  let acc = 0, margin = Infinity;
  for (let i = 0; i < idx.length; i++) {
    acc += p[i] / sum;
    margin = Math.min(margin, Math.abs(acc - uniform));
    if (acc > uniform) return { id: idx[i], margin };
  }
  return { id: idx[idx.length - 1], margin };
}

async function checkSampling(model, dirName, prompt) {
  await model.trimCache(0);
  const logits = await model.forward(prompt, 0, false);
  const greedyId = argmaxRow(logits, 0, model.vocabSize);
  await model.trimCache(0);
  const picked = await model.forwardSample(prompt, 0, { temperature: 0, topK: 0, uniform: 0 });
  check(`${dirName} forwardSample greedy`, picked === greedyId, `device ${picked}, host ${greedyId}`);
  let mismatches = 0, tried = 0;
  for (const topK of [1, 5, 40]) {
    for (const uniform of [0.01, 0.3, 0.5, 0.77, 0.99]) {
      await model.trimCache(0);
      const id = await model.forwardSample(prompt, 0, { temperature: 0.8, topK, uniform });
      const host = hostPick(logits, topK, 0.8, uniform);
      tried++;
      if (id !== host.id && host.margin > 1e-5) mismatches++;
    }
  }
  check(`${dirName} forwardSample top-k`, mismatches === 0, `${mismatches} of ${tried} picks differ from the host sampler`);
  // typical-p after top-k, top-p and min-p: the host sampler's own filters (cli/engine/sampler.ts), draws away from
  // every cumulative boundary of what they keep
  let typicalMismatches = 0, typicalTried = 0, typicalCut = 0;
  for (const [topK, topP, minP, typicalP] of [[40, 0.95, 0.05, 0.5], [64, 1, 0, 0.3], [20, 0.9, 0, 0.8]]) {
    const top = topKCandidates(logits.subarray(0, model.vocabSize), topK);
    const candidates = { ids: top.ids, logits: top.logits.map((v) => v / 1.5) };
    const beforeTypical = minPFilter(topPFilter(candidates, topP), minP);
    const kept = typicalFilter(beforeTypical, typicalP);
    if (kept.ids.length < beforeTypical.ids.length) typicalCut++;
    const probs = softmax(kept.logits);
    let cum = 0;
    const bounds = probs.map((p) => (cum += p));
    for (const uniform of [0.01, 0.3, 0.5, 0.77, 0.99]) {
      if (bounds.some((b) => Math.abs(b - uniform) < 1e-5)) continue;
      await model.trimCache(0);
      const id = await model.forwardSample(prompt, 0, { temperature: 1.5, topK, topP, minP, typicalP, uniform });
      typicalTried++;
      if (id !== kept.ids[pickIndex(probs, uniform)]) typicalMismatches++;
    }
  }
  check(`${dirName} forwardSample typical-p`, typicalMismatches === 0 && typicalTried >= 10 && typicalCut >= 1,
    `${typicalMismatches} of ${typicalTried} picks differ from the host sampler (typical-p cut ${typicalCut} of 3 lists)`);
}

// RoPE scaling and Qwen2 bias variants: stories260K with another config.json (and extra bias tensors), as
// test/cpu/variants.test.ts builds them, against transformers' float32 logits.
const VARIANTS = 'test/cpu/fixtures/variants';
for (const name of readdirSync(VARIANTS).sort()) {
  const src = join(VARIANTS, name);
  const ref = JSON.parse(readFileSync(join(src, 'reference.json'), 'utf8'));
  const dir = copyFixture('stories260K');
  copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
  if (existsSync(join(src, 'extra.safetensors'))) {
    const extra = readSafetensors(join(src, 'extra.safetensors')).tensors;
    rewriteTensors(join(dir, 'model.safetensors'), (ts) => [...ts, ...extra]);
  }
  for (const maxChunkTokens of [512, 37]) {
    const model = await NativeModel.open(loadModelSpec(dir), { backend, maxSeqLen: ref.ids.length, maxChunkTokens });
    const logits = await model.forward(ref.ids, 0, true);
    const vocab = model.vocabSize;
    let worst = 0, topMismatch = 0;
    for (let t = 0; t < ref.ids.length; t++) {
      let diff = 0, scale = 0;
      for (const [id, v] of ref.top5[t]) {
        diff = Math.max(diff, Math.abs(logits[t * vocab + id] - v));
        scale = Math.max(scale, Math.abs(v));
      }
      worst = Math.max(worst, diff / scale);
      const [top1, top2] = ref.top5[t];
      if (top1[1] - top2[1] > TIE_MARGIN && argmaxRow(logits, t, vocab) !== top1[0]) topMismatch++;
    }
    check(`variant ${name} (chunks of ${maxChunkTokens})`, worst <= NLL_REL && topMismatch === 0,
      `worst rel logit err ${worst.toExponential(2)}, ${topMismatch} top-1 mismatches`);
    model.close();
  }
}
console.log(report.join('\n'));
console.log(`check-cuda (${backend}): ${report.length - failures} passed, ${failures} failed`);
process.exitCode = failures === 0 ? 0 : 1;

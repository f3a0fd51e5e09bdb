// Checks the CUDA backend against the Hugging Face transformers references in fixtures/models/*/reference.json.
// Run on the GPU machine after the build:  node scripts/device/check-cuda.mjs [--backend cuda|cpu] [--quick]
// Criteria (issue 4): per-position NLL within 2e-2 relative (+2e-3 absolute floor for near-zero NLL); top-1
// equal wherever the reference's top-2 margin is wider than fp16 noise; greedy continuations equal up to the
// first near-tie; the reference-recipe PPL within 0.5%.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadModelSpec } from '../../dist/cli/engine/loader/index.js';
import { NativeModel } from '../../dist/cli/engine/native-model.js';

const args = process.argv.slice(2);
const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'cuda';
const quick = args.includes('--quick');
const NLL_REL = 2e-2, NLL_ABS = 2e-3, PPL_REL = 5e-3, TIE_MARGIN = 0.05;

function nllAt(logits, row, vocab, target) {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[row * vocab + i]);
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[row * vocab + i] - max);
  return Math.log(sum) + max - logits[row * vocab + target];
}
function argmaxRow(logits, row, vocab) {
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[row * vocab + i] > logits[row * vocab + best]) best = i;
  return best;
}

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
    let worst = 0, topMismatch = 0, topCounted = 0, total = 0;
    for (let t = 0; t + 1 < seq.ids.length; t++) {
      const nll = nllAt(logits, t, vocab, seq.ids[t + 1]);
      total += nll;
      const err = Math.abs(nll - seq.nll[t]) / (Math.abs(seq.nll[t]) + NLL_ABS / NLL_REL);
      worst = Math.max(worst, err);
      const [top1, top2] = seq.top5[t];
      if (top1[1] - top2[1] > TIE_MARGIN) {
        topCounted++;
        if (argmaxRow(logits, t, vocab) !== top1[0]) topMismatch++;
      }
    }
    check(`${dirName} ${seq.name} NLL`, worst <= NLL_REL, `worst rel err ${worst.toExponential(2)} (limit ${NLL_REL})`);
    check(`${dirName} ${seq.name} top-1`, topMismatch === 0, `${topMismatch} mismatches of ${topCounted} clear positions`);
  }
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
  model.close();
}
console.log(report.join('\n'));
console.log(`check-cuda (${backend}): ${report.length - failures} passed, ${failures} failed`);
process.exitCode = failures === 0 ? 0 : 1;

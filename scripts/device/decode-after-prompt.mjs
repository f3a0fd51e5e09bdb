// Probe: decode speed alone and after prompt chunks, in one process (the bench matrix and chat run decode after
// prompts). Run on the GPU machine after the build:
//   node scripts/device/decode-after-prompt.mjs <dummy> <phase>...
// Phases, in order: tgN (N greedy tokens from position 0, pipelined as bench does; prints t/s and the t/s of its
// four quarters), ppN (one N-token prompt from position 0), sleepS (seconds), hostN / devN (N tokens with the CLI's
// default sampling, seed 1: the logits to the host and the sampler there, as before top-p and min-p went to the
// device; or the pick on the device, pipelined, as generate runs it now; prints whether the ids equal the other's),
// penaltyN / devpenaltyN (the same with a repetition, frequency and presence penalty: on the host, or on the
// device from the token history it keeps; prints whether the ids equal the other's), engines / noengines (start or
// stop sampling the GPU's engines in this process, as `xllama bench` does around its tests: whether that sampling
// costs the decode, docs/PERF-NOTES.md session 38), bw (the copy-bandwidth measurement bench made in this
// process until session 39: its copies on the legacy stream left the later decode slower).
import { performance } from 'node:perf_hooks';
import { NativeModel } from '../../dist/cli/engine/native-model.js';
import { syntheticTokens } from '../../dist/cli/engine/benchmark.js';
import { DEFAULT_SAMPLING, Sampler } from '../../dist/cli/engine/sampler.js';
import { EngineSampler } from '../../dist/cli/bench/utilization.js';
import { loadAddon } from '../../dist/cli/native/addon.js';

const [name = 'llama-7b', ...phases] = process.argv.slice(2);
const opened = performance.now();
const model = await NativeModel.openDummy(name, { maxSeqLen: 4096 });
console.log(`  open ${name}: ${((performance.now() - opened) / 1000).toFixed(2)} s`);
const GREEDY = { temperature: 0, topK: 0, uniform: 0 };
const ids = syntheticTokens(4096, model.vocabSize);
const t0 = performance.now();
const stamp = () => ((performance.now() - t0) / 1000).toFixed(2).padStart(6);

async function decode(n) {
  await model.trimCache(0);
  const times = [performance.now()];
  let id = ids[0];
  for (let i = 0; i < n; i++) {
    id = await model.forwardSample([id], i, GREEDY, i + 1 < n ? GREEDY : undefined);
    times.push(performance.now());
  }
  const rate = (a, b) => ((b - a) * 1000) / (times[b] - times[a]);
  const q = Math.floor(n / 4);
  const quarters = [0, 1, 2, 3].map((k) => rate(k * q, (k + 1) * q).toFixed(1)).join(' ');
  console.log(`${stamp()} tg${n}: ${rate(0, n).toFixed(1)} t/s (quarters ${quarters})`);
}

const sampledIds = {};
const PENALTIES = { ...DEFAULT_SAMPLING, repeatPenalty: 1.1, frequencyPenalty: 0.2, presencePenalty: 0.1 };
// `label` names the run and the one it is compared with: dev / host, devpenalty / penalty.
async function sampled(n, label) {
  const onDevice = label.startsWith('dev'), params = label.endsWith('penalty') ? PENALTIES : DEFAULT_SAMPLING;
  await model.trimCache(0);
  const sampler = new Sampler({ ...params }, 1);
  sampler.observePrompt([ids[0]]);
  if (onDevice && params === PENALTIES) {
    await model.setTokenHistory([ids[0]], []);
    sampler.penaltiesOnBackend();
  }
  const out = [];
  const s = performance.now();
  let id = ids[0];
  for (let i = 0; i < n; i++) {
    if (onDevice) {
      const pick = sampler.backendSampling();
      id = await model.forwardSample([id], i, pick, i + 1 < n ? sampler.peekBackendSampling() : undefined);
    } else {
      id = sampler.sample(await model.forward([id], i));
    }
    sampler.accept(id);
    out.push(id);
  }
  const rate = (n * 1000) / (performance.now() - s);
  const other = { dev: 'host', host: 'dev', devpenalty: 'penalty', penalty: 'devpenalty' }[label];
  sampledIds[label] = out;
  const theirs = sampledIds[other];
  let same = 0;
  while (theirs && same < n && theirs[same] === out[same]) same++;
  console.log(`${stamp()} ${label}${n}: ${rate.toFixed(1)} t/s` + (theirs ? ` (first ${same} of ${n} ids equal ${other}'s)` : ''));
}

let engines = null;  // the EngineSampler while `engines` is on
for (const p of phases) {
  let m;
  if ((m = /^tg(\d+)$/.exec(p))) await decode(Number(m[1]));
  else if ((m = /^pp(\d+)$/.exec(p))) {
    await model.trimCache(0);
    const s = performance.now();
    await model.forward(Int32Array.from(ids.slice(0, Number(m[1]))), 0, false);
    console.log(`${stamp()} ${p}: ${((Number(m[1]) * 1000) / (performance.now() - s)).toFixed(0)} t/s`);
  } else if ((m = /^(host|dev|penalty|devpenalty)(\d+)$/.exec(p))) await sampled(Number(m[2]), m[1]);
  else if ((m = /^sleep([\d.]+)$/.exec(p))) await new Promise((r) => setTimeout(r, Number(m[1]) * 1000));
  else if (p === 'engines') {
    const started = engines ? { sampler: engines } : EngineSampler.start();
    engines = started.sampler;
    console.log(`${stamp()} engines: ${engines ? 'sampling' : `not sampled (${started.reason})`}`);
  } else if (p === 'noengines') {
    engines?.stop();
    engines = null;
    console.log(`${stamp()} engines: stopped`);
  } else if (p === 'bw') {
    const bw = loadAddon().measureCopyBandwidth(0);
    console.log(`${stamp()} bw: ${(bw / 1e9).toFixed(0)} GB/s`);
  } else throw new Error(`unknown phase ${p}`);
}
engines?.stop();
model.close?.();

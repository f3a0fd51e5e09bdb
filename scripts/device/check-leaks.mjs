// Loads and closes a model many times and reports host RSS and free GPU memory after every 50: neither may
// grow beyond noise. Run on the GPU machine after the build:
//   node --expose-gc scripts/device/check-leaks.mjs [--backend cuda|cpu] [--n 200] [--dummy llama-7b]
import { spawn } from 'node:child_process';
import { loadModelSpec } from '../../dist/cli/engine/loader/index.js';
import { NativeModel } from '../../dist/cli/engine/native-model.js';
import { loadAddon } from '../../dist/cli/native/addon.js';

const args = process.argv.slice(2);
const arg = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const backend = arg('--backend', 'cuda');
const n = Number(arg('--n', '200'));
const dummy = arg('--dummy', null);
const addon = loadAddon();
const mib = (b) => (b / 2 ** 20).toFixed(1);
const gpuFree = () => (backend === 'cuda' ? addon.systemInfo().gpus[0]?.freeMemory ?? NaN : NaN);
const spec = dummy ? null : loadModelSpec('fixtures/models/stories260K-gptq-4bit-g32');

async function once() {
  const model = dummy
    ? await NativeModel.openDummy(dummy, { maxSeqLen: 256 })
    : await NativeModel.open(spec, { backend, maxSeqLen: 256 });
  await model.forward([1, 300, 301, 302, 303], 0);
  await model.forwardSample([304], 5, { temperature: 0, topK: 0, uniform: 0 });
  model.close();
}

const rows = [];
await once();  // the first load initialises the runtime (CUDA context, cuBLAS): measure from after it
globalThis.gc?.();
const base = { rss: process.memoryUsage().rss, gpu: gpuFree() };
for (let i = 1; i <= n; i++) {
  await once();
  if (i % 50 === 0) {
    globalThis.gc?.();
    const rss = process.memoryUsage().rss, gpu = gpuFree();
    rows.push({ loads: i, rssMiB: mib(rss), rssGrowthMiB: mib(rss - base.rss), gpuFreeMiB: mib(gpu), gpuFreeDropMiB: mib(base.gpu - gpu) });
  }
}
console.table(rows);
const last = rows.at(-1);
const rssOk = Number(last.rssGrowthMiB) < 64;
const gpuOk = backend !== 'cuda' || Number(last.gpuFreeDropMiB) < 64;
console.log(`check-leaks (${backend}${dummy ? `, ${dummy}` : ''}, ${n} loads): host RSS ${rssOk ? 'flat' : 'GROWS'} ` +
  `(+${last.rssGrowthMiB} MiB), GPU free ${gpuOk ? 'flat' : 'DROPS'} (-${last.gpuFreeDropMiB} MiB)`);

// Ctrl+C during a load and during a long prefill: the process must end promptly and give the GPU back.
async function interrupted(label, argv, afterMs) {
  const before = gpuFree();
  const child = spawn(process.execPath, ['bin/xllama.js', ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  await new Promise((r) => setTimeout(r, afterMs));
  const t0 = Date.now();
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise((r) => child.on('exit', (c, sig) => r(c ?? sig)));
  clearTimeout(timer);
  const exitMs = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 500));
  const drop = (before - gpuFree()) / 2 ** 20;
  const ok = exitMs < 30_000 && code !== 'SIGKILL' && drop < 64;
  console.log(`${ok ? 'PASS' : 'FAIL'}  Ctrl+C ${label}: exit ${code} after ${exitMs} ms, GPU free memory back within ` +
    `${drop.toFixed(1)} MiB${stderr ? ` · stderr: ${stderr.trim().split('\n').at(-1)}` : ''}`);
  return ok;
}
let interruptOk = true;
if (backend === 'cuda') {
  interruptOk = await interrupted('during a 70B load', ['bench', '--dummy', 'llama-70b', '--json'], 1500) && interruptOk;
  interruptOk = await interrupted('during long prefills', ['bench', '--dummy', 'llama-7b', '--prompt', '4000',
    '--context', '0', '--repeats', '50', '--json'], 6000) && interruptOk;
}
process.exitCode = rssOk && gpuOk && interruptOk ? 0 : 1;

// --gpus / --gpu-split through the real CLI: bad values are one line and exit 2 before anything loads,
// `info MODEL --gpu-split` prints the plan without loading (layer boundaries checked against per-layer
// bytes written out by hand), and the CPU backend refuses a split.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';
import { loadAddon } from '../../cli/native/addon.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { NativeModel } from '../../cli/engine/native-model.js';
import { UserError } from '../../cli/errors.js';

const g32 = join(fixtures, 'models', 'stories260K-gptq-4bit-g32');
const sys = loadAddon().systemInfo();
const gpuCount = sys.cudaCompiled ? sys.gpus.length : 0;

function refused(args: string[], message: RegExp): void {
  const r = runCli(args);
  assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^xllama: [^\n]+\n$/, r.stderr);
  assert.match(r.stderr, message);
}

const generate = (...flags: string[]) => ['generate', '-m', g32, '-p', 'Once', '-n', '2', ...flags];

test('bad --gpu-split and --gpus values are refused in one line, exit 2', () => {
  refused(generate('--gpu-split', 'abc'), /--gpu-split: 'abc' is not a number of GB \(give 'auto', or GB per GPU/);
  refused(generate('--gpu-split=20,-1'), /--gpu-split: -1 is negative/);
  refused(generate('--gpu-split', '20,,24'), /--gpu-split: '' is not a number of GB/);
  refused(generate('--gpu-split', '0,0'), /--gpu-split: every budget is 0 GB/);
  refused(generate('--gpus', '0,x'), /--gpus: 'x' is not a GPU number/);
  refused(generate('--gpus', '0,0', '--gpu-split', '1,2,3'), /--gpu-split: 3 budgets for the 2 GPUs of --gpus/);
  refused(generate('--backend', 'cpu', '--gpus', '0,0', '--gpu-split', '1,2'),
    /--gpus 0,0 --gpu-split 1,2: GPU placement is for the cuda backend \(--backend cpu was given\)/);
});

test('a split naming GPUs this machine does not have is refused in one line, exit 2', () => {
  if (gpuCount === 0) {
    // No GPU here: the request can't be placed at all, and says why.
    refused(generate('--gpus', '0,1', '--gpu-split', '1,1'), /--gpus 0,1 --gpu-split 1,1 needs a CUDA GPU: /);
    refused(generate('--gpu-split', 'auto'), /--gpu-split auto needs a CUDA GPU: /);
  } else {
    refused(generate('--gpus', `0,${gpuCount}`, '--gpu-split', '1,1'), new RegExp(`--gpus: GPU ${gpuCount} does not exist`));
    const many = Array(gpuCount + 1).fill('1').join(',');
    refused(generate('--gpu-split', many), new RegExp(`--gpu-split: ${gpuCount + 1} budgets, but this machine has ${gpuCount} GPU`));
  }
});

/** stories260K g32 per layer on the GPU, by hand: norms 2×128 B; q/k/v 64→128: nibbles 4096 + scales (2 groups)
 * 512; o 64→64: 2048 + 256; gate/up 64→384: 12288 + 1536; down 192→64: 6144 + 768 (6 groups). No zeros (sym). */
const LAYER_WEIGHTS = 256 + 4608 + 2304 + 13824 + 6912;
/** K and V: 4 kv heads × 8 dims × 2 bytes × 2, per position, at the model's 512 positions. */
const LAYER_KV = 4 * 8 * 2 * 2 * 512;
const TABLE = 512 * 64 * 2;

test('info --gpu-split prints the plan without loading: budgets put the layer boundaries where they fit', () => {
  const one = JSON.parse(runCli(['info', g32, '--json']).stdout).gpuPlan;
  assert.equal(one.mode, 'single');
  assert.equal(one.seqLen, 512);
  assert.equal(one.stages.length, 1);
  const [s] = one.stages;
  assert.equal(s.weightsBytes, 5 * LAYER_WEIGHTS + TABLE + 128);  // + the tied table (both ends) + final norm
  assert.equal(s.kvCacheBytes, 5 * LAYER_KV);
  // A first GPU's fixed part: the table, scratch without the last GPU's logits (64 rows × 512 × 4 B), reserve.
  const fixedFirst = TABLE + (s.scratchBytes - 64 * 512 * 4) + s.reserveBytes;
  const gb = (bytes: number) => (bytes / 2 ** 30).toFixed(9);
  // Room for 2.5 layers on the first GPU: layers 0-1 there, 2-4 on the second.
  const budget0 = gb(fixedFirst + 2.5 * (LAYER_WEIGHTS + LAYER_KV));
  const r = runCli(['info', g32, '--gpus', '0,0', '--gpu-split', `${budget0},2`, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const plan = JSON.parse(r.stdout).gpuPlan;
  assert.equal(plan.mode, 'manual');
  assert.deepEqual(plan.stages.map((x: any) => [x.device, x.firstLayer, x.endLayer, x.first, x.last]),
    [[0, 0, 2, true, false], [0, 2, 5, false, true]]);
  assert.equal(plan.stages[0].weightsBytes, 2 * LAYER_WEIGHTS + TABLE);
  assert.equal(plan.stages[1].weightsBytes, 3 * LAYER_WEIGHTS + TABLE + 128);  // its own copy of the tied table
  // Three GPUs: room for 1.5 layers on the first, 2.5 on the second (no table there): 0 | 1-2 | 3-4.
  const fixedMid = s.scratchBytes - 64 * 512 * 4 + s.reserveBytes;
  const budget1 = gb(fixedMid + 2.5 * (LAYER_WEIGHTS + LAYER_KV));
  const r3 = runCli(['info', g32, '--gpus', '0,0,0', '--gpu-split',
    `${gb(fixedFirst + 1.5 * (LAYER_WEIGHTS + LAYER_KV))},${budget1},2`]);
  assert.equal(r3.status, 0, r3.stderr);
  assert.match(r3.stdout, /^GPU plan +manual split over 3 GPUs, KV cache for 512 positions$/m);
  assert.match(r3.stdout, /^GPU 0\b.* +layer 0 \+ embeddings: /m);
  assert.match(r3.stdout, /^GPU 0\b.* +layers 1-2: /m);
  assert.match(r3.stdout, /^GPU 0\b.* +layers 3-4 \+ final norm, lm_head: /m);
});

test('info: the plan for one GPU by default; a split that cannot fit is refused with the numbers', () => {
  const r = runCli(['info', g32]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^GPU plan +one GPU, KV cache for 512 positions$/m);
  assert.match(r.stdout, /^GPU 0\b.* +layers 0-4 \+ embeddings, final norm, lm_head: [\d.]+ MiB = weights 200\.4 KiB, KV cache 320\.0 KiB, /m);
  refused(['info', g32, '--gpus', '0,0', '--gpu-split', '0.1,0.1'],
    /--gpus 0,0 --gpu-split 0\.1,0\.1: the model does not fit: it needs 0\.27 GB on one GPU \(KV cache for 1 position\); GPU 0: nothing of 0\.10 GB budget; GPU 0: nothing of 0\.10 GB budget; layers 0-4 with the final norm and lm_head \(0\.27 GB\) are left over/);
  refused(['info', g32, '--gpu-split', '1', '--max-seq-len', 'x'], /--max-seq-len: expected an integer/);
  if (gpuCount === 0) refused(['info', g32, '--gpu-split', 'auto'], /'auto' plans from the GPUs' free memory, and no GPU is visible here/);
});

test('the engine API: the CPU backend refuses stages and GPU requests in one line', async () => {
  const spec = loadModelSpec(g32);
  await assert.rejects(NativeModel.open(spec, { backend: 'cpu', stages: [{ device: 0, firstLayer: 0, endLayer: 5 }] }),
    (err: unknown) => err instanceof UserError && /a GPU layer split \(stages\) needs the cuda backend/.test(err.message));
  await assert.rejects(NativeModel.open(spec, { backend: 'cpu', gpuSplit: { split: 'auto' } }),
    (err: unknown) => err instanceof UserError && /GPU placement is for the cuda backend/.test(err.message));
});

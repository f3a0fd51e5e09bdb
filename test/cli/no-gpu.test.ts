// Issue 14.4: without a usable GPU, every command says the same true reason (no NVIDIA driver here, not the
// CUDA runtime's "driver version is insufficient"); a wrong --dummy name is refused with the valid names
// on every machine, GPU or not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';
import { loadAddon } from '../../cli/native/addon.js';
import { DUMMY_NAMES } from '../../cli/engine/dummy-models.js';

const model = join(fixtures, 'models', 'stories260K');
const sys = loadAddon().systemInfo();
const noGpu = sys.gpus.length === 0;

test('info --gpus gives the true reason there is no GPU', { skip: !noGpu && 'this machine has a GPU' }, () => {
  const r = runCli(['info', '--gpus', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const reason = JSON.parse(r.stdout).gpuUnavailableReason as string;
  if (!sys.cudaCompiled) {
    assert.match(reason, /^this build of xllama has no CUDA backend/);
  } else if (process.platform === 'linux' && !existsSync('/proc/driver/nvidia/version')) {
    // No NVIDIA kernel driver loaded: the only true thing to say.
    assert.match(reason, /^no NVIDIA driver found/);
  } else {
    assert.doesNotMatch(reason, /driver version is insufficient/);
  }
  const text = runCli(['info', '--gpus']);
  assert.ok(text.stdout.includes(`GPUs: none (${reason})`), text.stdout);
});

test('--backend cuda and bench --dummy give the same reason', { skip: !noGpu && 'this machine has a GPU' }, () => {
  const reason = sys.gpuUnavailableReason!;
  const gen = runCli(['generate', '-m', model, '--backend', 'cuda', '-p', 'x']);
  assert.equal(gen.status, 2);
  assert.equal(gen.stderr, `xllama: ${model} on the cuda backend needs a CUDA GPU: ${reason}\n`);
  // bench may report a configuration that can't run as a line or as a row of its table: either way, these words.
  const bench = runCli(['bench', '--dummy', 'llama-7b']);
  assert.ok(`${bench.stdout}${bench.stderr}`.includes(`needs a CUDA GPU: ${reason}`), bench.stdout + bench.stderr);
});

test('bench --dummy with an unknown name: one line naming it and the valid names, exit 2, GPU or not', () => {
  const r = runCli(['bench', '--dummy', 'llama-8b']);
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^xllama: [^\n]+\n$/);
  assert.match(r.stderr, /unknown.*llama-8b|llama-8b.*unknown/);
  for (const name of DUMMY_NAMES) assert.ok(r.stderr.includes(name), name);
});

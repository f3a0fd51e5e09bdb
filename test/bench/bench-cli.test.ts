import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';
import { loadAddon } from '../../cli/native/addon.js';

const MODEL = join(fixtures, 'models', 'stories260K-gptq-4bit-g32');
const hasGpu = () => loadAddon().systemInfo().gpus.length > 0;

function assertOneLineError(r: ReturnType<typeof runCli>, pattern: RegExp): void {
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

test('bench --json on the CPU reports prompt and decode speed with the bytes a token reads', () => {
  const r = runCli(['bench', '-m', MODEL, '--backend', 'cpu', '--json', '--prompt', '64,128', '--context', '0,100', '--gen', '16', '--repeats', '1']);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.backend, 'cpu');
  assert.deepEqual(report.prefill.map((p: { tokens: number }) => p.tokens), [64, 128]);
  assert.deepEqual(report.decode.map((d: { context: number }) => d.context), [0, 100]);
  for (const p of report.prefill) assert.ok(p.tokensPerSec > 0 && Number.isFinite(p.tokensPerSec));
  // stories260K: 5 layers, 4 KV heads of 8 dims, a float32 cache on the CPU. Decode is measured after 8
  // warm-up steps, over 16 tokens: the mean context is context + 8 + 16/2.
  const kvPerPosition = 5 * 2 * 4 * 8 * 4;
  for (const d of report.decode) {
    assert.ok(d.tokensPerSec > 0);
    assert.equal(d.bytesPerToken, report.memory.weightsBytes + (d.context + 16) * kvPerPosition);
    assert.equal(d.bandwidthUse, null);
  }
  assert.ok(report.decode[1].bytesPerToken > report.decode[0].bytesPerToken);
  assert.ok(report.memory.weightsBytes > 200_000);
});

test('bench prints a table by default', () => {
  const r = runCli(['bench', '-m', MODEL, '--backend', 'cpu', '--prompt', '32', '--context', '16', '--gen', '8', '--repeats', '1']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /prompt 32/);
  assert.match(r.stdout, /decode @16/);
  assert.doesNotMatch(r.stdout, /\x1b\[/, 'no colour codes when piped');
});

test('bench --verbose reports the load on stderr and keeps stdout to the report', () => {
  const r = runCli(['bench', '-m', MODEL, '--backend', 'cpu', '--json', '--verbose', '--prompt', '16', '--context', '0', '--gen', '4', '--repeats', '1']);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  // the fixture's one safetensors file: 236,040 bytes
  assert.match(r.stderr, /^xllama: load: .*stories260K-gptq-4bit-g32 in \d+\.\d\d s: 230\.5 KiB of safetensors at \d/m);
  assert.ok(report.loadSeconds > 0);
});

test('bench flag errors are one line with exit code 2', () => {
  assertOneLineError(runCli(['bench']), /either -m\/--model DIR or --dummy NAME/);
  assertOneLineError(runCli(['bench', '-m', MODEL, '--dummy', 'llama-7b']), /either -m\/--model DIR or --dummy NAME/);
  assertOneLineError(runCli(['bench', '-m', MODEL, '--prompt', '12,x']), /--prompt: expected an integer, got 'x'/);
  assertOneLineError(runCli(['bench', '-m', MODEL, '--prompt', '1000']), /need 1000 cache positions, more than the model's context \(512\)/);
  assertOneLineError(runCli(['bench', '-m', MODEL, '--gen', '0']), /--gen: must be >= 1/);
});

test('bench --dummy without a GPU says why in one line', (t) => {
  if (hasGpu()) {
    t.skip('this machine has a GPU');
    return;
  }
  assertOneLineError(runCli(['bench', '--dummy', 'llama-7b']), /dummy model llama-7b needs a CUDA GPU/);
});

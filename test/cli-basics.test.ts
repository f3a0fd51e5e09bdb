import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './helpers/run-cli.js';

test('--help lists info and shows examples', () => {
  const r = runCli(['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /info/);
  assert.match(r.stdout, /Examples:/);
});

test('info --gpus lists the cpu backend and either GPUs or a reason', () => {
  const r = runCli(['info', '--gpus', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.ok(info.backends.includes('cpu'));
  if (info.gpus.length === 0) assert.ok(info.gpuUnavailableReason.length > 0);
  else assert.ok(info.backends.includes('cuda'));
});

test('an unknown flag is a usage error with exit code 2', () => {
  const r = runCli(['info', '--no-such-flag']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no-such-flag/);
});

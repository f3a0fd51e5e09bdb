// Tensor data the header can't vouch for: a g_idx entry past the last group must be refused at load with
// one line naming the tensor, never read out of bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync } from 'node:fs';
import { runCli } from '../helpers/run-cli.js';
import { copyFixture, G64_ACT } from '../loader/model-dir.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';

test('a g_idx entry outside the groups is a one-line error naming the tensor', () => {
  const dir = copyFixture(G64_ACT);
  const name = 'model.layers.2.mlp.down_proj.g_idx';
  const entry = loadModelSpec(dir).tensors[name];
  const fd = openSync(entry.file, 'r+');
  try {
    writeSync(fd, Buffer.from(new Int32Array([999]).buffer), 0, 4, entry.offset + 4 * 5);
  } finally {
    closeSync(fd);
  }
  const r = runCli(['generate', '-m', dir, '-p', 'Once upon a time', '-n', '4', '--backend', 'cpu']);
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(name.replace(/\./g, '\\.')));
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(r.stdout, '');
});

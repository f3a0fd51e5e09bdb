// Issue 14.6: the exit codes in README "Exit codes" — 0 ok, 1 runtime failure, 2 bad input or flags,
// 130 interrupted — each through the real CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures, launcher, runCli, startCli } from '../helpers/run-cli.js';
import { LONG_RUN, longContextModel } from './long-model.js';

const model = join(fixtures, 'models', 'stories260K');

test('0: a run that did its job, and --help', () => {
  assert.equal(runCli(['info', model]).status, 0);
  assert.equal(runCli(['generate', '--help']).status, 0);
});

test('1: xllama with no arguments prints the help on stdout and exits 1, as git and npm do', () => {
  const r = runCli([]);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /^Usage: xllama /);
  assert.match(r.stdout, /Exit codes: 0 ok, 1 runtime failure, 2 bad input or flags, 130 interrupted/);
  assert.equal(r.stderr, '');
});

test('1: output that cannot be written (a full disk) is a runtime failure, said on one line', { skip: !existsSync('/dev/full') }, () => {
  const full = openSync('/dev/full', 'w');
  try {
    const r = spawnSync(process.execPath, [launcher, 'info', model], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^xllama: cannot write to stdout: ENOSPC[^\n]*\n$/);
  } finally {
    closeSync(full);
  }
});

test('2: bad flags and bad input', () => {
  assert.equal(runCli(['generate', '--no-such-flag']).status, 2);
  assert.equal(runCli(['info', join(fixtures, 'no-such-model')]).status, 2);
});

test('130: Ctrl+C during generate stops it cleanly (text so far, statistics) and exits 130', async () => {
  const dir = longContextModel();
  let sent = false;
  const r = await startCli(['generate', '-m', dir, ...LONG_RUN], (child) => {
    // Mid-generation: the first text has arrived, and the run has minutes to go.
    child.stdout.on('data', () => {
      if (!sent) child.kill('SIGINT');
      sent = true;
    });
  });
  assert.ok(sent);
  assert.equal(r.signal, null, 'ended by itself, not killed by the signal');
  assert.equal(r.code, 130, r.stderr);
  assert.ok(r.stdout.length > 0);
  assert.match(r.stderr, /^cpu: prompt 5 tokens, .* stop: abort\n$/);
});

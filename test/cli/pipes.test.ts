// Issue 14.1: every command ends quietly when the reader of its stdout goes away (`xllama ... | head`),
// and long work stops (rather than running on with nobody reading).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures, startCli, type CliExit } from '../helpers/run-cli.js';
import { LONG_RUN, longContextModel } from './long-model.js';

const model = join(fixtures, 'models', 'stories260K');

function assertQuietEnd(r: CliExit): void {
  assert.equal(r.signal, null);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /EPIPE|Error|\n\s+at /);
}

// The reader is gone before xllama writes a byte: the first write already fails.
const QUICK: [string, string[]][] = [
  ['xllama --help', ['--help']],
  ['xllama generate --help', ['generate', '--help']],
  ['xllama --version', ['--version']],
  ['xllama info MODEL', ['info', model]],
  ['xllama info --gpus', ['info', '--gpus']],
  ['xllama generate', ['generate', '-m', model, '--backend', 'cpu', '-p', 'Once upon a time', '-n', '20']],
  ['xllama generate --json', ['generate', '-m', model, '--backend', 'cpu', '-p', 'Once upon a time', '-n', '5', '--json']],
  ['xllama bench', ['bench', '-m', model, '--backend', 'cpu']],
  ['xllama gpu-monitor --replay --json', ['gpu-monitor', '--replay', join(fixtures, 'monitor', 'h100-memory.jsonl'), '--json', '--speed', 'max']],
];

for (const [name, args] of QUICK) {
  test(`${name} with stdout closed before it writes: exit 0, no stack trace`, async () => {
    assertQuietEnd(await startCli(args, (child) => child.stdout.destroy()));
  });
}

test('generate stops when the reader goes away after the first bytes (| head -c 10)', async () => {
  const dir = longContextModel();
  let seen = 0;
  const r = await startCli(['generate', '-m', dir, ...LONG_RUN], (child) => {
    child.stdout.on('data', (chunk: string) => {
      seen += chunk.length;
      if (seen >= 10) child.stdout.destroy();
    });
  });
  assertQuietEnd(r);
  assert.ok(seen >= 10);
  // Stopped early: the run would take minutes and end with 'length'.
  assert.match(r.stderr, /generated \d+ tokens, .*stop: abort\n$/);
});

// The model folder as the argument of chat and generate (`xllama chat DIR`): the same run as -m DIR, and a
// second, different folder given both ways is refused in one line before anything loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';

const stories = join(fixtures, 'models', 'stories260K');
const greedy = ['--backend', 'cpu', '--temperature', '0'];

function succeeded(r: ReturnType<typeof runCli>): string {
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('generate DIR gives what generate -m DIR gives', () => {
  const byFlag = JSON.parse(succeeded(runCli(['generate', '-m', stories, '-p', 'Once upon', '-n', '12', '--json', ...greedy])));
  const byArg = JSON.parse(succeeded(runCli(['generate', stories, '-p', 'Once upon', '-n', '12', '--json', ...greedy])));
  assert.equal(byArg.model, byFlag.model);
  assert.ok(byArg.generatedIds.length > 0);
  assert.deepEqual(byArg.generatedIds, byFlag.generatedIds);
  assert.equal(byArg.text, byFlag.text);
});

test('chat DIR replies as chat -m DIR does, and the same folder given both ways is accepted', () => {
  const byFlag = succeeded(runCli(['chat', '-m', stories, '--prompt', 'Hello', '-n', '16', ...greedy]));
  assert.notEqual(byFlag.trim(), '');
  assert.equal(succeeded(runCli(['chat', stories, '--prompt', 'Hello', '-n', '16', ...greedy])), byFlag);
  assert.equal(succeeded(runCli(['chat', stories, '-m', stories, '--prompt', 'Hello', '-n', '16', ...greedy])), byFlag);
});

const promptFlag = { chat: '--prompt', generate: '-p' };

for (const [command, flag] of Object.entries(promptFlag)) {
  test(`${command}: two different model folders, as -m and as the argument, are refused in one line`, () => {
    const other = join(fixtures, 'no-such-model');
    const r = runCli([command, '-m', other, stories, flag, 'x']);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `xllama: ${command}: two model folders (${other} and ${stories}); give one\n`);
  });
}

// `xllama generate --typical-p` as a user runs it: the pick is made by the backend (session 40; before, every such
// step went to the host sampler) and must be what the host sampler picks with the same seed (XLLAMA_HOST_SAMPLING=1
// makes every pick there). CPU backend, llama2.c's stories260K.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';

const model = join(fixtures, 'models', 'stories260K');

function ids(args: string[], env: NodeJS.ProcessEnv = {}): number[] {
  const r = runCli(['generate', '-m', model, '--backend', 'cpu', '-p', 'Once upon a time', '-n', '48', '--json', '--seed', '9', ...args], { env });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { generatedIds: number[] }).generatedIds;
}

for (const [name, flags] of [
  ['after top-k 40, top-p and min-p', ['--temperature', '1.2', '--typical-p', '0.5']],
  ['over the whole vocabulary', ['--temperature', '1.2', '--top-k', '0', '--top-p', '1', '--min-p', '0', '--typical-p', '0.6']],
] as const) {
  test(`generate with typical-p (${name}): the backend's picks = the host sampler's, and typical-p bites`, () => {
    const onBackend = ids([...flags]);
    assert.equal(onBackend.length, 48);
    assert.deepEqual(onBackend, ids([...flags], { XLLAMA_HOST_SAMPLING: '1' }));
    assert.notDeepEqual(onBackend, ids(flags.filter((f, i) => f !== '--typical-p' && flags[i - 1] !== '--typical-p')));
  });
}

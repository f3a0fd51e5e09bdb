// `xllama generate` with penalties, as a user runs it: the backend applies them from the token history the reply
// sets (session 35), and must pick what the host sampler picks with the same seed (XLLAMA_HOST_SAMPLING=1 makes
// every pick there). CPU backend, llama2.c's stories260K.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';

const model = join(fixtures, 'models', 'stories260K');

function ids(args: string[], env: NodeJS.ProcessEnv = {}): number[] {
  const r = runCli(['generate', '-m', model, '--backend', 'cpu', '-p', 'Once upon a time', '-n', '40', '--json', ...args], { env });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { generatedIds: number[] }).generatedIds;
}

for (const [name, flags] of [
  ['greedy, repetition penalty', ['--temperature', '0', '--repeat-penalty', '1.5']],
  ['sampled, all three penalties', ['--seed', '11', '--repeat-penalty', '1.3', '--frequency-penalty', '0.5', '--presence-penalty', '0.3']],
] as const) {
  test(`generate with penalties (${name}): the backend's picks = the host sampler's, and the penalties bite`, () => {
    const onBackend = ids([...flags]);
    assert.deepEqual(onBackend, ids([...flags], { XLLAMA_HOST_SAMPLING: '1' }));
    const unpenalized = ids(flags.filter((f, i) => !/penalty/.test(f) && !/penalty/.test(flags[i - 1] ?? '')));
    assert.notDeepEqual(onBackend, unpenalized);
  });
}

// generation_config.json's sampling settings: read and range-checked under the file's own names, used by generate
// and chat where no flag is given (flags > the model's file > xllama's defaults), and reported by info.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { samplingDefaults } from '../../cli/engine/loader/generation-config.js';
import { DEFAULT_SAMPLING } from '../../cli/engine/sampler.js';
import { givenSampling, resolveSampling } from '../../cli/commands/sampling-options.js';
import { UserError } from '../../cli/errors.js';
import { runCli } from '../helpers/run-cli.js';
import { assertCliRefused } from '../helpers/assert-refused.js';
import { FP16, copyFixture, editJson } from '../loader/model-dir.js';

const FILE = 'm/generation_config.json';

test('the sampling fields a generation_config.json gives, and only those', () => {
  assert.deepEqual(samplingDefaults(null, FILE), {});
  assert.deepEqual(samplingDefaults({ bos_token_id: 1, eos_token_id: 2, do_sample: true }, FILE), {});
  // Meta's Llama 3 Instruct, Qwen2.5 Instruct.
  assert.deepEqual(samplingDefaults({ do_sample: true, temperature: 0.6, top_p: 0.9 }, FILE), { temperature: 0.6, topP: 0.9 });
  assert.deepEqual(samplingDefaults({ temperature: 0.7, top_p: 0.8, top_k: 20, repetition_penalty: 1.05 }, FILE),
    { temperature: 0.7, topP: 0.8, topK: 20, repeatPenalty: 1.05 });
  assert.deepEqual(samplingDefaults({ min_p: 0.1, typical_p: 0.95, top_k: null }, FILE), { minP: 0.1, typicalP: 0.95 });
});

test('a sampling field out of range is refused under the file\'s own name for it', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ top_p: 0 }, 'm/generation_config.json: top_p must be in (0, 1] (got 0)'],
    [{ temperature: -1 }, 'm/generation_config.json: temperature must be >= 0 (got -1)'],
    [{ top_k: 2.5 }, 'm/generation_config.json: top_k must be an integer from 0 to 2147483647 (got 2.5; 0: off)'],
    [{ repetition_penalty: 0 }, 'm/generation_config.json: repetition_penalty must be > 0 (got 0; 1: off)'],
    [{ temperature: '0.7' }, 'm/generation_config.json: temperature is "0.7", expected a number'],
  ];
  for (const [json, message] of cases) {
    assert.throws(() => samplingDefaults(json, FILE), (e: unknown) => e instanceof UserError && e.message === message, message);
  }
});

test('flags replace the model\'s settings, which replace xllama\'s defaults', () => {
  const fromModel = { temperature: 0.6, topP: 0.9 };
  assert.deepEqual(resolveSampling({}, {}), { params: DEFAULT_SAMPLING, fromModel: {} });
  assert.deepEqual(resolveSampling({}, fromModel), { params: { ...DEFAULT_SAMPLING, temperature: 0.6, topP: 0.9 }, fromModel });
  const given = givenSampling({ temperature: '0', topK: '5' });
  assert.deepEqual(given, { temperature: 0, topK: 5 });
  assert.deepEqual(resolveSampling(given, fromModel),
    { params: { ...DEFAULT_SAMPLING, temperature: 0, topK: 5, topP: 0.9 }, fromModel: { topP: 0.9 } });
  assert.throws(() => givenSampling({ topP: '0' }), /--top-p must be in \(0, 1\] \(got 0\)/);
});

test('generate and chat sample with the model\'s settings; info shows them; a bad one is refused naming the file', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'generation_config.json'), (g) => Object.assign(g, { do_sample: true, temperature: 0.6, top_p: 0.9 }));
  const gen = (...flags: string[]) => {
    const r = runCli(['generate', '-m', dir, '--backend', 'cpu', '-p', 'Once', '-n', '2', '--json', ...flags]);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const plain = gen();
  assert.deepEqual(plain.sampling, { ...DEFAULT_SAMPLING, temperature: 0.6, topP: 0.9 });
  assert.deepEqual(plain.samplingFromModel, { temperature: 0.6, topP: 0.9 });
  const flagged = gen('--temperature', '0');
  assert.equal(flagged.sampling.temperature, 0);
  assert.deepEqual(flagged.samplingFromModel, { topP: 0.9 });
  const info = runCli(['info', dir]);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stdout, /^sampling +temperature 0\.6, top-p 0\.9 \(generation_config\.json\)$/m);
  const json = runCli(['info', dir, '--json']);
  assert.deepEqual(JSON.parse(json.stdout).samplingDefaults, { temperature: 0.6, topP: 0.9 });
  // The fixture's own file has no sampling fields: no row, and the defaults.
  assert.doesNotMatch(runCli(['info', copyFixture(FP16)]).stdout, /^sampling/m);

  editJson(join(dir, 'generation_config.json'), (g) => { g.top_p = 1.5; });
  assertCliRefused(['generate', '-m', dir, '--backend', 'cpu', '-p', 'Once', '-n', '2'], 'generation_config.json: top_p must be in (0, 1] (got 1.5)');
  assertCliRefused(['chat', '-m', dir, '--backend', 'cpu', '--prompt', 'Hi'], 'generation_config.json: top_p must be in (0, 1] (got 1.5)');
});

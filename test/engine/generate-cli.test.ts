// `xllama generate` end to end, through the real launcher, on the stories260K fixture and the CPU backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';

const model = join(fixtures, 'models', 'stories260K');
const expected = readFileSync(join(model, 'llama2c_expected_greedy_200.txt'), 'utf8');
const reference = JSON.parse(readFileSync(join(model, 'reference.json'), 'utf8'));
/** llama2.c's greedy run: BOS + 200 ids (no BOS among them, so its BOS-stop never fired). */
const greedy201 = reference.sequences.find((s: { name: string }) => s.name === 'greedy201').ids as number[];
const PROMPT = 'Once upon a time';

function gen(args: string[]) {
  return runCli(['generate', '-m', model, '--backend', 'cpu', ...args]);
}

test("greedy continuation of 'Once upon a time' reproduces llama2.c's expected text", () => {
  // llama2.c's 200 steps after BOS cover the 4 prompt tokens and 196 generated ones.
  const r = gen(['-p', PROMPT, '-n', '196', '--temperature', '0']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(PROMPT + r.stdout, `${expected}\n`);
  assert.match(r.stderr, /prompt 5 tokens, .* generated 196 tokens, .* tok\/s/);
  const r200 = gen(['-p', PROMPT, '-n', '200', '--temperature', '0']);
  assert.equal(r200.status, 0, r200.stderr);
  assert.ok((PROMPT + r200.stdout).startsWith(expected));
});

test('one generated token: no generation rate (no step after the first token was timed), and "1 token"', () => {
  const r = gen(['-p', PROMPT, '-n', '1', '--temperature', '0']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /prompt 5 tokens, [\d.]+ tok\/s; generated 1 token; first token after [\d.]+ ms; stop: length\n$/);
});

test('-n 0 reads and times the prompt only: its rate; nothing on stdout, no first token', () => {
  const r = gen(['-p', PROMPT, '-n', '0']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '');
  const m = /prompt 5 tokens, ([\d.]+) tok\/s; generated 0 tokens; stop: length\n$/.exec(r.stderr);
  assert.ok(m, r.stderr);
  assert.ok(Number(m[1]) > 0, r.stderr);
});

test('--json: prompt and generated ids are the reference greedy ids', () => {
  const r = gen(['-p', PROMPT, '-n', '200', '--temperature', '0', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.promptIds, greedy201.slice(0, 5));
  assert.equal(out.generatedIds.length, 200);
  assert.deepEqual(out.generatedIds.slice(0, 196), greedy201.slice(5));
  assert.ok((PROMPT + out.text).startsWith(expected));
  assert.equal(out.stopReason, 'length');
  assert.equal(out.backend, 'cpu');
  for (const key of ['promptTokensPerSec', 'generatedTokensPerSec', 'timeToFirstTokenMs', 'promptMs', 'generateMs']) {
    assert.ok(Number.isFinite(out.timings[key]) && out.timings[key] >= 0, key);
  }
  assert.equal(out.timings.promptTokens, 5);
  assert.equal(out.timings.generatedTokens, 200);
});

test('same seed → same text; another seed → other text', () => {
  const run = (seed: string) => {
    const r = gen(['-p', PROMPT, '-n', '60', '--temperature', '1', '--top-k', '0', '--top-p', '0.95', '--seed', seed, '--json']);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { text: string; generatedIds: number[]; seed: number };
  };
  const a = run('1234');
  const b = run('1234');
  const c = run('99');
  assert.equal(a.seed, 1234);
  assert.equal(a.text, b.text);
  assert.deepEqual(a.generatedIds, b.generatedIds);
  assert.notDeepEqual(a.generatedIds, c.generatedIds);
});

test('--stop ends before the stop string; the stop string is not printed', () => {
  const r = gen(['-p', PROMPT, '-n', '100', '--temperature', '0', '--stop', 'red ball', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.stopReason, 'stop-string');
  assert.equal(out.text, ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, ');
  assert.ok(expected.startsWith(PROMPT + out.text + 'red ball'));
});

const BAD: [string, string[], RegExp][] = [
  ['negative count', ['-p', 'x', '-n', '-3'], /-n\/--max-tokens/],
  ['non-integer count', ['-p', 'x', '-n', '2.5'], /-n\/--max-tokens/],
  ['negative temperature', ['-p', 'x', '--temperature', '-0.5'], /--temperature/],
  ['top-p of 0', ['-p', 'x', '--top-p', '0'], /--top-p/],
  ['top-p above 1', ['-p', 'x', '--top-p', '1.5'], /--top-p must be in \(0, 1\] \(got 1\.5\)/],
  ['min-p above 1', ['-p', 'x', '--min-p', '2'], /--min-p/],
  ['non-numeric top-k', ['-p', 'x', '--top-k', 'many'], /--top-k/],
  ['unknown backend', ['-p', 'x', '--backend', 'tpu'], /--backend: unknown backend 'tpu'/],
  ['prompt longer than --max-seq-len', ['-p', 'Once upon a time there was', '--max-seq-len', '4'], /prompt is \d+ tokens; --max-seq-len is 4/],
  ['--max-seq-len above the model', ['-p', 'x', '--max-seq-len', '4096'], /max_position_embeddings \(512\)/],
];

for (const [name, args, message] of BAD) {
  test(`bad input exits 2 with one line: ${name}`, () => {
    const r = gen(args);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^xllama: [^\n]+\n$/);
    assert.match(r.stderr, message);
  });
}

test('a missing model folder is a one-line error naming it', () => {
  const r = runCli(['generate', '-m', join(fixtures, 'no-such-model'), '-p', 'x']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^xllama: .*no-such-model[^\n]*\n$/);
});

test('a prompt longer than the model context is refused before loading', () => {
  const long = Array.from({ length: 200 }, () => 'Once upon a time').join(' ');
  const r = gen(['-p', long]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^xllama: -p\/--prompt: the prompt is \d+ tokens; the model's context is 512[^\n]*\n$/);
});

for (const folder of ['stories260K', 'stories260K-gptq-4bit-g32', 'stories260K-gptq-4bit-g64-actorder']) {
  test(`${folder}: greedy after the golden sentence gives transformers' 64 ids (reference.json)`, () => {
    const ref = JSON.parse(readFileSync(join(fixtures, 'models', folder, 'reference.json'), 'utf8')).greedy.from_golden;
    const r = runCli(['generate', '-m', join(fixtures, 'models', folder), '--backend', 'cpu', '--temperature', '0', '--json',
      '-n', String(ref.n_new), '-p', 'One day, a clever fox found a shiny key under the old oak tree.']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.promptIds, ref.prompt);
    assert.deepEqual(out.generatedIds, ref.new_ids);
  });
}

// Issue 14.3: usage errors on one line in xllama's style with commander's suggestions, exit 2; the
// llama.cpp spellings people type by habit (--temp, -c/--ctx-size, --n-predict) work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { fixtures, runCli } from '../helpers/run-cli.js';

const model = join(fixtures, 'models', 'stories260K');

const CASES: [string, string[], string][] = [
  ['a misspelt option', ['generate', '--temperatur', '0'], "unknown option '--temperatur' (did you mean --temperature?)"],
  ['an underscore for a dash', ['generate', '--top_k', '5'], "unknown option '--top_k' (did you mean --top-k?)"],
  ['an option with no close match', ['generate', '--frobnicate'], "unknown option '--frobnicate' (see xllama generate --help)"],
  ['a misspelt command', ['genrate', '-p', 'x'], "unknown command 'genrate' (did you mean generate?)"],
  ['help for an unknown command', ['help', 'frobnicate'], "unknown command 'frobnicate' (see xllama --help)"],
  ['a flag without its value', ['generate', '-m', model, '-p'], "option '-p, --prompt <text>' argument missing"],
  ['too many arguments', ['info', model, model], "too many arguments for 'info'. Expected 1 argument but got 2."],
];

for (const [name, args, line] of CASES) {
  test(`usage error, one line, exit 2: ${name}`, () => {
    const r = runCli(args);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `xllama: ${line}\n`);
  });
}

test('llama.cpp spellings: --temp, -c, --ctx-size and --n-predict set --temperature, --max-seq-len and -n', () => {
  const reference = JSON.parse(readFileSync(join(model, 'reference.json'), 'utf8'));
  const greedy = reference.sequences.find((s: { name: string }) => s.name === 'greedy201').ids as number[];
  // The last spelling on the command line wins, as for a repeated flag: --temp 0 after --temperature 1.
  const short = runCli(['generate', '-m', model, '--backend', 'cpu', '-p', 'Once upon a time', '--json',
    '--temperature', '1', '--temp', '0', '-c', '64', '--n-predict', '7']);
  assert.equal(short.status, 0, short.stderr);
  const a = JSON.parse(short.stdout);
  assert.equal(a.sampling.temperature, 0);
  assert.equal(a.maxSeqLen, 64);
  assert.equal(a.maxTokens, 7);
  assert.deepEqual(a.generatedIds, greedy.slice(5, 12));
  const long = runCli(['generate', '-m', model, '--backend', 'cpu', '-p', 'Once upon a time', '--json', '--temp', '0',
    '--ctx-size', '100', '-n', '3']);
  assert.equal(long.status, 0, long.stderr);
  assert.equal(JSON.parse(long.stdout).maxSeqLen, 100);
  // The spellings are checked like the flags they stand for.
  const bad = runCli(['generate', '-m', model, '-p', 'x', '-c', 'lots']);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, "xllama: --max-seq-len: expected an integer, got 'lots'\n");
});

test("ppl: -c is llama-perplexity's -c, the tokens per chunk (--ctx)", () => {
  const r = runCli(['ppl', '-m', model, '--backend', 'cpu', '-f', join(model, 'stories.txt'), '-c', '128', '--chunks', '2', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ctx, 128);
  assert.equal(out.chunks, 2);
});

test('--help names the llama.cpp spellings beside the flags they stand for', () => {
  const r = runCli(['generate', '--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /--temperature <t>\s+0 = greedy, also --temp/);
  assert.match(r.stdout, /--max-seq-len <n>\s+KV-cache positions, also -c\/--ctx-size/);
  assert.match(r.stdout, /--max-tokens <n>\s+most tokens to generate, also --n-predict/);
});

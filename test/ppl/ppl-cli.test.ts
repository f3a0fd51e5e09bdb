// `xllama ppl` end to end through the real launcher on the CPU backend: the GPTQ-recipe perplexity of
// stories.txt for the three fixture models against transformers' (reference.json ppl_text), the output
// forms, and the bad inputs the issue lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';
import { MODELS, loadReference, modelDir } from '../cpu/reference.js';
import { storiesTokenizer } from '../engine/fixture-tokenizers.js';

const stories = join(fixtures, 'models', 'stories260K', 'stories.txt');
const tiny = modelDir('stories260K');

function ppl(args: string[]) {
  return runCli(['ppl', '--backend', 'cpu', ...args]);
}

for (const name of MODELS) {
  test(`${name}: --mode gptq --ctx 128 on stories.txt gives transformers' PPL within 0.1%`, () => {
    const ref = loadReference(name).ppl_text;
    const r = ppl(['-m', modelDir(name), '-f', stories, '--ctx', '128', '--mode', 'gptq', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.textTokens, ref.ids.length);
    assert.equal(out.chunks, ref.n_chunks);
    assert.equal(out.tokens, ref.n_predictions);
    assert.ok(Math.abs(out.ppl / ref.ppl - 1) < 1e-3, `ppl ${out.ppl} vs ${ref.ppl}`);
    assert.ok(Math.abs(out.nll * out.tokens - ref.total_nll) / ref.total_nll < 1e-4);
  });
}

test('--json carries the estimate, the layout and the timings', () => {
  const r = ppl(['-m', tiny, '-f', stories, '--ctx', '64', '--mode', 'llama.cpp', '--chunks', '3', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  for (const key of ['ppl', 'stderr', 'nll', 'tokens', 'chunks', 'mode', 'ctx', 'timings']) assert.ok(key in out, key);
  assert.equal(out.mode, 'llama.cpp');
  assert.equal(out.ctx, 64);
  assert.equal(out.chunks, 3);
  assert.equal(out.tokens, 3 * 31);
  assert.equal(out.backend, 'cpu');
  assert.ok(Math.abs(out.ppl - Math.exp(out.nll)) < 1e-9 * out.ppl);
  assert.ok(out.stderr > 0 && out.stderr < out.ppl);
  assert.equal(out.runningPpl.length, 3);
  assert.equal(out.runningPpl[2], out.ppl);
  assert.equal(out.timings.evaluatedTokens, 3 * 63);
  for (const key of ['loadMs', 'tokenizeMs', 'scoreMs', 'tokensPerSec']) assert.ok(out.timings[key] > 0, key);
});

test('the text file as the argument: the same estimate as -f, and the same file given both ways is accepted', () => {
  const args = ['-m', tiny, '--ctx', '64', '--chunks', '2', '--json'];
  const byFlag = ppl([...args, '-f', stories]);
  const byArg = ppl([stories, ...args]);
  const both = ppl([...args, '-f', stories, stories]);
  for (const r of [byFlag, byArg, both]) assert.equal(r.status, 0, r.stderr);
  const flagged = JSON.parse(byFlag.stdout);
  for (const r of [byArg, both]) {
    const out = JSON.parse(r.stdout);
    assert.equal(out.file, stories);
    assert.equal(out.ppl, flagged.ppl);
    assert.equal(out.tokens, flagged.tokens);
  }
});

test('plain output: the estimate on stdout, running values on stderr without escape codes when piped', () => {
  const r = ppl(['-m', tiny, '-f', stories, '--ctx', '128', '--stride', '64', '--chunks', '4']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^Final estimate: PPL = \d+\.\d{4} \+\/- \d+\.\d{4}$/);
  assert.match(lines[1], /^319 tokens scored in 4 chunks of 128 \(gptq mode, stride 64\); 508 tokens evaluated in .* tokens\/s \(cpu\)$/);
  assert.doesNotMatch(r.stderr, /\x1b/);
  assert.match(r.stderr, /^ppl: .* 4 chunks of 128 \(gptq mode, stride 64\), 319 predictions to score \(cpu\)$/m);
  for (let i = 1; i <= 4; i++) assert.match(r.stderr, new RegExp(`^\\[${i}\\]\\d+\\.\\d{4} · ${i}/4 chunks · .* tok/s · ETA \\d+ s$`, 'm'));
});

test('bad input: one line naming the file or flag, exit code 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xllama-ppl-'));
  const empty = join(dir, 'empty.txt');
  writeFileSync(empty, '');
  const binary = join(dir, 'model.bin');
  writeFileSync(binary, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00, 0xff]));
  const latin1 = join(dir, 'latin1.txt');
  writeFileSync(latin1, Buffer.from('caf\xe9 au lait', 'latin1'));
  const short = join(dir, 'short.txt');
  const shortText = 'Once upon a time there was a fox.';
  writeFileSync(short, shortText);
  const shortTokens = storiesTokenizer().encode(shortText, { addSpecial: true }).length;
  const cases: [string[], RegExp][] = [
    [['-f', join(dir, 'missing.txt')], /missing\.txt: no such file/],
    [['-f', dir], /is a folder, not a text file/],
    [['-f', '/dev/zero'], /\/dev\/zero: not a regular file/],
    [['-f', empty], /empty\.txt: the file is empty/],
    [['-f', binary], /model\.bin: not a text file \(a NUL byte at offset 6\)/],
    [['-f', latin1], /latin1\.txt: not a UTF-8 text file/],
    [['-f', short, '--ctx', '128'], new RegExp(`short\\.txt: the text is ${shortTokens} tokens; one chunk of --ctx 128 needs 128 tokens`)],
    [['-f', stories, '--ctx', '4096'], /--ctx: 4096 is more than the model's context \(max_position_embeddings 512\)/],
    [['-f', stories, '--ctx', '1'], /--ctx: gptq mode needs chunks of at least 2 tokens, got 1/],
    [['-f', stories, '--ctx', '2', '--mode', 'llama.cpp'], /--ctx: llama\.cpp mode needs chunks of at least 3 tokens, got 2/],
    [['-f', stories, '--ctx', 'abc'], /--ctx: expected an integer, got 'abc'/],
    [['-f', stories, '--ctx', '64', '--stride', '64'], /--stride: must be from 1 to 63 \(below --ctx 64\), got 64/],
    [['-f', stories, '--mode', 'exllama'], /--mode: unknown mode 'exllama' \(use gptq or llama\.cpp\)/],
    [['-f', stories, '--chunks', '0'], /--chunks: must be >= 1, got 0/],
    [['-f', stories, '--ctx', '128', '--max-seq-len', '100'], /--max-seq-len: 100 is less than --ctx 128/],
    [['-f', stories, '--dummy', 'llama-7b'], /give either -m\/--model DIR or --dummy NAME/],
    [[], /-f\/--file: give the text file to evaluate \(-f FILE, or FILE as the argument\)/],
    [[stories, '-f', short], /ppl: two text files \(-f .*short\.txt and .*stories\.txt\); give one/],
    [[stories, short], /too many arguments for 'ppl'\. Expected 1 argument but got 2\./],
  ];
  for (const [args, re] of cases) {
    const r = ppl(['-m', tiny, ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0], /^xllama: /);
    assert.match(lines[0], re);
  }
});

// `xllama bench` through the real CLI, on the CPU backend with the small fixture models: every output format
// parses, mean and sd come from the repetitions, a failing configuration becomes rows and the run goes on,
// tests that don't fit are rows, bad flags are one line with exit code 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures, launcher, repoRoot, runCli } from '../helpers/run-cli.js';

const GPTQ = join(fixtures, 'models', 'stories260K-gptq-4bit-g32');
const FP16 = join(fixtures, 'models', 'stories260K');
const VERSION = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version as string;
const SMALL = ['--backend', 'cpu', '-p', '16', '-n', '4', '-d', '0,8', '-r', '2'];
const SMALL_TESTS = ['pp16', 'pp16@d8', 'tg4', 'tg4@d8'];

/** Parameters from config.json by hand: 4 attention and 3 MLP matrices per layer, norms, tied embeddings. */
function expectedParams(dir: string): number {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const h = c.hidden_size, kv = (h / c.num_attention_heads) * c.num_key_value_heads;
  const layer = 2 * h * h + 2 * h * kv + 3 * h * c.intermediate_size + 2 * h;
  return c.num_hidden_layers * layer + h + c.vocab_size * h * (c.tie_word_embeddings ? 1 : 2);
}

function assertOneLineError(r: ReturnType<typeof runCli>, pattern: RegExp): void {
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.equal(r.stdout, '', 'nothing on stdout');
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function sampleSd(xs: number[]): number {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

/** RFC 4180: quoted fields may hold commas, doubled quotes and newlines. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; } else if (ch === '\n') { row.push(field); rows.push(row); row = []; field = ''; } else field += ch;
  }
  assert.equal(field + row.join(''), '', 'the CSV ends with a newline');
  return rows;
}

test('bench -o json: mean ± sd of the repetitions, cache sized to the tests, bytes per token, the footer', () => {
  const r = runCli(['bench', '-m', GPTQ, '--backend', 'cpu', '-p', '16,32', '-n', '4', '-d', '0,8', '-r', '3', '-o', 'json']);
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.xllama.version, VERSION);
  assert.match(doc.xllama.commit, /^[0-9a-f]{7,}(-dirty)?$/, 'the build stamps its commit');
  assert.ok('driver' in doc.system && 'cuda' in doc.system && Array.isArray(doc.system.gpus));
  assert.equal(doc.settings.repetitions, 3);
  assert.deepEqual(doc.results.map((x: { test: string }) => x.test), ['pp16', 'pp16@d8', 'pp32', 'pp32@d8', 'tg4', 'tg4@d8']);
  // stories260K: 5 layers × K and V × 4 KV heads × 8 dims × 4 bytes (a float32 cache on the CPU) per position.
  const kvPerPosition = 5 * 2 * 4 * 8 * 4;
  for (const row of doc.results) {
    assert.equal(row.status, 'ok', row.message);
    assert.equal(row.model, 'stories260K-gptq-4bit-g32');
    assert.equal(row.backend, 'cpu');
    assert.equal(row.params, expectedParams(GPTQ));
    const s: number[] = row.tokensPerSec.samples;
    assert.equal(s.length, 3);
    assert.ok(s.every((x) => x > 0 && Number.isFinite(x)));
    assert.ok(Math.abs(row.tokensPerSec.mean - mean(s)) <= 1e-9 * mean(s));
    assert.ok(Math.abs(row.tokensPerSec.sd - sampleSd(s)) <= 1e-9 * mean(s) + 1e-12);
    // The longest test (pp32@d8) needs 40 positions: the cache holds exactly that.
    assert.equal(row.maxSeqLen, 40);
    assert.equal(row.memory.kvCacheBytes, 40 * kvPerPosition);
    assert.deepEqual(row.memory.devices.map((d: { device: number }) => d.device), [-1]);
    assert.equal(row.sizeBytes, row.memory.weightsBytes);
    assert.equal(row.engines, null, 'no GPU runs a CPU configuration');
    if (row.kind === 'tg') {
      // Weights once, plus the KV cache at the mean context: depth + half the generated tokens.
      assert.equal(row.bytesPerToken, row.memory.weightsBytes + (row.depth + 2) * kvPerPosition);
      assert.equal(row.bandwidthUse, null, 'no copy bandwidth on the CPU');
    } else {
      assert.equal(row.bytesPerToken, null);
    }
  }
});

test('bench -o jsonl, csv, md and table parse, one row per test; progress is a line per test on stderr', () => {
  const jsonl = runCli(['bench', '-m', FP16, ...SMALL, '-o', 'jsonl']);
  assert.equal(jsonl.status, 0, jsonl.stderr);
  const rows = jsonl.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((x) => x.test), SMALL_TESTS);
  for (const x of rows) {
    assert.equal(x.status, 'ok');
    assert.equal(x.xllamaVersion, VERSION);
    assert.ok('commit' in x && 'driver' in x && 'cuda' in x);
  }
  const progress = jsonl.stderr.trim().split('\n');
  assert.deepEqual(progress.map((l) => /^bench \[(\d)\/4\] stories260K · cpu · split none · (\S+): [\d.]+ ± [\d.]+ t\/s$/.exec(l)?.slice(1, 3)),
    SMALL_TESTS.map((t, i) => [String(i + 1), t]), jsonl.stderr);

  const csv = runCli(['bench', '-m', FP16, ...SMALL, '-o', 'csv']);
  assert.equal(csv.status, 0, csv.stderr);
  const [header, ...data] = parseCsv(csv.stdout);
  for (const col of ['model', 'test', 'status', 'avg_ts', 'stddev_ts', 'samples_ts', 'memory_bytes', 'xllama_version', 'commit', 'driver', 'cuda']) {
    assert.ok(header.includes(col), col);
  }
  assert.equal(data.length, 4);
  const at = (row: string[], col: string) => row[header.indexOf(col)];
  for (const row of data) {
    assert.equal(row.length, header.length);
    const samples = at(row, 'samples_ts').split(';').map(Number);
    assert.equal(samples.length, 2);
    assert.ok(Math.abs(Number(at(row, 'avg_ts')) - mean(samples)) <= 1e-9 * mean(samples));
    assert.equal(at(row, 'xllama_version'), VERSION);
  }
  assert.deepEqual(data.map((row) => at(row, 'test')), SMALL_TESTS);

  const md = runCli(['bench', '-m', FP16, ...SMALL, '-o', 'md']);
  assert.equal(md.status, 0, md.stderr);
  const lines = md.stdout.split('\n');
  const table = lines.filter((l) => l.startsWith('|'));
  assert.equal(table.length, 2 + 4, 'header, alignment row and a row per test');
  const cells = table.map((l) => l.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim()));
  assert.ok(cells.every((c) => c.length === cells[0].length));
  assert.ok(cells[1].every((c) => /^-+:?$/.test(c)));
  assert.deepEqual(cells.slice(2).map((c) => c[cells[0].indexOf('test')]), SMALL_TESTS);
  assert.ok(cells.slice(2).every((c) => /^\d+\.\d\d ± \d+\.\d\d$/.test(c[cells[0].indexOf('t/s')])));
  assert.ok(lines.some((l) => l.startsWith(`xllama ${VERSION} (commit `) && /NVIDIA driver .* · CUDA /.test(l)), md.stdout);

  const plain = runCli(['bench', '-m', FP16, ...SMALL]);
  assert.equal(plain.status, 0, plain.stderr);
  for (const t of SMALL_TESTS) assert.match(plain.stdout, new RegExp(`│ ${t} +│ +\\d+\\.\\d\\d ± \\d+\\.\\d\\d │`));
  assert.match(plain.stdout, new RegExp(`^xllama ${VERSION.replace(/\./g, '\\.')} \\(commit `, 'm'));
  assert.doesNotMatch(plain.stdout, /\x1b\[/, 'no colour codes when piped');
  assert.doesNotMatch(plain.stdout, /^bench \[/m, 'progress stays off stdout');
});

test('a configuration whose process is killed becomes rows, and the next configuration still runs', () => {
  // The kill hook makes the GPTQ model's child SIGKILL itself (as the OOM killer would) when its second test starts.
  const hook = join(repoRoot, 'dist', 'test', 'bench', 'kill-child-hook.js');
  const r = spawnSync(process.execPath, ['--import', hook, launcher, 'bench', '-m', GPTQ, '-m', FP16, ...SMALL, '-o', 'json'], {
    encoding: 'utf8', timeout: 120_000,
    env: { ...process.env, FORCE_COLOR: '0', XLLAMA_TEST_KILL_MODEL: 'stories260K-gptq-4bit-g32', XLLAMA_TEST_KILL_AT_TEST: '2' },
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr.trim().split('\n').at(-1) as string, /^xllama: bench: 3 of 8 tests failed or did not run; their rows say why$/);
  const rows = JSON.parse(r.stdout).results as { model: string; test: string; status: string; message: string | null }[];
  assert.deepEqual(rows.map((x) => [x.model, x.test, x.status]), [
    ['stories260K-gptq-4bit-g32', 'pp16', 'ok'],
    ['stories260K-gptq-4bit-g32', 'pp16@d8', 'failed'],
    ['stories260K-gptq-4bit-g32', 'tg4', 'not-run'],
    ['stories260K-gptq-4bit-g32', 'tg4@d8', 'not-run'],
    ...SMALL_TESTS.map((t) => ['stories260K', t, 'ok']),
  ]);
  assert.match(rows[1].message as string, /killed by SIGKILL \(out of host memory/);
  assert.match(rows[2].message as string, /killed by SIGKILL .*during an earlier test/);
});

test('configurations that fail to open are rows saying why: a dummy on the CPU, a GPU split', () => {
  const dummy = runCli(['bench', '-m', FP16, '--dummy', 'tiny', ...SMALL, '-o', 'jsonl']);
  assert.equal(dummy.status, 1, dummy.stderr);
  const rows = dummy.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((x) => [x.model, x.test, x.status]),
    [...SMALL_TESTS.map((t) => ['stories260K', t, 'ok']), ...SMALL_TESTS.map((t) => ['tiny (dummy)', t, 'failed'])]);
  for (const x of rows.slice(4)) assert.match(x.message, /dummy model tiny runs on the GPU only/);

  // Each --gpus/--gpu-split pair is a configuration, opened in its own process through the shared model options.
  const split = runCli(['bench', '-m', FP16, ...SMALL, '--gpus', '0,0', '--gpu-split', '1,200', '-o', 'csv']);
  assert.equal(split.status, 1, split.stderr);
  const [header, ...data] = parseCsv(split.stdout);
  assert.equal(data.length, 4);
  for (const row of data) {
    assert.equal(row[header.indexOf('status')], 'failed');
    assert.equal(row[header.indexOf('split')], '1,200');
    assert.equal(row[header.indexOf('gpus')], '0,0');
    assert.match(row[header.indexOf('message')], /gpu|split/i);
  }
  // The table says it once for the configuration, listing its tests.
  const table = runCli(['bench', '-m', FP16, ...SMALL, '--gpus', '0,0', '--gpu-split', '1,200']);
  assert.match(table.stdout, /│ 1,200 on 0,0 │ pp16, pp16@d8, tg4, tg4@d8 │ failed: /);
});

test('a run where no configuration loads still names the machine (GPUs, CUDA) as one that loaded does', () => {
  const loaded = runCli(['bench', '-m', FP16, '--backend', 'cpu', '-p', '16', '-n', 'none', '-r', '1', '-o', 'json']);
  assert.equal(loaded.status, 0, loaded.stderr);
  const none = runCli(['bench', '--dummy', 'tiny', '--backend', 'cpu', '-p', '16', '-n', 'none', '-r', '1', '-o', 'json']);
  assert.equal(none.status, 1, none.stderr);
  const doc = JSON.parse(none.stdout);
  assert.equal(doc.results[0].status, 'failed');
  assert.deepEqual(doc.system, JSON.parse(loaded.stdout).system);
});

test('a test that does not fit the context, or --max-seq-len, is a row saying so', () => {
  const r = runCli(['bench', '-m', FP16, '--backend', 'cpu', '-p', '600,16', '-n', '4', '-d', '0,500', '-r', '1', '-o', 'json']);
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout).results as { test: string; status: string; message: string | null }[];
  assert.deepEqual(rows.map((x) => [x.test, x.status]), [
    ['pp600', 'skipped'], ['pp600@d500', 'skipped'], ['pp16', 'ok'], ['pp16@d500', 'skipped'], ['tg4', 'ok'], ['tg4@d500', 'ok'],
  ]);
  assert.equal(rows[0].message, "does not fit: needs 600 positions, the model's context is 512");
  assert.equal(rows[3].message, "does not fit: needs 516 positions, the model's context is 512");

  const capped = runCli(['bench', '-m', FP16, '--backend', 'cpu', '-p', '16,32', '-n', 'none', '-r', '1', '--max-seq-len', '24', '-o', 'jsonl']);
  assert.equal(capped.status, 0, capped.stderr);
  const [ok, skipped] = capped.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual([ok.test, ok.status, ok.maxSeqLen], ['pp16', 'ok', 24]);
  assert.deepEqual([skipped.test, skipped.status, skipped.message], ['pp32', 'skipped', 'does not fit: needs 32 positions, --max-seq-len is 24']);
});

test('bench flag errors are one line with exit code 2, before anything runs', () => {
  const m = ['-m', FP16];
  assertOneLineError(runCli(['bench', ...m, '-p', '0']), /^xllama: -p\/--prompt: must be >= 1, got 0$/m);
  assertOneLineError(runCli(['bench', ...m, '-p', '-5']), /-p\/--prompt: must be >= 1, got -5/);
  assertOneLineError(runCli(['bench', ...m, '-p', '12,x']), /-p\/--prompt: expected an integer, got 'x'/);
  assertOneLineError(runCli(['bench', ...m, '-n', '0']), /-n\/--gen: must be >= 1, got 0/);
  assertOneLineError(runCli(['bench', ...m, '-d', '-1']), /-d\/--depth: must be >= 0, got -1/);
  assertOneLineError(runCli(['bench', ...m, '-r', '0']), /-r\/--repeats: must be >= 1, got 0/);
  assertOneLineError(runCli(['bench', ...m, '-p', 'none', '-n', 'none']), /nothing to run/);
  assertOneLineError(runCli(['bench', '--dummy', 'llama-8b']), /--dummy: unknown model 'llama-8b' \(use one of llama-7b, llama-13b, llama3-8b, llama-70b, tiny\)/);
  assertOneLineError(runCli(['bench', ...m, '--gpus', '0', '--gpu-split', '20,24']), /--gpu-split 20,24: 2 entries, but --gpus 0 names 1 GPU$/m);
  assertOneLineError(runCli(['bench', ...m, '--gpus', '0,1', '--gpus', '0', '--gpu-split', '1,1', '--gpu-split', 'auto', '--gpu-split', 'none']),
    /--gpus is given 2 times and --gpu-split 3 times/);
  assertOneLineError(runCli(['bench', ...m, '--gpus', '0,x']), /--gpus: expected an integer, got 'x'/);
  assertOneLineError(runCli(['bench', ...m, '--backend', 'cpu,tpu']), /--backend: unknown backend 'tpu'/);
  assertOneLineError(runCli(['bench', ...m, '-o', 'xml']), /-o\/--output: unknown format 'xml' \(use table, md, json, jsonl, csv\)/);
  assertOneLineError(runCli(['bench', ...m, '--timeout', '0']), /--timeout: must be >= 1/);
  assertOneLineError(runCli(['bench', '-m', join(fixtures, 'no-such-model')]), /no-such-model/);
});

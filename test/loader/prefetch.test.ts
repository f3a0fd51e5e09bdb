// The loader reads the checkpoint's small tensors (norms, GPTQ scales, zeros, g_idx) into the page cache up
// front, in merged byte ranges, before anything reads them one at a time (addon/loader/prefetch.cc); `xllama
// bench --verbose` reports what it read. A fixture rewritten with its small tensors in three groups, two of
// them a few KiB apart and one far from the rest, must report exactly those tensors in two ranges, and
// still generate what the original fixture generates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli } from '../helpers/run-cli.js';
import { readSafetensors, writeSafetensors, type StTensor } from '../helpers/safetensors-writer.js';
import { G32, copyFixture, fixtureModel } from './model-dir.js';

/** What the load reads on one thread: everything but 4-bit weights and matrices. */
function isSmall(t: StTensor): boolean {
  return !t.name.endsWith('.qweight') && !(t.name.endsWith('.weight') && t.shape.length >= 2);
}

/** An unused U8 tensor of `bytes` bytes (the loader passes only F16/BF16/F32/I32 tensors on). */
function pad(name: string, bytes: number): StTensor {
  return { name, dtype: 'U8', shape: [bytes], data: Buffer.alloc(bytes, 0x5a) };
}

/** "32.1 kB" / "1.3 MB" / "812 B" from the verbose line, in bytes, with the rounding it was printed with. */
function parseDecimalBytes(text: string): { bytes: number; tolerance: number } {
  const m = /^([\d.]+) (B|kB|MB|GB)$/.exec(text);
  assert.ok(m, `not a byte count: ${text}`);
  const scale = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as 'B' | 'kB' | 'MB' | 'GB'];
  return { bytes: Number(m[1]) * scale, tolerance: m[2] === 'B' ? 0 : 0.05 * scale };
}

const LINE = /^xllama: load: checkpoint: (\d+) small tensors \(norms, GPTQ scales, zeros, g_idx: ([^)]+)\) read ahead in (\d+) ranges? \(([^)]+)\) on (\d+) threads? in \d+\.\d\d s; tensor views and checks \d+\.\d\d s$/m;

const BENCH = ['--backend', 'cpu', '-p', '8', '-n', '2', '-r', '1', '-o', 'json'];
const GENERATE = ['--backend', 'cpu', '-p', 'Once upon a time', '-n', '12', '--temp', '0'];

test('bench --verbose: the small tensors read ahead in merged ranges, the load total; the model loads as before', () => {
  const dir = copyFixture(G32);
  const file = join(dir, 'model.safetensors');
  const { tensors, metadata } = readSafetensors(file);
  const small = tensors.filter(isSmall);
  const big = tensors.filter((t) => !isSmall(t));
  assert.ok(small.length >= 30 && big.length >= 10, 'the fixture has both kinds');
  // Big tensors first, then the small ones in three groups: A, 256 KiB apart from B, B 8 KiB from C.
  const third = Math.ceil(small.length / 3);
  writeSafetensors(file, [
    ...big,
    ...small.slice(0, third), pad('xllama_test.far', 256 << 10),
    ...small.slice(third, 2 * third), pad('xllama_test.near', 8 << 10),
    ...small.slice(2 * third),
  ], metadata);

  const r = runCli(['bench', '-m', dir, ...BENCH, '--verbose']);
  assert.equal(r.status, 0, r.stderr);
  const m = LINE.exec(r.stderr);
  assert.ok(m, `no read-ahead line in:\n${r.stderr}`);
  const [count, asked, ranges, read, threads] = [Number(m[1]), parseDecimalBytes(m[2]), Number(m[3]), parseDecimalBytes(m[4]), Number(m[5])];
  const smallBytes = small.reduce((a, t) => a + t.data.length, 0);
  assert.equal(count, small.length);
  assert.ok(Math.abs(asked.bytes - smallBytes) <= asked.tolerance, `${m[2]} for ${smallBytes} bytes`);
  assert.equal(ranges, 2, 'A alone; B and C merged across the 8 KiB gap');
  // Whole pages (at most 64 KiB each side of a range) and the 8 KiB gap, nothing of the 256 KiB one.
  assert.ok(read.bytes + read.tolerance >= smallBytes + (8 << 10), m[4]);
  assert.ok(read.bytes - read.tolerance <= smallBytes + (8 << 10) + 4 * (64 << 10), m[4]);
  assert.ok(threads >= 1 && threads <= 8);
  // The child's lines reach bench's stderr: the read-ahead first, then the load's total.
  const total = /^xllama: load: stories260K-gptq-4bit-g32 in \d+\.\d\d s: [\d.]+ KiB of safetensors at [\d.]+ GB\/s$/m.exec(r.stderr);
  assert.ok(total, r.stderr);
  assert.ok(total.index > m.index, 'the total comes after the breakdown');
  JSON.parse(r.stdout);  // the report alone on stdout

  // The same tokens as the original layout.
  const relaid = runCli(['generate', '-m', dir, ...GENERATE]);
  const original = runCli(['generate', '-m', fixtureModel(G32), ...GENERATE]);
  assert.equal(relaid.status, 0, relaid.stderr);
  assert.equal(original.status, 0, original.stderr);
  assert.ok(original.stdout.trim().length > 0);
  assert.equal(relaid.stdout, original.stdout);
});

test('bench without --verbose prints no load lines', () => {
  const r = runCli(['bench', '-m', fixtureModel(G32), ...BENCH]);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /xllama: load/);
});

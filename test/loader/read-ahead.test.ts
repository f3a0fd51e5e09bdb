// The checkpoint read-ahead (addon/loader/checkpoint_read_ahead.cc) starts with the load, before the GPU
// query and the placement: the small tensors first, then the big ones in the order the load reads them, at
// most a window (XLLAMA_READ_AHEAD_MIB) ahead of the part the backend reports reading. The CPU backend reports
// none, so there the window from the start bounds what it asks for. `bench --verbose` prints what it asked
// for, and where the rest of the open went (NativeModel.open's steps, which add up to the load's total).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/run-cli.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { NativeModel } from '../../cli/engine/native-model.js';
import { UserError } from '../../cli/errors.js';
import { readSafetensors, writeSafetensors, type StTensor } from '../helpers/safetensors-writer.js';
import { G32, copyFixture, fixtureModel } from './model-dir.js';

const BENCH = ['--backend', 'cpu', '-p', '8', '-n', '2', '-r', '1', '-o', 'json', '--verbose'];
const GENERATE = ['--backend', 'cpu', '-p', 'Once upon a time', '-n', '12', '--temp', '0'];

/** What the load reads on one thread (loader/prefetch.h): everything but 4-bit weights and matrices. */
function isSmall(t: StTensor): boolean {
  return !t.name.endsWith('.qweight') && !(t.name.endsWith('.weight') && t.shape.length >= 2);
}

/** "32.1 kB" / "1.3 MB" / "812 B", in bytes, with the rounding it was printed with. */
function decimalBytes(text: string): { bytes: number; tolerance: number } {
  const m = /^([\d.]+) (B|kB|MB|GB)$/.exec(text);
  assert.ok(m, `not a byte count: ${text}`);
  const scale = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as 'B' | 'kB' | 'MB' | 'GB'];
  return { bytes: Number(m[1]) * scale, tolerance: m[2] === 'B' ? 0 : 0.05 * scale };
}

const BYTES = '([\\d.]+ (?:B|kB|MB|GB))';
const READ_AHEAD = new RegExp(`^xllama: load: read-ahead from the load's start \\(window ${BYTES}\\): small tensors ${BYTES} of ` +
  `${BYTES}, then weights in load order ${BYTES} of ${BYTES}, the backend reported no progress; ` +
  `(all asked for|stopped) \\d+\\.\\d\\d s after the load's start$`, 'm');
const OPEN = /^xllama: load: open: addon (\d+\.\d\d) s, checkpoint read-ahead started in (\d+\.\d\d) s, GPU query \(CUDA driver, a context per GPU\) (\d+\.\d\d) s, options and GPU placement (\d+\.\d\d) s, native load (\d+\.\d\d) s \(the lines above\); before it, the folder's configs, tokenizer and safetensors headers read in \d+\.\d\d s$/m;

function bytesOf(tensors: StTensor[]): number {
  return tensors.reduce((a, t) => a + t.data.length, 0);
}

test('bench --verbose: the read-ahead covers every tensor the load reads; the open\'s steps add up to the total', () => {
  const dir = copyFixture(G32);
  const file = join(dir, 'model.safetensors');
  const { tensors } = readSafetensors(file);
  const r = runCli(['bench', '-m', dir, ...BENCH], { env: { XLLAMA_READ_AHEAD_MIB: '4096' } });
  assert.equal(r.status, 0, r.stderr);
  const m = READ_AHEAD.exec(r.stderr);
  assert.ok(m, `no read-ahead line in:\n${r.stderr}`);
  const [smallAsked, smallTotal, asked, total] = [m[2], m[3], m[4], m[5]].map(decimalBytes);
  // Whole pages and small gaps merged in: at least the tensors, at most the file.
  const fileSize = statSync(file).size;
  assert.ok(smallTotal.bytes + smallTotal.tolerance >= bytesOf(tensors.filter(isSmall)), m[3]);
  assert.ok(total.bytes + total.tolerance >= bytesOf(tensors.filter((t) => !isSmall(t))), m[5]);
  assert.ok(total.bytes - total.tolerance <= fileSize && smallTotal.bytes - smallTotal.tolerance <= fileSize);
  assert.ok(smallAsked.bytes <= smallTotal.bytes && asked.bytes <= total.bytes);

  // NativeModel.open's steps, printed after the native lines, add up to the load's total.
  const open = OPEN.exec(r.stderr);
  assert.ok(open, r.stderr);
  const totalLine = /^xllama: load: stories260K-gptq-4bit-g32 in (\d+\.\d\d) s: /m.exec(r.stderr);
  assert.ok(totalLine, r.stderr);
  const steps = open.slice(1, 6).map(Number);
  assert.ok(Math.abs(steps.reduce((a, b) => a + b, 0) - Number(totalLine[1])) <= 0.05, `${open[0]}\n${totalLine[0]}`);
  assert.equal(steps[2], 0, 'no GPU query for the cpu backend');
  const checkpoint = r.stderr.indexOf('xllama: load: checkpoint:');
  assert.ok(checkpoint >= 0 && checkpoint < m.index && m.index < open.index && open.index < totalLine.index, r.stderr);
});

/** A copy of the g32 fixture with 3 MiB more in the last part (next to lm_head), unused by the model. */
function paddedCopy(): { dir: string; tensors: StTensor[] } {
  const dir = copyFixture(G32);
  const file = join(dir, 'model.safetensors');
  const { tensors, metadata } = readSafetensors(file);
  const pad: StTensor = { name: 'lm_head.xllama_test_pad.weight', dtype: 'F16', shape: [1536, 1024], data: Buffer.alloc(3 << 20, 0x11) };
  writeSafetensors(file, [...tensors, pad], metadata);
  return { dir, tensors };
}

test('XLLAMA_READ_AHEAD_MIB bounds what is read ahead of the backend; 0 turns it off; the tokens stay the same', () => {
  const { dir, tensors } = paddedCopy();  // the pad: three 1 MiB windows' worth

  const r = runCli(['bench', '-m', dir, ...BENCH], { env: { XLLAMA_READ_AHEAD_MIB: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const m = READ_AHEAD.exec(r.stderr);
  assert.ok(m, `no read-ahead line in:\n${r.stderr}`);
  const [window, asked, total] = [m[1], m[4], m[5]].map(decimalBytes);
  assert.ok(Math.abs(window.bytes - (1 << 20)) <= window.tolerance, m[1]);
  assert.ok(total.bytes + total.tolerance >= (3 << 20) + bytesOf(tensors.filter((t) => !isSmall(t))), m[5]);
  // The window, plus the one 128 KiB piece that started inside it.
  assert.ok(asked.bytes - asked.tolerance <= (1 << 20) + (128 << 10), m[4]);
  assert.equal(m[6], 'stopped', 'never all of it');

  const off = runCli(['bench', '-m', dir, ...BENCH], { env: { XLLAMA_READ_AHEAD_MIB: '0' } });
  assert.equal(off.status, 0, off.stderr);
  assert.doesNotMatch(off.stderr, /read-ahead from the load's start/);
  assert.match(off.stderr, OPEN);
  // Unset, a CPU load reads nothing ahead (only a load that starts the CUDA driver has a default window).
  const unset = runCli(['bench', '-m', dir, ...BENCH], { env: { XLLAMA_READ_AHEAD_MIB: '' } });
  assert.equal(unset.status, 0, unset.stderr);
  assert.doesNotMatch(unset.stderr, /read-ahead from the load's start/);

  const bounded = runCli(['generate', '-m', dir, ...GENERATE], { env: { XLLAMA_READ_AHEAD_MIB: '1' } });
  const original = runCli(['generate', '-m', fixtureModel(G32), ...GENERATE], { env: { XLLAMA_READ_AHEAD_MIB: '0' } });
  assert.equal(bounded.status, 0, bounded.stderr);
  assert.equal(original.status, 0, original.stderr);
  assert.ok(original.stdout.trim().length > 0);
  assert.equal(bounded.stdout, original.stdout);
});

test('XLLAMA_READ_AHEAD_IN_FLIGHT_MIB bounds what waits on the disk, not what is read: all of it, the same tokens', () => {
  const { dir } = paddedCopy();
  const env = { XLLAMA_READ_AHEAD_MIB: '4096', XLLAMA_READ_AHEAD_IN_FLIGHT_MIB: '1' };
  const r = runCli(['bench', '-m', dir, ...BENCH], { env });
  assert.equal(r.status, 0, r.stderr);
  const line = new RegExp(`${READ_AHEAD.source.slice(0, -1)}; at most ${BYTES} in flight, (\\d+\\.\\d\\d) s waiting for the disk$`, 'm').exec(r.stderr);
  assert.ok(line, `no bounded read-ahead line in:\n${r.stderr}`);
  const [smallAsked, smallTotal, asked, total, bound] = [line[2], line[3], line[4], line[5], line[7]].map(decimalBytes);
  // A CPU load reports no parts and may end (stopping the read-ahead) before the walk does, as in the first
  // test; the bench run ending at all shows a wait never outlives the load. Where the walk finished, it asked
  // for everything: the bound held it back, it did not stop it.
  assert.ok(asked.bytes <= total.bytes + total.tolerance && smallAsked.bytes <= smallTotal.bytes + smallTotal.tolerance);
  if (line[6] === 'all asked for') {
    assert.ok(asked.bytes >= total.bytes - total.tolerance && smallAsked.bytes >= smallTotal.bytes - smallTotal.tolerance);
  }
  assert.ok(total.bytes > 3 * bound.bytes, 'more asked for than the bound, so it waited for pieces');
  assert.ok(Math.abs(bound.bytes - (1 << 20)) <= bound.tolerance, line[7]);

  // Not a whole number of MiB: no bound (the plain line).
  const plain = runCli(['bench', '-m', dir, ...BENCH], { env: { ...env, XLLAMA_READ_AHEAD_IN_FLIGHT_MIB: '1.5' } });
  assert.equal(plain.status, 0, plain.stderr);
  assert.match(plain.stderr, READ_AHEAD);

  const bounded = runCli(['generate', '-m', dir, ...GENERATE], { env });
  const original = runCli(['generate', '-m', fixtureModel(G32), ...GENERATE], { env: { XLLAMA_READ_AHEAD_MIB: '0' } });
  assert.equal(bounded.status, 0, bounded.stderr);
  assert.ok(original.stdout.trim().length > 0);
  assert.equal(bounded.stdout, original.stdout);
});

test('a native load that fails with the read-ahead running is the same one-line error; the next open works', async () => {
  const spec = loadModelSpec(fixtureModel(G32));
  const size = statSync(join(spec.dir, 'model.safetensors')).size;
  const name = 'model.layers.3.mlp.down_proj.qweight';
  const bad = { ...spec, tensors: { ...spec.tensors, [name]: { ...spec.tensors[name], offset: size + (64 << 20) } } };
  await assert.rejects(NativeModel.open(bad, { backend: 'cpu' }),
    (e) => e instanceof UserError && e.message.includes(`tensor ${name} (bytes ${size + (64 << 20)}..`) && /lies outside/.test(e.message));
  const model = await NativeModel.open(spec, { backend: 'cpu', maxSeqLen: 16 });
  try {
    assert.equal((await model.forward([1, 2], 0)).length, model.vocabSize);
  } finally {
    model.close();
  }
});

// gpu-monitor through the real CLI: --once and --json from a replayed fixture trace, flag errors, and
// the no-driver path (XLLAMA_NVML_LIBRARY pointing at nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';

const trace = join(fixtures, 'monitor', 'synthetic-trace.jsonl');

test('--once --replay prints the final state of the trace as plain text', () => {
  const r = runCli(['gpu-monitor', '--once', '--replay', trace]);
  assert.equal(r.status, 0, r.stderr);
  // Last snapshot: GPU 0 uploads over PCIe (52000 MiB/s of a gen5 x16 link), GPU 1 decodes video.
  assert.match(r.stdout, /^GPU 0: NVIDIA H100 80GB HBM3 \(synthetic\)$/m);
  assert.match(r.stdout, /Total 87% · Copy {4}GPU-Util \(NVML\) 3% \(!\) disagrees with Total/);
  assert.match(r.stdout, /^ {2}Copy {14}\[#{17}-{3}\] {2}87%$/m);
  assert.match(r.stdout, /^ {2}SMs active 0% · occupancy 0%$/m);
  assert.equal(r.stdout.match(/SMs active/g)?.length, 1, 'no SM line for the GPU without GPM');
  assert.match(r.stdout, /^GPU 1: NVIDIA A10G \(synthetic\)$/m);
  assert.match(r.stdout, /Total 62% · Video decode {4}GPU-Util \(NVML\) 45%$/m);
  assert.match(r.stdout, /^ {2}Tensor {12}\[ {20}\] {2}n\/a$/m);
  assert.match(r.stdout, /no GPM: GPM metrics need a Hopper or newer data-center GPU/);
  assert.match(r.stdout, /Processes: n\/a \(Insufficient Permissions\)/);
  assert.equal(r.stderr, '');
});

test('--json --replay prints one JSON line per recorded sample', () => {
  const r = runCli(['gpu-monitor', '--json', '--replay', trace, '--speed', 'max']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 16);
  const totals = lines.map((l) => l.gpus[0].total?.engine ?? null);
  // warm-up (GPM not ready: compute falls back to GPU-Util 0), idle x2, tensor x4, memory x4, trickle x3, upload x2
  assert.deepEqual(totals.slice(0, 3), [null, null, null]);
  assert.deepEqual(lines[1].gpus[0].total, { percent: 0.2, engine: null, label: null, pipe: null, idle: true });
  assert.deepEqual(totals.slice(3, 7), ['tensor', 'tensor', 'tensor', 'tensor']);
  assert.deepEqual(totals.slice(7, 11), ['memory', 'memory', 'memory', 'memory']);
  assert.deepEqual(totals.slice(14), ['copy', 'copy']);
  const trickle = lines[11].gpus[0];
  assert.equal(trickle.legacyGpuUtil, 100);
  assert.ok(trickle.total.percent < 10);
  assert.equal(trickle.disagreement, true);
  assert.equal(lines[4].gpus[0].disagreement, false);
  assert.equal(lines[4].gpus[0].engines.tensor.source, 'gpm');
  // Compute is the busiest SM pipe; SM activity (97.5%) is reported beside it, not used for it.
  assert.deepEqual(lines[4].gpus[0].engines.compute, { percent: 9.4, source: 'gpm', pipe: 'INT' });
  assert.deepEqual([lines[4].gpus[0].smActivity, lines[4].gpus[0].smOccupancy], [97.5, 31.2]);
  assert.deepEqual([lines[4].gpus[1].smActivity, lines[4].gpus[1].smOccupancy], [null, null]);
  assert.equal(lines[4].gpus[1].engines.compute.source, 'nvml');
  assert.equal(lines[0].gpus[0].gpmReady, false);
});

test('bad flags are one-line errors with exit code 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xllama-mon-'));
  const corrupt = join(dir, 'bad.jsonl');
  writeFileSync(corrupt, '{"format":"xllama-gpu-trace","version":1,"intervalMs":250}\nnot json\n');
  const cases: [string[], RegExp][] = [
    [['--interval', '50'], /--interval must be a whole number of milliseconds from 100 to 60000 \(got "50"\)/],
    [['--interval', 'fast'], /--interval .* \(got "fast"\)/],
    [['--replay', trace, '--record', join(dir, 'x.jsonl')], /--record and --replay cannot be used together/],
    [['--speed', '2'], /--speed applies only to --replay/],
    [['--replay', trace, '--speed', '-1'], /--speed must be a positive number or "max"/],
    [['--replay', trace, '--duration', '0'], /--duration must be a positive number of seconds/],
    [['--replay', join(dir, 'missing.jsonl'), '--once'], /--replay .*missing\.jsonl: no such file/],
    [['--replay', corrupt, '--once'], /bad\.jsonl:2: not valid JSON/],
    [['--no-such-flag'], /unknown option '--no-such-flag'/],
  ];
  for (const [args, message] of cases) {
    const r = runCli(['gpu-monitor', ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(existsSync(join(dir, 'x.jsonl')), false);
  }
});

test('without a terminal and without --once/--json/--record the panel refuses with exit code 2', () => {
  const r = runCli(['gpu-monitor', '--replay', trace]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^xllama: gpu-monitor: the interactive panel needs a terminal; use --once or --json/);
});

test('no NVML library: a clear message, exit code 1, no stack, no trace file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xllama-mon-'));
  const env = { XLLAMA_NVML_LIBRARY: '/nonexistent/libnvidia-ml.so.1' };
  for (const args of [['--once'], ['--json', '--duration', '1'], ['--record', join(dir, 't.jsonl'), '--duration', '1']]) {
    const r = runCli(['gpu-monitor', ...args], { env });
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^xllama: gpu-monitor: no GPU to monitor: NVIDIA driver library \/nonexistent\/libnvidia-ml\.so\.1 could not be loaded \(.*\); is the NVIDIA driver installed\?\n$/);
    assert.equal(r.stdout, '');
  }
  assert.equal(existsSync(join(dir, 't.jsonl')), false);
  // `info --gpus` on the same machine still succeeds.
  assert.equal(runCli(['info', '--gpus', '--json'], { env }).status, 0);
});

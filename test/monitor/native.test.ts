// The real collector (dlopen, symbol checks, GPM pairs, sampling thread) against a fake libnvidia-ml
// built from fake-nvml.c, plus the missing-library path. Skipped where no C compiler exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot, runCli } from '../helpers/run-cli.js';
import { parseTrace } from '../../cli/monitor/trace.js';

const source = join(repoRoot, 'test', 'monitor', 'fake-nvml.c');
const dir = mkdtempSync(join(tmpdir(), 'xllama-fake-nvml-'));

function buildFake(name: string, defines: string[] = []): string | null {
  const out = join(dir, name);
  const r = spawnSync('cc', ['-shared', '-fPIC', ...defines, '-o', out, source], { encoding: 'utf8' });
  return r.status === 0 ? out : null;
}

const fake = buildFake('fake-nvml.so');
const fakeOld = buildFake('fake-nvml-old.so', ['-DFAKE_OLD_DRIVER']);
const skip = fake === null || fakeOld === null ? 'no C compiler to build the fake NVML library' : false;

/** Runs a snippet against the addon in a child process with XLLAMA_NVML_LIBRARY set. */
function withAddon(library: string, body: string): unknown {
  const script = `const a = require(${JSON.stringify(join(repoRoot, 'build', 'Release', 'xllama.node'))});\n${body}`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, XLLAMA_NVML_LIBRARY: library } });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('monitorProbe explains a missing library and never throws', () => {
  const probe = withAddon('/nonexistent/libnvidia-ml.so.1', 'console.log(JSON.stringify([a.monitorProbe(), a.monitorStart(200), a.monitorSnapshot()]))') as any[];
  assert.equal(probe[0].available, false);
  assert.match(probe[0].reason, /\/nonexistent\/libnvidia-ml\.so\.1 could not be loaded/);
  assert.deepEqual(probe[1].ok, false);
  assert.equal(probe[2], null);
});

test('collector on a fake driver: GPM metrics, legacy fallbacks, processes', { skip }, () => {
  const r = runCli(['gpu-monitor', '--once', '--json', '--interval', '100'], { env: { XLLAMA_NVML_LIBRARY: fake! } });
  assert.equal(r.status, 0, r.stderr);
  const view = JSON.parse(r.stdout);
  const [hopper, ampere] = view.gpus;
  assert.equal(hopper.name, 'Fake Hopper');
  assert.equal(hopper.gpmReady, true);
  assert.deepEqual(hopper.total, { percent: 77, engine: 'memory', label: 'Memory bandwidth', pipe: null, idle: false });
  // Compute = the busiest pipe (integer 30% over FP32 18%), read through NVML_GPM_METRIC_INTEGER_UTIL (id 4).
  assert.deepEqual(hopper.engines.compute, { percent: 30, source: 'gpm', pipe: 'INT' });
  assert.deepEqual([hopper.smActivity, hopper.smOccupancy], [42.5, 20]);
  assert.deepEqual(hopper.engines.tensor, { percent: 12, source: 'gpm' });
  assert.equal(Math.round(hopper.engines.decode.percent), 10); // 70% on one of 7 NVDECs
  assert.equal(hopper.engines.copy.percent.toFixed(2), ((100 * 3000 * 2 ** 20) / (16 * 3938.5e6)).toFixed(2));
  assert.equal(hopper.legacyGpuUtil, 100);
  assert.equal(hopper.disagreement, false); // 23 points apart
  assert.equal(hopper.powerW, 350.5);
  assert.equal(hopper.memoryTotal, 80 * 2 ** 30);
  assert.deepEqual(hopper.processes, [{ pid: 4242, name: 'fake-trainer', usedMemory: 3 * 2 ** 30, smUtil: 40, memUtil: 70, encUtil: 0, decUtil: 0 }]);
  assert.equal(hopper.unavailable.encoder, 'Not Supported');
  assert.equal(ampere.gpmReady, false);
  assert.match(ampere.unavailable.gpm, /Hopper or newer/);
  assert.deepEqual(ampere.engines.compute, { percent: 35, source: 'nvml', pipe: null });
  assert.deepEqual(ampere.total, { percent: 35, engine: 'compute', label: 'Compute', pipe: null, idle: false });
});

test('an older driver without GPM/JPEG/OFA symbols disables only those fields', { skip }, () => {
  const probe = withAddon(fakeOld!, 'console.log(JSON.stringify(a.monitorProbe()))') as any;
  assert.equal(probe.available, true);
  assert.equal(probe.gpuCount, 2);
  assert.equal(probe.driverVersion, '999.fake');
  for (const fn of ['nvmlGpmSampleGet', 'nvmlGpmMetricsGet', 'nvmlDeviceGetJpgUtilization', 'nvmlDeviceGetOfaUtilization']) {
    assert.ok(probe.missingFunctions.includes(fn), fn);
  }
  const r = runCli(['gpu-monitor', '--once', '--json', '--interval', '100'], { env: { XLLAMA_NVML_LIBRARY: fakeOld! } });
  assert.equal(r.status, 0, r.stderr);
  const gpu = JSON.parse(r.stdout).gpus[0];
  assert.match(gpu.unavailable.gpm, /no GPM interface/);
  assert.equal(gpu.unavailable.jpeg, 'not in this NVIDIA driver');
  assert.deepEqual(gpu.engines.jpeg, { percent: null, source: 'none' });
  assert.deepEqual(gpu.engines.compute, { percent: 100, source: 'nvml', pipe: null });
  assert.equal(gpu.smActivity, null);
  assert.equal(gpu.powerW, 350.5);
});

test('--record writes a trace that --replay plays back identically; start/stop/restart is safe', { skip }, () => {
  const path = join(dir, 'rec.jsonl');
  const r = runCli(['gpu-monitor', '--json', '--record', path, '--interval', '100', '--duration', '0.75'],
    { env: { XLLAMA_NVML_LIBRARY: fake! } });
  assert.equal(r.status, 0, r.stderr);
  const live = r.stdout.trim().split('\n');
  const trace = parseTrace(readFileSync(path, 'utf8'), path);
  assert.ok(trace.snapshots.length >= 4, `${trace.snapshots.length} snapshots`);
  assert.equal(trace.snapshots.length, live.length);
  assert.ok(trace.snapshots.every((s, i) => i === 0 || s.time > trace.snapshots[i - 1].time));
  const replay = runCli(['gpu-monitor', '--json', '--replay', path, '--speed', 'max']);
  assert.equal(replay.status, 0, replay.stderr);
  assert.deepEqual(replay.stdout.trim().split('\n'), live);

  const cycles = withAddon(fake!, `
    const out = [];
    for (const ms of [100, 150, 100]) { out.push(a.monitorStart(ms).ok); }
    const t = Date.now(); while (Date.now() - t < 250) {}
    const s = a.monitorSnapshot();
    a.monitorStop(); a.monitorStop();
    out.push(s.gpus.length, s.intervalMs);
    console.log(JSON.stringify(out));`);
  assert.deepEqual(cycles, [true, true, true, 2, 100]);
});

test('the instantaneous power field where the driver has it, with its reason where it does not', { skip }, () => {
  const read = (library: string) => withAddon(library, `
    a.monitorStart(100);
    const t = Date.now(); while (Date.now() - t < 250) {}
    const s = a.monitorSnapshot();
    a.monitorStop();
    console.log(JSON.stringify(s.gpus.map((g) => [g.powerW, g.powerInstantW, g.unavailable.powerInstant ?? null])));`);
  assert.deepEqual(read(fake!), [[350.5, 412.25, null], [350.5, null, 'Not Supported']]);
  assert.deepEqual(read(fakeOld!), [[350.5, null, 'not in this NVIDIA driver'], [350.5, null, 'not in this NVIDIA driver']]);
});

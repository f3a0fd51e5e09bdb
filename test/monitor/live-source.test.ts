// LiveSource against a stand-in addon: polling hands over each new snapshot once, +/- change the
// interval within bounds (restarting the collector), and a failed start is a clear error (exit code 1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MonitorAddon, MonitorSnapshot } from '../../cli/native/types.js';
import { LiveSource, MAX_INTERVAL_MS, MIN_INTERVAL_MS, MonitorUnavailableError } from '../../cli/monitor/sources.js';
import { makeGpu, makeSnapshot } from './synthetic.js';

class StandInAddon implements MonitorAddon {
  starts: number[] = [];
  stops = 0;
  latest: MonitorSnapshot | null = null;
  failWith: string | null = null;
  monitorProbe() {
    return { available: true, reason: null, library: 'x', driverVersion: '1', gpuCount: 1, missingFunctions: [] };
  }
  monitorStart(intervalMs: number) {
    this.starts.push(intervalMs);
    return this.failWith ? { ok: false as const, reason: this.failWith } : { ok: true as const };
  }
  monitorSnapshot(afterSeq?: number) {
    return this.latest && (afterSeq === undefined || this.latest.seq > afterSeq) ? this.latest : null;
  }
  monitorStop() {
    this.stops++;
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('each new snapshot is delivered once', async () => {
  const addon = new StandInAddon();
  const source = new LiveSource(addon, 100);
  const seen: number[] = [];
  source.start((s) => seen.push(s.seq));
  addon.latest = makeSnapshot([makeGpu()], 1);
  await delay(70);
  addon.latest = makeSnapshot([makeGpu()], 2);
  await delay(70);
  source.stop();
  assert.deepEqual(seen, [1, 2]);
  assert.equal(addon.stops, 1);
});

test('+/- halve and double the interval within bounds, restarting the collector', () => {
  const addon = new StandInAddon();
  const source = new LiveSource(addon, 400);
  source.start(() => {});
  source.faster();
  source.faster();
  source.faster();
  assert.equal(source.rateLabel(), `every ${MIN_INTERVAL_MS} ms`);
  for (let i = 0; i < 12; i++) source.slower();
  assert.equal(source.rateLabel(), `every ${MAX_INTERVAL_MS} ms`);
  source.stop();
  assert.deepEqual(addon.starts.slice(0, 3), [400, 200, 100]);
  assert.equal(addon.starts.at(-1), MAX_INTERVAL_MS);
});

test('a collector that cannot start is a MonitorUnavailableError with exit code 1', () => {
  const addon = new StandInAddon();
  addon.failWith = 'the NVIDIA driver reports no GPUs';
  const source = new LiveSource(addon, 500);
  assert.throws(() => source.start(() => {}), (err: unknown) =>
    err instanceof MonitorUnavailableError && err.exitCode === 1 &&
    err.message === 'gpu-monitor: no GPU to monitor: the NVIDIA driver reports no GPUs');
});

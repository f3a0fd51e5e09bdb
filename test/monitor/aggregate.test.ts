import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DISAGREEMENT_POINTS, HISTORY_LENGTH, MonitorModel } from '../../cli/monitor/aggregate.js';
import { IDLE_BELOW_PERCENT, readEngines } from '../../cli/monitor/engines.js';
import { HistoryRing } from '../../cli/monitor/history-ring.js';
import { pcieLinkMaxBytesPerSec } from '../../cli/monitor/pcie.js';
import { formatGpuText, formatSmDetail, formatTotal, viewToJson } from '../../cli/monitor/format.js';
import { makeGpu, makeLegacyGpu, makeSnapshot } from './synthetic.js';

function engine(gpu: ReturnType<typeof makeGpu>, id: string) {
  return readEngines(gpu).find((e) => e.id === id)!;
}

test('Total is the busiest engine, named', () => {
  const view = new MonitorModel().update(makeSnapshot([makeGpu({ gpm: { smActivity: 55, tensorActivity: 92, dramBandwidth: 40 } })]));
  const gpu = view.gpus[0];
  assert.deepEqual(gpu.total, { percent: 92, engine: 'tensor', label: 'Tensor', pipe: null, idle: false });
  assert.equal(formatTotal(gpu), 'Total 92% · Tensor');
});

test('Compute is the busiest SM pipe, not SM activity; SM activity and occupancy stay visible', () => {
  // A streaming copy: warps resident on every SM (SM activity 99%) while they wait on DRAM.
  const copy = new MonitorModel().update(makeSnapshot([makeGpu({ utilGpu: 100,
    gpm: { smActivity: 99.1, smOccupancy: 45.2, dramBandwidth: 93, integer: 12.4, fp32: 0.5 } })])).gpus[0];
  assert.deepEqual(copy.engines.find((e) => e.id === 'compute')!.percent, 12.4);
  assert.equal(copy.engines.find((e) => e.id === 'compute')!.pipe, 'INT');
  assert.equal(formatTotal(copy), 'Total 93% · Memory bandwidth');
  assert.deepEqual([copy.smActivity, copy.smOccupancy], [99.1, 45.2]);
  assert.equal(formatSmDetail(copy), 'SMs active 99% · occupancy 45%');
  const text = formatGpuText(copy);
  assert.ok(text.includes('  Compute (INT)     [##------------------]  12%'), text.join('\n'));
  assert.ok(text.includes('  SMs active 99% · occupancy 45%'), text.join('\n'));
  const json = viewToJson({ time: 0, seq: 1, intervalMs: 500, driverVersion: 'x', error: null, gpus: [copy] }) as any;
  assert.deepEqual(json.gpus[0].engines.compute, { percent: 12.4, source: 'gpm', pipe: 'INT' });
  assert.deepEqual([json.gpus[0].smActivity, json.gpus[0].smOccupancy], [99.1, 45.2]);
  assert.deepEqual(json.gpus[0].engines.memory, { percent: 93, source: 'gpm' });

  for (const [pipes, name] of [[{ fp32: 62, integer: 20 }, 'FP32'], [{ fp16: 40, fp32: 10 }, 'FP16'],
    [{ fp64: 70, fp32: 5 }, 'FP64'], [{ integer: 55, fp32: 54 }, 'INT']] as const) {
    const gpu = new MonitorModel().update(makeSnapshot([makeGpu({ gpm: { smActivity: 100, ...pipes } })])).gpus[0];
    const top = Math.max(...Object.values(pipes));
    assert.equal(formatTotal(gpu), `Total ${top}% · Compute (${name})`);
    assert.equal(gpu.total?.pipe, name);
  }
  // Below 1% no pipe is named; a trace recorded before the integer pipe was sampled still reads.
  assert.equal(engine(makeGpu({ gpm: { fp32: 0.6 } }), 'compute').pipe, null);
  const old = makeGpu({ gpm: { fp32: 30 } });
  delete old.gpm.integer;
  assert.deepEqual([engine(old, 'compute').percent, engine(old, 'compute').pipe], [30, 'FP32']);
  // GPM without pipe metrics: the legacy counter, marked as such.
  const noPipes = makeGpu({ utilGpu: 88, gpm: { smActivity: 99, fp16: null, fp32: null, fp64: null, integer: null } });
  assert.deepEqual([engine(noPipes, 'compute').percent, engine(noPipes, 'compute').source], [88, 'nvml']);
});

test(`a GPU whose busiest engine reads below ${IDLE_BELOW_PERCENT}% is idle: Total names no engine`, () => {
  const at = (v: number) => new MonitorModel().update(makeSnapshot([makeGpu({
    gpm: { smActivity: 0, fp32: v / 2, dramBandwidth: v, pcieRxBytesPerSec: 0 } })])).gpus[0];
  const idle = at(0.3);
  assert.deepEqual(idle.total, { percent: 0.3, engine: null, label: null, pipe: null, idle: true });
  assert.equal(formatTotal(idle), 'Total 0% · idle');
  assert.equal(formatTotal(at(0)), 'Total 0% · idle');
  assert.equal(formatTotal(at(0.7)), 'Total <1% · idle');
  assert.equal(formatTotal(at(1)), 'Total 1% · Memory bandwidth');
  const json = viewToJson({ time: 0, seq: 1, intervalMs: 500, driverVersion: 'x', error: null, gpus: [idle] }) as any;
  assert.deepEqual(json.gpus[0].total, { percent: 0.3, engine: null, label: null, pipe: null, idle: true });
  assert.equal(formatGpuText(idle)[1], '  Total 0% · idle    GPU-Util (NVML) 0%');
  // An "idle" GPU that legacy GPU-Util calls 100% busy is exactly the disagreement to flag.
  const trickle = new MonitorModel().update(makeSnapshot([makeGpu({ utilGpu: 100, gpm: { smActivity: 3, integer: 0.4 } })])).gpus[0];
  assert.equal(trickle.total?.idle, true);
  assert.equal(trickle.disagreement, true);
});

test('memory-bound and copy-bound GPUs name Memory bandwidth and Copy', () => {
  const model = new MonitorModel();
  const mem = model.update(makeSnapshot([makeGpu({ gpm: { smActivity: 60, dramBandwidth: 91 } })])).gpus[0];
  assert.equal(mem.total?.label, 'Memory bandwidth');
  // 50 GB/s received on a gen5 x16 link (63.0 GB/s per direction) = 79%.
  const copy = model.update(makeSnapshot([makeGpu({ gpm: { pcieRxBytesPerSec: 50e9 } })], 2)).gpus[0];
  assert.equal(copy.total?.engine, 'copy');
  assert.equal(Math.round(copy.total!.percent), Math.round((100 * 50e9) / (16 * 3938.5e6)));
});

test('ties go to the earlier engine; an all-unmeasurable GPU has no Total', () => {
  const tie = new MonitorModel().update(makeSnapshot([makeGpu({ gpm: { fp32: 50, dramBandwidth: 50 } })])).gpus[0];
  assert.equal(tie.total?.engine, 'compute');
  const none = makeLegacyGpu({ utilGpu: null, utilMemory: null, encoder: null, decoder: null, jpeg: null, ofa: null,
    pcie: { maxGen: null, maxWidth: null } });
  const view = new MonitorModel().update(makeSnapshot([none])).gpus[0];
  assert.equal(view.total, null);
  assert.equal(formatTotal(view), 'Total n/a');
  assert.ok(view.engines.every((e) => e.percent === null && e.source === 'none'));
});

test('GPM is preferred; without it Compute and Memory fall back to the coarse NVML counters', () => {
  const hopper = makeGpu({ utilGpu: 100, utilMemory: 80, gpm: { smActivity: 90, fp32: 7, dramBandwidth: 3 } });
  assert.deepEqual([engine(hopper, 'compute').percent, engine(hopper, 'compute').source], [7, 'gpm']);
  assert.deepEqual([engine(hopper, 'memory').percent, engine(hopper, 'memory').source], [3, 'gpm']);
  const ampere = makeLegacyGpu({ utilGpu: 64, utilMemory: 30, decoder: 12 });
  assert.deepEqual([engine(ampere, 'compute').percent, engine(ampere, 'compute').source, engine(ampere, 'compute').pipe], [64, 'nvml', null]);
  const ampereView = new MonitorModel().update(makeSnapshot([ampere])).gpus[0];
  assert.equal(formatSmDetail(ampereView), null); // no GPM: no SM activity line
  assert.deepEqual([engine(ampere, 'memory').percent, engine(ampere, 'memory').source], [30, 'nvml']);
  assert.deepEqual([engine(ampere, 'tensor').percent, engine(ampere, 'tensor').source], [null, 'none']);
  assert.equal(engine(ampere, 'decode').percent, 12);
});

test('video decode/JPEG/OFA average their GPM instances (share of the whole capacity)', () => {
  const gpu = makeGpu({ decoder: 99, gpm: { nvdec: [70, 0, 0, 0, 0, 0, 0], nvjpg: [40, 20], nvofa: [null] } });
  assert.equal(engine(gpu, 'decode').percent, 10);
  assert.equal(engine(gpu, 'jpeg').percent, 30);
  assert.equal(engine(gpu, 'ofa').source, 'nvml'); // no instance answered: NVML's aggregate instead
});

test('Copy uses the busier PCIe direction against generation x width, and n/a without a known link', () => {
  assert.equal(pcieLinkMaxBytesPerSec(4, 16), 16 * 1969.2e6);
  assert.equal(pcieLinkMaxBytesPerSec(null, 16), null);
  assert.equal(pcieLinkMaxBytesPerSec(9, 16), null);
  const gpu = makeLegacyGpu({ pcie: { maxGen: 4, maxWidth: 16, txBytesPerSec: 1e9, rxBytesPerSec: 15.7536e9 } });
  assert.equal(Math.round(engine(gpu, 'copy').percent!), 50);
  assert.equal(engine(makeGpu({ pcie: { maxWidth: null } }), 'copy').percent, null);
});

test(`legacy GPU-Util is flagged when it differs from Total by ${DISAGREEMENT_POINTS} points or more`, () => {
  const flag = (legacy: number, sm: number) =>
    new MonitorModel().update(makeSnapshot([makeGpu({ utilGpu: legacy, gpm: { smActivity: 100, fp32: sm } })])).gpus[0].disagreement;
  assert.equal(flag(100, 4), true); // one tiny kernel always in flight: "100%" for an idle GPU
  assert.equal(flag(100, 100 - DISAGREEMENT_POINTS), true);
  assert.equal(flag(100, 100 - DISAGREEMENT_POINTS + 1), false);
  assert.equal(flag(0, 40), true); // legacy misses work too
  // Without GPM, Compute *is* the legacy counter: never flagged.
  const legacyOnly = new MonitorModel().update(makeSnapshot([makeLegacyGpu({ utilGpu: 100, decoder: 10 })])).gpus[0];
  assert.equal(legacyOnly.disagreement, false);
});

test('history keeps each engine and Total per GPU, oldest first, bounded', () => {
  const model = new MonitorModel();
  let view;
  for (let i = 1; i <= HISTORY_LENGTH + 5; i++) {
    view = model.update(makeSnapshot([makeGpu({ gpm: { fp32: i % 100 } }), makeGpu({ index: 1, uuid: 'GPU-test-1' })], i));
  }
  const compute = view!.gpus[0].engines.find((e) => e.id === 'compute')!;
  assert.equal(compute.history.length, HISTORY_LENGTH);
  assert.equal(compute.history.at(-1), (HISTORY_LENGTH + 5) % 100);
  assert.equal(compute.history[0], 6);
  assert.deepEqual(view!.gpus[0].totalHistory.slice(-2), [(HISTORY_LENGTH + 4) % 100, (HISTORY_LENGTH + 5) % 100]);
  assert.ok(view!.gpus[1].engines.find((e) => e.id === 'compute')!.history.every((v) => v === 0));
});

test('HistoryRing wraps around and rejects a bad capacity', () => {
  const ring = new HistoryRing(3);
  [1, 2, null, 4].forEach((v) => ring.push(v));
  assert.deepEqual(ring.values(), [2, null, 4]);
  assert.equal(ring.size, 3);
  assert.throws(() => new HistoryRing(0), RangeError);
});

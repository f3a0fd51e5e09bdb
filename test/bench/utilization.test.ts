// Engine averages beside the speed: gpu-monitor's engine model over the collector samples that lie inside a
// test's timed runs, on the GPUs of its configuration only (matched by PCI bus id, however it is written).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { averageWindow, normalizeBusId, toTimedSample } from '../../cli/bench/utilization.js';
import { makeGpu, makeSnapshot } from '../monitor/synthetic.js';

const T0 = 1_700_000_000_000;

function sample(time: number, memory: number, tensor: number, other = 0, powerW = 690, smClockMHz = 1700) {
  const gpus = [
    makeGpu({ index: 0, pciBusId: '00000000:3B:00.0', gpm: { dramBandwidth: memory, tensorActivity: tensor, smActivity: 90 },
      powerW, powerLimitW: 700, smClockMHz }),
    makeGpu({ index: 1, pciBusId: '00000000:5E:00.0', gpm: { dramBandwidth: other, tensorActivity: other, smActivity: other },
      powerW: 100, powerLimitW: 600, smClockMHz: 1980 }),
  ];
  return toTimedSample({ ...makeSnapshot(gpus), time, intervalMs: 100 });
}

test('bus ids from CUDA and NVML compare equal', () => {
  assert.equal(normalizeBusId('0000:3B:00.0'), normalizeBusId('00000000:3b:00.0'));
  assert.notEqual(normalizeBusId('0000:3B:00.0'), normalizeBusId('0000:5E:00.0'));
});

test('averages over the samples inside the window, on the configuration\'s GPU only; Total is named', () => {
  const samples = [
    sample(T0 + 100, 5, 5, 0, 80, 1980),    // before the window
    sample(T0 + 200, 80, 20, 99, 680, 1800),
    sample(T0 + 300, 90, 10, 99, 700, 1650),
    sample(T0 + 400, 70, 30, 99, 690, 1650),
    sample(T0 + 550, 0, 0, 0, 80, 1980),    // straddles the end
  ];
  const avg = averageWindow(samples, ['0000:3B:00.0'], T0 + 100, T0 + 450);
  assert.equal(avg.samples, 3);
  assert.equal(avg.memoryBandwidth, 80);
  assert.equal(avg.tensor, 20);
  assert.equal(avg.smActivity, 90);
  assert.deepEqual(avg.total, { percent: 80, engine: 'memory', label: 'Memory bandwidth', pipe: null, idle: false });
  assert.equal(avg.powerW, 690);
  assert.equal(avg.powerLimitW, 700);
  assert.equal(avg.smClockMHz, 1700);

  // Both GPUs of a split: their mean.
  const both = averageWindow(samples, ['0000:3B:00.0', '0000:5E:00.0'], T0 + 100, T0 + 450);
  assert.equal(both.samples, 6);
  assert.equal(both.memoryBandwidth, (80 + 99) / 2);
  assert.equal(both.powerW, (690 + 100) / 2);
  assert.equal(both.smClockMHz, (1700 + 1980) / 2);
});

test('a window shorter than a sampling interval has no samples and no readings', () => {
  const avg = averageWindow([sample(T0 + 100, 50, 50)], ['0000:3B:00.0'], T0 + 20, T0 + 60);
  assert.deepEqual(avg, { samples: 0, smActivity: null, memoryBandwidth: null, tensor: null, total: null, powerW: null,
    powerLimitW: null, smClockMHz: null });
});

test('power is the instantaneous reading where the driver gives one, else NVML\'s one-second average', () => {
  const gpu = (powerInstantW?: number | null) =>
    makeGpu({ index: 0, pciBusId: '00000000:3B:00.0', powerW: 120, powerLimitW: 700, smClockMHz: 1980, powerInstantW });
  const at = (time: number, g: ReturnType<typeof gpu>) => toTimedSample({ ...makeSnapshot([g]), time, intervalMs: 100 });
  // A short decode test after a prompt test: the average still holds the prompt's 120 W, the instants say 310-330 W.
  const instants = [at(T0 + 100, gpu(310)), at(T0 + 200, gpu(330))];
  assert.equal(averageWindow(instants, ['0000:3B:00.0'], T0, T0 + 200).powerW, 320);
  // A driver without the field (null), or a trace recorded before it existed (absent): the average.
  const older = [at(T0 + 100, gpu(null)), at(T0 + 200, gpu(undefined))];
  assert.equal(averageWindow(older, ['0000:3B:00.0'], T0, T0 + 200).powerW, 120);
});

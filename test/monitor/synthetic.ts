// Builders for synthetic GPU snapshots in tests: an all-idle Hopper-like GPU with GPM, overridable.
import type { GpuSnapshot, MonitorSnapshot } from '../../cli/native/types.js';

type GpuOverrides = Partial<Omit<GpuSnapshot, 'gpm' | 'pcie'>> & {
  gpm?: Partial<GpuSnapshot['gpm']>;
  pcie?: Partial<GpuSnapshot['pcie']>;
};

export function makeGpu(o: GpuOverrides = {}): GpuSnapshot {
  const { gpm, pcie, ...rest } = o;
  return {
    index: 0,
    name: 'Test GPU',
    uuid: 'GPU-test-0',
    pciBusId: '00000000:01:00.0',
    utilGpu: 0,
    utilMemory: 0,
    encoder: 0,
    decoder: 0,
    jpeg: 0,
    ofa: 0,
    memoryUsed: 1e9,
    memoryTotal: 8e10,
    powerW: 70,
    powerLimitW: 700,
    smClockMHz: 1980,
    memClockMHz: 2619,
    temperatureC: 40,
    processes: [],
    unavailable: {},
    ...rest,
    gpm: {
      supported: true,
      ready: true,
      smActivity: 0,
      smOccupancy: 0,
      tensorActivity: 0,
      dramBandwidth: 0,
      fp16: 0,
      fp32: 0,
      fp64: 0,
      integer: 0,
      pcieTxBytesPerSec: 0,
      pcieRxBytesPerSec: 0,
      nvdec: [0, 0],
      nvjpg: [0],
      nvofa: [0],
      ...gpm,
    },
    pcie: { txBytesPerSec: 0, rxBytesPerSec: 0, maxGen: 5, maxWidth: 16, gen: 5, width: 16, ...pcie },
  };
}

/** A GPU without GPM (pre-Hopper): every GPM field null. */
export function makeLegacyGpu(o: GpuOverrides = {}): GpuSnapshot {
  return makeGpu({
    ...o,
    gpm: {
      supported: false, ready: false, smActivity: null, smOccupancy: null, tensorActivity: null, dramBandwidth: null,
      fp16: null, fp32: null, fp64: null, integer: null, pcieTxBytesPerSec: null, pcieRxBytesPerSec: null, nvdec: [], nvjpg: [], nvofa: [],
      ...o.gpm,
    },
  });
}

export function makeSnapshot(gpus: GpuSnapshot[], seq = 1): MonitorSnapshot {
  return { seq, time: 1_700_000_000_000 + seq * 500, intervalMs: 500, sampleCostMs: 1, driverVersion: 'test', error: null, gpus };
}

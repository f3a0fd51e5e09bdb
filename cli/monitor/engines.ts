// Turns one GPU's raw snapshot into engine readings: what each engine really does, as a share of its
// capacity. GPM metrics (Hopper+) are preferred; older GPUs fall back to NVML's coarse counters, and an
// engine with neither reads null (shown as "n/a", never as 0).
import type { GpmSnapshot, GpuSnapshot } from '../native/types.js';
import { pcieLinkMaxBytesPerSec } from './pcie.js';

export type EngineId = 'compute' | 'tensor' | 'memory' | 'copy' | 'encode' | 'decode' | 'jpeg' | 'ofa';

export const ENGINE_LABELS: Record<EngineId, string> = {
  compute: 'Compute',
  tensor: 'Tensor',
  memory: 'Memory bandwidth',
  copy: 'Copy',
  encode: 'Video encode',
  decode: 'Video decode',
  jpeg: 'JPEG',
  ofa: 'Optical flow',
};

export const ENGINE_ORDER: readonly EngineId[] = ['compute', 'tensor', 'memory', 'copy', 'encode', 'decode', 'jpeg', 'ofa'];

/** Where a reading came from: GPM (precise), or an older NVML counter (time-based, coarse). */
export type EngineSource = 'gpm' | 'nvml' | 'none';

/** The SM arithmetic pipes GPM measures (tensor cores are their own engine). */
export type ComputePipe = 'FP32' | 'FP16' | 'FP64' | 'INT';

/** Below this an engine counts as doing nothing: no pipe is named, and a GPU whose busiest engine reads less is idle. */
export const IDLE_BELOW_PERCENT = 1;

export interface EngineReading {
  id: EngineId;
  label: string;
  /** 0-100, or null when this GPU/driver can't measure the engine. */
  percent: number | null;
  source: EngineSource;
  /** Compute from GPM only: the pipe that leads, when Compute is not idle. */
  pipe: ComputePipe | null;
}

type Measured = { percent: number | null; source: EngineSource; pipe?: ComputePipe | null };

function clampPercent(v: number): number {
  return Math.min(100, Math.max(0, v));
}

function mean(values: (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : present.reduce((a, b) => a + b, 0) / present.length;
}

function pick(gpm: number | null, nvml: number | null): Measured {
  if (gpm !== null) return { percent: clampPercent(gpm), source: 'gpm' };
  if (nvml !== null) return { percent: clampPercent(nvml), source: 'nvml' };
  return { percent: null, source: 'none' };
}

/** Copy engine: the busier PCIe direction against the link's maximum (generation x width). */
function copyPercent(gpu: GpuSnapshot): Measured {
  const max = pcieLinkMaxBytesPerSec(gpu.pcie.maxGen, gpu.pcie.maxWidth);
  if (max === null) return { percent: null, source: 'none' };
  const busier = (tx: number | null, rx: number | null) =>
    tx === null && rx === null ? null : Math.max(tx ?? 0, rx ?? 0);
  const gpm = busier(gpu.gpm.pcieTxBytesPerSec, gpu.gpm.pcieRxBytesPerSec);
  const nvml = busier(gpu.pcie.txBytesPerSec, gpu.pcie.rxBytesPerSec);
  return pick(gpm === null ? null : (100 * gpm) / max, nvml === null ? null : (100 * nvml) / max);
}

/**
 * Compute: the busiest SM pipe, as a share of its peak issue rate. Not GPM's SM activity, which only says
 * an SM holds a warp: a streaming copy keeps warps resident on every SM while they wait on DRAM and reads
 * ~100% there. Without pipe metrics, the legacy GPU-Util ("a kernel was running") is the last resort.
 */
function computeReading(gpu: GpuSnapshot): Measured {
  const g: GpmSnapshot = gpu.gpm;
  const pipes: [ComputePipe, number | null | undefined][] = [['FP32', g.fp32], ['FP16', g.fp16], ['FP64', g.fp64], ['INT', g.integer]];
  let best: { pipe: ComputePipe; percent: number } | null = null;
  for (const [pipe, v] of pipes) {
    if (typeof v === 'number' && (best === null || v > best.percent)) best = { pipe, percent: v };
  }
  if (best === null) return pick(null, gpu.utilGpu);
  const percent = clampPercent(best.percent);
  return { percent, source: 'gpm', pipe: percent >= IDLE_BELOW_PERCENT ? best.pipe : null };
}

export function readEngines(gpu: GpuSnapshot): EngineReading[] {
  const g = gpu.gpm;
  const readings: Record<EngineId, Measured> = {
    compute: computeReading(gpu),
    tensor: pick(g.tensorActivity, null),
    memory: pick(g.dramBandwidth, gpu.utilMemory),
    copy: copyPercent(gpu),
    encode: pick(null, gpu.encoder),
    // Per-instance GPM values averaged: the share of the GPU's whole decode (JPEG, OFA) capacity in use.
    decode: pick(mean(g.nvdec), gpu.decoder),
    jpeg: pick(mean(g.nvjpg), gpu.jpeg),
    ofa: pick(mean(g.nvofa), gpu.ofa),
  };
  return ENGINE_ORDER.map((id) => ({ id, label: ENGINE_LABELS[id], ...readings[id], pipe: readings[id].pipe ?? null }));
}

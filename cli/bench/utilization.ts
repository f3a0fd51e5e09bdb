// Engine utilization beside the speed: the gpu-monitor collector (addon/nvml, read through cli/monitor's
// engine model) samples every GPU during the whole bench, in the parent process, which does no GPU work
// itself; each test's readings are the averages over the samples taken inside its timed runs.
import type { MonitorAddon, MonitorSnapshot } from '../native/types.js';
import { loadAddon } from '../native/addon.js';
import { ENGINE_LABELS, ENGINE_ORDER, readEngines, type EngineReading, type EngineSource } from '../monitor/engines.js';
import { busiestReading, totalOf, type TotalView } from '../monitor/aggregate.js';
import { LiveSource, MIN_INTERVAL_MS } from '../monitor/sources.js';

/** One GPU in one collector sample. */
export interface GpuSample {
  pciBusId: string;
  engines: EngineReading[];
  smActivity: number | null;
  powerW: number | null;
  powerLimitW: number | null;
  smClockMHz: number | null;
}

/** A collector sample and the span it describes (GPM metrics are averages over the sampling interval). */
export interface TimedSample {
  fromMs: number;
  toMs: number;
  gpus: GpuSample[];
}

export interface EngineAverages {
  /** Collector samples (one per interval per GPU) that lay inside the test's timed runs. */
  samples: number;
  /** GPM's SM activity: an SM holds a warp (not what it computes). */
  smActivity: number | null;
  memoryBandwidth: number | null;
  tensor: number | null;
  /** The busiest engine over the window, named, as gpu-monitor's Total; null when nothing was measured. */
  total: TotalView | null;
  /** Board power drawn and the enforced limit, W per GPU: a run that sits at its limit is slowed by the clocks. */
  powerW: number | null;
  powerLimitW: number | null;
  /** SM clock, MHz per GPU: what the power limit (or heat) leaves of the GPU's maximum. */
  smClockMHz: number | null;
}

/** Sampling interval: the collector's shortest (GPM needs two samples at least 100 ms apart). */
export const SAMPLE_INTERVAL_MS = MIN_INTERVAL_MS;

/** A sample may stick out of a window by this much and still count (the two clocks are read at different moments). */
const EDGE_SLACK_MS = 10;

/** Samples kept at most (an hour at 100 ms), so a long run cannot grow without bound. */
const MAX_SAMPLES = 36_000;

/** CUDA writes "0000:3B:00.0", NVML "00000000:3b:00.0": both become "0:3b:00.0". */
export function normalizeBusId(id: string): string {
  const parts = id.trim().toLowerCase().split(':');
  if (parts.length === 3) parts[0] = parseInt(parts[0], 16).toString(16);
  return parts.join(':');
}

export function toTimedSample(snap: MonitorSnapshot): TimedSample {
  return {
    fromMs: snap.time - snap.intervalMs,
    toMs: snap.time,
    gpus: snap.gpus.map((g) => ({
      pciBusId: normalizeBusId(g.pciBusId), engines: readEngines(g), smActivity: g.gpm.smActivity,
      // The instantaneous reading where the driver has it: NVML's plain power is a one-second average, which in a
      // sub-second test still holds mostly the test before it.
      powerW: g.powerInstantW ?? g.powerW, powerLimitW: g.powerLimitW, smClockMHz: g.smClockMHz,
    })),
  };
}

function mean(values: number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * Averages over the samples wholly inside [startMs, endMs] of the GPUs with these bus ids (a split over
 * several GPUs: their mean, power and clocks too). Total is the busiest of the averaged engines, as gpu-monitor
 * names it.
 */
export function averageWindow(samples: readonly TimedSample[], busIds: readonly string[], startMs: number, endMs: number): EngineAverages {
  const wanted = new Set(busIds.map(normalizeBusId));
  const gpus = samples
    .filter((s) => s.fromMs >= startMs - EDGE_SLACK_MS && s.toMs <= endMs + EDGE_SLACK_MS)
    .flatMap((s) => s.gpus.filter((g) => wanted.has(g.pciBusId)));
  const averaged: EngineReading[] = ENGINE_ORDER.map((id) => {
    const readings = gpus.map((g) => g.engines.find((e) => e.id === id)).filter((e): e is EngineReading => e !== undefined);
    const percent = mean(readings.flatMap((e) => (e.percent === null ? [] : [e.percent])));
    const source: EngineSource = readings.find((e) => e.percent !== null)?.source ?? 'none';
    return { id, label: ENGINE_LABELS[id], percent, source, pipe: null };
  });
  const percentOf = (id: string) => averaged.find((e) => e.id === id)?.percent ?? null;
  const meanOf = (read: (g: GpuSample) => number | null) => mean(gpus.flatMap((g) => { const v = read(g); return v === null ? [] : [v]; }));
  return {
    samples: gpus.length,
    smActivity: meanOf((g) => g.smActivity),
    memoryBandwidth: percentOf('memory'),
    tensor: percentOf('tensor'),
    total: totalOf(busiestReading(averaged)),
    powerW: meanOf((g) => g.powerW),
    powerLimitW: meanOf((g) => g.powerLimitW),
    smClockMHz: meanOf((g) => g.smClockMHz),
  };
}

/** The live collector over the whole run; absent (null from start()) where there is no NVIDIA driver. */
export class EngineSampler {
  private samples: TimedSample[] = [];
  private latest: MonitorSnapshot | null = null;

  private constructor(private readonly source: LiveSource, readonly driverVersion: string | null) {}

  /** Starts sampling, or says why it can't. */
  static start(): { sampler: EngineSampler } | { sampler: null; reason: string } {
    try {
      const addon = loadAddon() as unknown as MonitorAddon;
      const probe = addon.monitorProbe();
      if (!probe.available) return { sampler: null, reason: probe.reason ?? 'NVML is not available' };
      const sampler = new EngineSampler(new LiveSource(addon, SAMPLE_INTERVAL_MS), probe.driverVersion);
      sampler.source.start((snap) => sampler.accept(snap));
      return { sampler };
    } catch (err) {
      return { sampler: null, reason: (err as Error).message };
    }
  }

  private accept(snap: MonitorSnapshot): void {
    this.latest = snap;
    this.samples.push(toTimedSample(snap));
    if (this.samples.length > MAX_SAMPLES) this.samples.splice(0, this.samples.length - MAX_SAMPLES);
  }

  /** The GPUs NVML sees, by its index. */
  gpus(): { index: number; name: string }[] {
    return (this.latest?.gpus ?? []).map((g) => ({ index: g.index, name: g.name }));
  }

  average(busIds: readonly string[], startMs: number, endMs: number): EngineAverages {
    return averageWindow(this.samples, busIds, startMs, endMs);
  }

  /** Drops samples that end before `ms` (a finished configuration's). */
  forgetBefore(ms: number): void {
    this.samples = this.samples.filter((s) => s.toMs >= ms);
  }

  stop(): void {
    this.source.stop();
  }
}

// Folds snapshots into per-GPU views: engines with history, Total = the busiest engine (named, or "idle"
// when even that one does next to nothing), and NVML's legacy GPU-Util beside it, flagged when the two
// disagree widely.
import type { GpuSnapshot, MonitorSnapshot } from '../native/types.js';
import { HistoryRing } from './history-ring.js';
import {
  ENGINE_ORDER, IDLE_BELOW_PERCENT, readEngines, type ComputePipe, type EngineId, type EngineReading,
} from './engines.js';

/**
 * Legacy GPU-Util and Total disagree "widely" at 30 percentage points or more. The two are sampled over
 * different windows (NVML's GPU-Util over 1/6 s to 1 s, GPM over our interval), so gaps of 10-20 points
 * come and go on a steadily loaded GPU; 30+ points is the real thing: GPU-Util reading ~100% for a
 * GPU whose engines are mostly idle (one small kernel always in flight), or ~0% while only the copy or
 * video engines work.
 */
export const DISAGREEMENT_POINTS = 30;

/** Samples of history kept per engine (a minute at the default 500 ms). */
export const HISTORY_LENGTH = 120;

export interface EngineView extends EngineReading {
  history: (number | null)[];
}

export interface TotalView {
  percent: number;
  /** The busiest engine; null when idle. */
  engine: EngineId | null;
  label: string | null;
  /** The leading SM pipe when Compute is the busiest engine and GPM measured it. */
  pipe: ComputePipe | null;
  /** The busiest engine reads below IDLE_BELOW_PERCENT: no engine is named. */
  idle: boolean;
}

/** The device readings a view passes through unchanged from its snapshot. */
type DeviceReadings = Pick<GpuSnapshot, 'memoryUsed' | 'memoryTotal' | 'powerW' | 'powerLimitW' | 'smClockMHz' |
  'memClockMHz' | 'temperatureC' | 'processes' | 'unavailable'>;

export interface GpuView extends DeviceReadings {
  index: number;
  name: string;
  uuid: string;
  engines: EngineView[];
  /** The busiest engine; null when no engine could be measured. */
  total: TotalView | null;
  /** GPM's SM activity (an SM holds a warp) and occupancy (resident warps / max): shown, not used for Total. */
  smActivity: number | null;
  smOccupancy: number | null;
  totalHistory: (number | null)[];
  legacyUtil: number | null;
  /** |legacy GPU-Util - Total| >= DISAGREEMENT_POINTS, judged only when Total comes from GPM. */
  disagreement: boolean;
  gpmReady: boolean;
}

export interface MonitorView {
  time: number;
  seq: number;
  intervalMs: number;
  driverVersion: string;
  error: string | null;
  gpus: GpuView[];
}

/** The busiest measured engine; ties go to the earlier engine in ENGINE_ORDER. */
export function busiestReading(readings: EngineReading[]): EngineReading | null {
  let best: EngineReading | null = null;
  for (const r of readings) {
    if (r.percent !== null && (best === null || r.percent > (best.percent as number))) best = r;
  }
  return best;
}

/** Total: the busiest engine, named, or idle when it reads below IDLE_BELOW_PERCENT. */
export function totalOf(busiest: EngineReading | null): TotalView | null {
  if (busiest === null || busiest.percent === null) return null;
  const idle = busiest.percent < IDLE_BELOW_PERCENT;
  return {
    percent: busiest.percent,
    engine: idle ? null : busiest.id,
    label: idle ? null : busiest.label,
    pipe: idle ? null : busiest.pipe,
    idle,
  };
}

export function disagrees(busiest: EngineReading | null, legacyUtil: number | null): boolean {
  if (busiest === null || busiest.percent === null || legacyUtil === null) return false;
  // Without GPM, Compute *is* the legacy counter: comparing it with itself says nothing.
  if (busiest.source !== 'gpm') return false;
  return Math.abs(legacyUtil - busiest.percent) >= DISAGREEMENT_POINTS;
}

class GpuHistory {
  readonly engines = new Map<EngineId, HistoryRing>(ENGINE_ORDER.map((id) => [id, new HistoryRing(HISTORY_LENGTH)]));
  readonly total = new HistoryRing(HISTORY_LENGTH);
}

export class MonitorModel {
  private readonly histories = new Map<string, GpuHistory>();

  /** Adds one snapshot to the histories and returns the view of it. */
  update(snapshot: MonitorSnapshot): MonitorView {
    return {
      time: snapshot.time,
      seq: snapshot.seq,
      intervalMs: snapshot.intervalMs,
      driverVersion: snapshot.driverVersion,
      error: snapshot.error,
      gpus: snapshot.gpus.map((gpu) => this.updateGpu(gpu)),
    };
  }

  private updateGpu(gpu: GpuSnapshot): GpuView {
    const key = gpu.uuid || `index:${gpu.index}`;
    let history = this.histories.get(key);
    if (!history) {
      history = new GpuHistory();
      this.histories.set(key, history);
    }
    const readings = readEngines(gpu);
    const busiest = busiestReading(readings);
    const total = totalOf(busiest);
    history.total.push(total?.percent ?? null);
    const engines = readings.map((r) => {
      const ring = history.engines.get(r.id) as HistoryRing;
      ring.push(r.percent);
      return { ...r, history: ring.values() };
    });
    return {
      index: gpu.index,
      name: gpu.name,
      uuid: gpu.uuid,
      engines,
      total,
      totalHistory: history.total.values(),
      smActivity: gpu.gpm.smActivity,
      smOccupancy: gpu.gpm.smOccupancy,
      legacyUtil: gpu.utilGpu,
      disagreement: disagrees(busiest, gpu.utilGpu),
      gpmReady: gpu.gpm.ready,
      memoryUsed: gpu.memoryUsed,
      memoryTotal: gpu.memoryTotal,
      powerW: gpu.powerW,
      powerLimitW: gpu.powerLimitW,
      smClockMHz: gpu.smClockMHz,
      memClockMHz: gpu.memClockMHz,
      temperatureC: gpu.temperatureC,
      processes: gpu.processes,
      unavailable: gpu.unavailable,
    };
  }
}

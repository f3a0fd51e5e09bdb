// Number formatting and the plain-text / JSON renderings of a view (--once, --json); the Ink panel
// reuses the same helpers so every output agrees.
import type { EngineView, GpuView, MonitorView } from './aggregate.js';

export function formatPercent(v: number | null): string {
  return v === null ? 'n/a' : `${Math.round(v)}%`;
}

export function formatGiB(bytes: number | null): string {
  return bytes === null ? 'n/a' : `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/** "Compute (FP32)" when a pipe leads Compute; the plain label otherwise. */
export function engineLabel(e: { label: string; pipe: string | null }): string {
  return e.pipe === null ? e.label : `${e.label} (${e.pipe})`;
}

export function formatTotal(gpu: GpuView): string {
  const t = gpu.total;
  if (t === null) return 'Total n/a';
  // Idle means below 1%: "0%" unless it would round up to a misleading "1%".
  if (t.idle) return `Total ${t.percent < 0.5 ? '0%' : '<1%'} · idle`;
  return `Total ${formatPercent(t.percent)} · ${engineLabel({ label: t.label as string, pipe: t.pipe })}`;
}

/** GPM's SM activity and occupancy: shown beside the engines so nothing is hidden; null without GPM. */
export function formatSmDetail(gpu: GpuView): string | null {
  if (gpu.smActivity === null && gpu.smOccupancy === null) return null;
  return `SMs active ${formatPercent(gpu.smActivity)} · occupancy ${formatPercent(gpu.smOccupancy)}`;
}

export function formatLegacy(gpu: GpuView): string {
  const flag = gpu.disagreement ? ' (!) disagrees with Total' : '';
  return `GPU-Util (NVML) ${formatPercent(gpu.legacyUtil)}${flag}`;
}

export function formatMemory(gpu: GpuView): string {
  if (gpu.memoryUsed === null || gpu.memoryTotal === null) return 'Memory n/a';
  return `Memory ${formatGiB(gpu.memoryUsed)} / ${formatGiB(gpu.memoryTotal)}`;
}

export function formatPower(gpu: GpuView): string {
  if (gpu.powerW === null) return 'Power n/a';
  return `Power ${Math.round(gpu.powerW)}${gpu.powerLimitW === null ? '' : ` / ${Math.round(gpu.powerLimitW)}`} W`;
}

export function formatClocks(gpu: GpuView): string {
  const mhz = (v: number | null) => (v === null ? 'n/a' : `${Math.round(v)} MHz`);
  return `SM ${mhz(gpu.smClockMHz)} · Mem ${mhz(gpu.memClockMHz)}`;
}

export function formatTemperature(gpu: GpuView): string {
  return gpu.temperatureC === null ? 'Temp n/a' : `${Math.round(gpu.temperatureC)} °C`;
}

/** "[#######-----]" for plain text. */
export function textBar(percent: number | null, width: number): string {
  if (percent === null) return `[${' '.repeat(width)}]`;
  const filled = Math.round((Math.min(100, Math.max(0, percent)) / 100) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** Where an engine's number came from, when it is not GPM. */
export function sourceNote(engine: EngineView): string {
  return engine.source === 'nvml' ? ' ~' : '';
}

export function formatProcesses(gpu: GpuView): string[] {
  if (gpu.processes === null) return [`  Processes: n/a${gpu.unavailable.processes ? ` (${gpu.unavailable.processes})` : ''}`];
  if (gpu.processes.length === 0) return ['  Processes: none'];
  return gpu.processes.map((p) => {
    const sm = p.smUtil === null ? '' : ` · SM ${formatPercent(p.smUtil)}`;
    return `  ${String(p.pid).padStart(7)}  ${(p.name || '?').padEnd(24)} ${formatGiB(p.usedMemory)}${sm}`;
  });
}

export function formatGpuText(gpu: GpuView): string[] {
  const lines = [`GPU ${gpu.index}: ${gpu.name}`, `  ${formatTotal(gpu)}    ${formatLegacy(gpu)}`];
  for (const e of gpu.engines) {
    lines.push(`  ${engineLabel(e).padEnd(17)} ${textBar(e.percent, 20)} ${formatPercent(e.percent).padStart(4)}${sourceNote(e)}`);
  }
  const sm = formatSmDetail(gpu);
  if (sm !== null) lines.push(`  ${sm}`);
  if (!gpu.gpmReady && gpu.unavailable.gpm) lines.push(`  ~ coarse NVML counter; no GPM: ${gpu.unavailable.gpm}`);
  lines.push(`  ${formatMemory(gpu)} · ${formatPower(gpu)} · ${formatClocks(gpu)} · ${formatTemperature(gpu)}`);
  lines.push(...formatProcesses(gpu));
  return lines;
}

export function formatViewText(view: MonitorView): string {
  const lines: string[] = [];
  if (view.error) lines.push(`warning: ${view.error}`);
  if (view.gpus.length === 0) lines.push('no GPUs');
  view.gpus.forEach((g, i) => {
    if (i > 0) lines.push('');
    lines.push(...formatGpuText(g));
  });
  return `${lines.join('\n')}\n`;
}

/** One --json line: the derived engines per GPU (raw snapshots are what --record writes). */
export function viewToJson(view: MonitorView): Record<string, unknown> {
  return {
    time: view.time,
    seq: view.seq,
    error: view.error,
    gpus: view.gpus.map((g) => ({
      index: g.index,
      name: g.name,
      uuid: g.uuid,
      total: g.total,
      smActivity: g.smActivity,
      smOccupancy: g.smOccupancy,
      legacyGpuUtil: g.legacyUtil,
      disagreement: g.disagreement,
      gpmReady: g.gpmReady,
      engines: Object.fromEntries(g.engines.map((e) => [e.id, e.id === 'compute'
        ? { percent: e.percent, source: e.source, pipe: e.pipe }
        : { percent: e.percent, source: e.source }])),
      memoryUsed: g.memoryUsed,
      memoryTotal: g.memoryTotal,
      powerW: g.powerW,
      powerLimitW: g.powerLimitW,
      smClockMHz: g.smClockMHz,
      memClockMHz: g.memClockMHz,
      temperatureC: g.temperatureC,
      processes: g.processes,
      unavailable: g.unavailable,
    })),
  };
}

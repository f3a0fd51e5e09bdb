// One GPU's card: Total (busiest engine, named) with legacy GPU-Util beside it, a bar + % + sparkline
// per engine, SM activity/occupancy as a detail line, then memory, power, clocks, temperature and processes.
import { Box, Text } from 'ink';
import type { EngineView, GpuView } from '../monitor/aggregate.js';
import {
  engineLabel, formatClocks, formatGiB, formatLegacy, formatMemory, formatPercent, formatPower, formatSmDetail,
  formatTemperature, formatTotal,
} from '../monitor/format.js';
import { barParts, sparkline } from './sparkline.js';

const LABEL_WIDTH = 17;

function colourFor(percent: number | null): string {
  if (percent === null) return 'gray';
  if (percent >= 80) return 'red';
  if (percent >= 50) return 'yellow';
  return 'green';
}

function EngineRow({ engine, barWidth, sparkWidth }: { engine: EngineView; barWidth: number; sparkWidth: number }) {
  const { filled, empty } = barParts(engine.percent, barWidth);
  return (
    <Box>
      <Text>{engineLabel(engine).padEnd(LABEL_WIDTH)}</Text>
      <Text color={colourFor(engine.percent)}>{filled}</Text>
      <Text dimColor>{empty}</Text>
      <Text> {formatPercent(engine.percent).padStart(4)}</Text>
      <Text dimColor>{engine.source === 'nvml' ? '~' : ' '}</Text>
      <Text color="cyan"> {sparkline(engine.history, sparkWidth)}</Text>
    </Box>
  );
}

export interface GpuCardProps {
  gpu: GpuView;
  width: number;
  selected: boolean;
  /** Compact: one line (Total and legacy util) for GPUs that don't fit on screen. */
  compact: boolean;
  maxProcesses: number;
}

export function GpuCard({ gpu, width, selected, compact, maxProcesses }: GpuCardProps) {
  const inner = Math.max(30, width - 4);
  const sparkWidth = Math.max(8, Math.min(40, Math.floor(inner * 0.3)));
  const barWidth = Math.max(8, inner - LABEL_WIDTH - 6 - sparkWidth - 1);
  const borderColor = selected ? 'cyan' : 'gray';
  const header = (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        GPU {gpu.index} · {gpu.name}
      </Text>
      <Text wrap="truncate">
        <Text bold color={colourFor(gpu.total?.percent ?? null)}>{formatTotal(gpu)}</Text>
        <Text>{'   '}</Text>
        <Text color={gpu.disagreement ? 'magenta' : undefined}>{formatLegacy(gpu)}</Text>
      </Text>
    </Box>
  );
  if (compact) {
    return (
      <Box borderStyle="round" borderColor={borderColor} flexDirection="column" width={width}>
        {header}
      </Box>
    );
  }
  const procs = gpu.processes ?? [];
  const smDetail = formatSmDetail(gpu);
  return (
    <Box borderStyle={selected ? 'double' : 'round'} borderColor={borderColor} flexDirection="column" width={width}>
      {header}
      {gpu.engines.map((e) => (
        <EngineRow key={e.id} engine={e} barWidth={barWidth} sparkWidth={sparkWidth} />
      ))}
      {smDetail === null ? null : <Text dimColor>{smDetail}</Text>}
      {!gpu.gpmReady && gpu.unavailable.gpm ? <Text dimColor>~ coarse NVML counter; no GPM: {gpu.unavailable.gpm}</Text> : null}
      <Text>
        {formatMemory(gpu)} · {formatPower(gpu)} · {formatClocks(gpu)} · {formatTemperature(gpu)}
      </Text>
      {gpu.processes === null ? (
        <Text dimColor>Processes: n/a</Text>
      ) : procs.length === 0 ? (
        <Text dimColor>Processes: none</Text>
      ) : (
        <Box flexDirection="column">
          {procs.slice(0, maxProcesses).map((p) => (
            <Text key={p.pid}>
              {String(p.pid).padStart(7)} {(p.name || '?').slice(0, 28).padEnd(28)} {formatGiB(p.usedMemory).padStart(9)}
              {p.smUtil === null ? '' : `  SM ${formatPercent(p.smUtil)}`}
            </Text>
          ))}
          {procs.length > maxProcesses ? <Text dimColor>… {procs.length - maxProcesses} more</Text> : null}
        </Box>
      )}
    </Box>
  );
}

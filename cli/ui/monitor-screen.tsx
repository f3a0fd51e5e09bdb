// The whole panel for one view: a header, a card per GPU, and the key help. Pure: everything it shows
// comes from props, so tests render it straight from a recorded trace.
import { Box, Text } from 'ink';
import type { MonitorView } from '../monitor/aggregate.js';
import { GpuCard } from './gpu-card.js';

export interface MonitorScreenProps {
  view: MonitorView | null;
  selected: number;
  paused: boolean;
  rateLabel: string;
  columns: number;
  rows: number;
}

/** Rows a full card needs: border 2 + header 2 + 8 engines + note 1 + stats 1 + processes. */
const FULL_CARD_ROWS = 15;
const COMPACT_CARD_ROWS = 4;

export function MonitorScreen({ view, selected, paused, rateLabel, columns, rows }: MonitorScreenProps) {
  const width = Math.max(40, columns);
  const gpus = view?.gpus ?? [];
  // Everyone gets a full card if they fit; otherwise the selected GPU is full and the rest compact.
  const available = rows - 3;
  const allFull = gpus.length * FULL_CARD_ROWS <= available;
  const spare = available - FULL_CARD_ROWS - (gpus.length - 1) * COMPACT_CARD_ROWS;
  return (
    <Box flexDirection="column" width={width}>
      <Box justifyContent="space-between">
        <Text>
          <Text bold>xllama gpu-monitor</Text>
          {view?.driverVersion ? <Text dimColor> · driver {view.driverVersion}</Text> : null}
        </Text>
        <Text>
          {rateLabel}
          {paused ? <Text color="yellow"> · PAUSED</Text> : null}
        </Text>
      </Box>
      {view === null ? <Text dimColor>waiting for the first sample…</Text> : null}
      {view?.error ? <Text color="yellow">{view.error}</Text> : null}
      {view !== null && gpus.length === 0 ? <Text>no GPUs</Text> : null}
      {gpus.map((g, i) => (
        <GpuCard
          key={g.uuid || g.index}
          gpu={g}
          width={width}
          selected={i === selected}
          compact={!allFull && i !== selected}
          maxProcesses={allFull ? 3 : Math.max(1, spare)}
        />
      ))}
      <Text dimColor>q quit · p pause · +/- interval · tab next GPU · ~ = coarse NVML counter (no GPM)</Text>
    </Box>
  );
}

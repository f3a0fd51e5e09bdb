// The renderings of a bench run: a table in llama-bench's manner (cli-table3), Markdown, one JSON document,
// JSON lines and CSV. Results only (progress goes to stderr elsewhere). jsonl and csv print each row as
// soon as it is known, carrying the footer's facts in every row; the others print everything at the end,
// with the footer.
import Table from 'cli-table3';
import { formatBytes } from '../format.js';
import type { MemoryUse } from '../engine/model-handle.js';
import { formatPercent } from '../monitor/format.js';
import type { BenchRow } from './rows.js';
import type { EngineAverages } from './utilization.js';

export const OUTPUT_FORMATS = ['table', 'md', 'json', 'jsonl', 'csv'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Known when the run starts. */
export interface RunInfo {
  version: string;
  commit: string | null;
  /** NVIDIA driver version (NVML); null without one. */
  driver: string | null;
  repetitions: number;
  engineSampleIntervalMs: number;
  /** Why the engine columns read n/a (no NVML, say); null when GPUs were sampled. */
  enginesUnavailable: string | null;
}

/** Known when the run ends: what NVML and the configurations' processes saw. */
export interface SystemSummary {
  gpus: { index: number; name: string }[];
  /** Why there are no GPUs, when there are none. */
  gpuNote: string | null;
  cuda: string | null;
}

export interface BenchWriter {
  row(r: BenchRow): void;
  finish(system: SystemSummary): void;
}

/** 6.74 B, 292.4 K parameters. */
export function formatCount(n: number): string {
  for (const [scale, unit] of [[1e9, 'B'], [1e6, 'M'], [1e3, 'K']] as const) {
    if (n >= scale) return `${(n / scale).toFixed(2)} ${unit}`;
  }
  return String(n);
}

const deviceName = (device: number) => (device < 0 ? 'host' : `GPU ${device}`);
const deviceBytes = (d: MemoryUse['devices'][number]) => d.weightsBytes + d.kvCacheBytes + d.scratchBytes;

/** Weights + KV cache + scratch; for a split, each stage's share too. */
export function formatMemory(m: MemoryUse | null): string {
  if (!m) return '';
  const total = formatBytes(m.weightsBytes + m.kvCacheBytes + m.scratchBytes);
  if (m.devices.length <= 1) return total;
  return `${total} (${m.devices.map((d) => `${deviceName(d.device)} ${formatBytes(deviceBytes(d))}`).join(' + ')})`;
}

function splitText(r: BenchRow): string {
  return r.gpus === null ? r.split : `${r.split} on ${r.gpus}`;
}

/** What an unmeasured row says in place of its numbers. */
export function statusText(r: BenchRow): string {
  switch (r.status) {
    case 'failed': return `failed: ${r.message}`;
    case 'not-run': return `not run: ${r.message}`;
    default: return r.message ?? '';
  }
}

/** "698/700 W": mean draw over the enforced limit. */
function formatPower(e: EngineAverages | null): string {
  if (e?.powerW == null) return 'n/a';
  return e.powerLimitW == null ? `${e.powerW.toFixed(0)} W` : `${e.powerW.toFixed(0)}/${e.powerLimitW.toFixed(0)} W`;
}

/** The measured cells after the test name: t/s, memory, bandwidth use, the engines, power and SM clock. */
function measuredCells(r: BenchRow): string[] {
  const ts = r.tokensPerSec as NonNullable<BenchRow['tokensPerSec']>;
  // One decimal: shares of the floor are compared to tenths of a point (issue 13's targets, machine to machine).
  const bw = r.kind === 'pp' ? '' : r.bandwidthUse === null ? 'n/a' : `${(r.bandwidthUse * 100).toFixed(1)}%`;
  const e = r.engines && r.engines.samples > 0 ? r.engines : null;
  const total = e?.total ?? null;
  const busiest = total === null ? 'n/a' : total.idle ? 'idle' : `${formatPercent(total.percent)} ${total.label}`;
  return [`${ts.mean.toFixed(2)} ± ${ts.sd.toFixed(2)}`, formatMemory(r.memory), bw,
    formatPercent(e?.smActivity ?? null), formatPercent(e?.memoryBandwidth ?? null), formatPercent(e?.tensor ?? null), busiest,
    formatPower(e), e?.smClockMHz == null ? 'n/a' : e.smClockMHz.toFixed(0)];
}

const HEAD = ['model', 'size', 'params', 'backend', 'split', 'test', 't/s', 'memory', 'bw use', 'SM act', 'mem bw', 'tensor',
  'busiest engine', 'power', 'SM MHz'];
const RIGHT_ALIGNED = new Set(['size', 'params', 't/s', 'memory', 'bw use', 'SM act', 'mem bw', 'tensor', 'power', 'SM MHz']);
const MEASURED_COLUMNS = HEAD.length - 6;

/** A row to show: unmeasured rows of one configuration that say the same thing are shown once, their tests listed. */
interface ShownRow {
  row: BenchRow;
  tests: string[];
}

function shownRows(rows: BenchRow[]): ShownRow[] {
  const out: ShownRow[] = [];
  for (const r of rows) {
    const prev = out[out.length - 1]?.row;
    if (prev && r.status !== 'ok' && prev.status === r.status && prev.message === r.message && prev.model === r.model &&
        prev.backend === r.backend && prev.split === r.split && prev.gpus === r.gpus) {
      out[out.length - 1].tests.push(r.test);
    } else {
      out.push({ row: r, tests: [r.test] });
    }
  }
  return out;
}

function leadCells(s: ShownRow): string[] {
  const r = s.row;
  return [r.model, r.sizeBytes === null ? '' : formatBytes(r.sizeBytes), r.params === null ? '' : formatCount(r.params),
    r.backend, splitText(r), s.tests.join(', ')];
}

function footerLines(run: RunInfo, sys: SystemSummary): string[] {
  const gpus = sys.gpus.length > 0
    ? sys.gpus.map((g) => `GPU ${g.index}: ${g.name}`).join(', ')
    : `GPUs: none${sys.gpuNote ? ` (${sys.gpuNote})` : ''}`;
  return [
    `xllama ${run.version} (commit ${run.commit ?? 'unknown'}) · ${gpus} · NVIDIA driver ${run.driver ?? 'n/a'} · CUDA ${sys.cuda ?? 'n/a'}`,
    `t/s: mean ± sd of ${run.repetitions} run${run.repetitions === 1 ? '' : 's'} after warm-up · ` +
      "bw use: bytes per token × t/s ÷ the GPU's measured copy bandwidth",
    `SM act, mem bw, tensor, busiest engine, power (drawn/limit), SM MHz: averages of gpu-monitor's samples (every ` +
      `${run.engineSampleIntervalMs} ms) during the timed runs${run.enginesUnavailable ? `; n/a here: ${run.enginesUnavailable}` : ''}`,
  ];
}

/** Messages are wrapped at this width in the table, so a long one doesn't stretch every column. */
const MESSAGE_WIDTH = 90;

function wrap(text: string, width: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return [...lines, line].join('\n');
}

export function renderTable(rows: BenchRow[], run: RunInfo, sys: SystemSummary): string {
  const table = new Table({
    head: HEAD,
    colAligns: HEAD.map((h) => (RIGHT_ALIGNED.has(h) ? 'right' : 'left')),
    // compact: no rule between rows, as llama-bench prints them.
    style: { head: [], border: [], compact: true },
  });
  for (const s of shownRows(rows)) {
    table.push(s.row.status === 'ok'
      ? [...leadCells(s), ...measuredCells(s.row)]
      : [...leadCells(s), { colSpan: MEASURED_COLUMNS, hAlign: 'left', content: wrap(statusText(s.row), MESSAGE_WIDTH) }]);
  }
  return `${table.toString()}\n\n${footerLines(run, sys).join('\n')}\n`;
}

export function renderMarkdown(rows: BenchRow[], run: RunInfo, sys: SystemSummary): string {
  const cell = (v: string) => v.replace(/\|/g, '\\|');
  const line = (cells: string[]) => `| ${cells.map(cell).join(' | ')} |`;
  const out = [line(HEAD), `|${HEAD.map((h) => (RIGHT_ALIGNED.has(h) ? ' ---: ' : ' --- ')).join('|')}|`];
  for (const s of shownRows(rows)) {
    const rest = s.row.status === 'ok' ? measuredCells(s.row) : [statusText(s.row), ...Array<string>(MEASURED_COLUMNS - 1).fill('')];
    out.push(line([...leadCells(s), ...rest]));
  }
  return `${out.join('\n')}\n\n${footerLines(run, sys).join('\n\n')}\n`;
}

/** CSV columns: llama-bench's names where it has them (avg_ts, stddev_ts, samples_ts). */
const CSV_COLUMNS: [string, (r: BenchRow, run: RunInfo) => string | number | null | undefined][] = [
  ['model', (r) => r.model], ['model_path', (r) => r.modelPath], ['size_bytes', (r) => r.sizeBytes], ['params', (r) => r.params],
  ['backend', (r) => r.backend], ['split', (r) => r.split], ['gpus', (r) => r.gpus],
  ['test', (r) => r.test], ['kind', (r) => r.kind], ['n_tokens', (r) => r.tokens], ['depth', (r) => r.depth],
  ['repetitions', (r) => r.repetitions], ['status', (r) => r.status], ['message', (r) => r.message],
  ['avg_ts', (r) => r.tokensPerSec?.mean], ['stddev_ts', (r) => r.tokensPerSec?.sd],
  ['samples_ts', (r) => r.tokensPerSec?.samples.join(';')],
  ['load_s', (r) => r.loadSeconds], ['max_seq_len', (r) => r.maxSeqLen],
  ['memory_bytes', (r) => (r.memory ? r.memory.weightsBytes + r.memory.kvCacheBytes + r.memory.scratchBytes : null)],
  ['memory_by_device', (r) => r.memory?.devices.map((d) => `${d.device}:${deviceBytes(d)}`).join(';')],
  ['bytes_per_token', (r) => r.bytesPerToken], ['bandwidth_use', (r) => r.bandwidthUse],
  ['sm_activity', (r) => r.engines?.smActivity], ['memory_bandwidth', (r) => r.engines?.memoryBandwidth],
  ['tensor', (r) => r.engines?.tensor],
  ['busiest_engine', (r) => (r.engines?.total ? (r.engines.total.idle ? 'idle' : r.engines.total.label) : null)],
  ['busiest_percent', (r) => r.engines?.total?.percent], ['engine_samples', (r) => r.engines?.samples],
  ['power_w', (r) => r.engines?.powerW], ['power_limit_w', (r) => r.engines?.powerLimitW],
  ['sm_clock_mhz', (r) => r.engines?.smClockMHz],
  ['gpu_names', (r) => r.gpuNames.join(';')], ['cuda', (r) => r.cuda],
  ['xllama_version', (_, run) => run.version], ['commit', (_, run) => run.commit], ['driver', (_, run) => run.driver],
];

export function csvCell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function createWriter(format: OutputFormat, run: RunInfo, write: (text: string) => void): BenchWriter {
  const rows: BenchRow[] = [];
  switch (format) {
    case 'jsonl':
      return {
        row: (r) => write(`${JSON.stringify({ ...r, xllamaVersion: run.version, commit: run.commit, driver: run.driver })}\n`),
        finish: () => {},
      };
    case 'csv':
      write(`${CSV_COLUMNS.map(([name]) => name).join(',')}\n`);
      return { row: (r) => write(`${CSV_COLUMNS.map(([, get]) => csvCell(get(r, run))).join(',')}\n`), finish: () => {} };
    default:
      return {
        row: (r) => rows.push(r),
        finish: (sys) => {
          if (format === 'table') write(renderTable(rows, run, sys));
          else if (format === 'md') write(renderMarkdown(rows, run, sys));
          else {
            write(`${JSON.stringify({
              xllama: { version: run.version, commit: run.commit },
              system: { gpus: sys.gpus, gpuNote: sys.gpuNote, driver: run.driver, cuda: sys.cuda },
              settings: { repetitions: run.repetitions, engineSampleIntervalMs: run.engineSampleIntervalMs,
                enginesUnavailable: run.enginesUnavailable },
              results: rows,
            }, null, 2)}\n`);
          }
        },
      };
  }
}

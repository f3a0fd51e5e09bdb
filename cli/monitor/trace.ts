// GPU traces: JSON lines, a header then one raw collector snapshot per line (each with its `time`).
// --record writes them; --replay reads them back through the same pipeline as live sampling.
import { closeSync, openSync, writeSync } from 'node:fs';
import { showValue, UserError } from '../errors.js';
import { readBoundedFile } from '../engine/bounded-file.js';
import type { MonitorSnapshot } from '../native/types.js';

export const TRACE_FORMAT = 'xllama-gpu-trace';
export const TRACE_VERSION = 1;
/** The longest string V8 makes (a trace is read as one): about 512 MiB, a day or more of snapshots. */
const MAX_TRACE_BYTES = 512 * 1024 * 1024 - 64;

export interface TraceHeader {
  format: typeof TRACE_FORMAT;
  version: number;
  recordedAt: string;
  intervalMs: number;
  note?: string;
}

export interface Trace {
  header: TraceHeader;
  snapshots: MonitorSnapshot[];
}

/** Appends whole lines with synchronous writes, so an interrupted run leaves only complete lines. */
export class TraceWriter {
  private fd: number | null;

  constructor(readonly path: string, intervalMs: number) {
    try {
      this.fd = openSync(path, 'w');
    } catch (err) {
      throw new UserError(`--record ${path}: cannot create the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const header: TraceHeader = { format: TRACE_FORMAT, version: TRACE_VERSION, recordedAt: new Date().toISOString(), intervalMs };
    this.writeLine(header);
  }

  write(snapshot: MonitorSnapshot): void {
    this.writeLine(snapshot);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private writeLine(value: unknown): void {
    if (this.fd === null) return;
    writeSync(this.fd, `${JSON.stringify(value)}\n`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkSnapshot(v: unknown, where: string): MonitorSnapshot {
  if (!isObject(v) || typeof v.time !== 'number' || !Array.isArray(v.gpus)) {
    throw new UserError(`${where}: not a GPU snapshot (needs a numeric "time" and a "gpus" array)`);
  }
  v.gpus.forEach((g, i) => {
    if (!isObject(g) || typeof g.index !== 'number' || !isObject(g.gpm) || !isObject(g.pcie)) {
      throw new UserError(`${where}: gpus[${i}] is not a GPU sample (needs index, gpm and pcie)`);
    }
  });
  return v as unknown as MonitorSnapshot;
}

/** Parses and checks a trace; every problem is a UserError naming the file and line. */
export function parseTrace(text: string, path: string): Trace {
  const lines = text.split('\n').map((l) => l.trim());
  const parsed: { value: unknown; line: number }[] = [];
  lines.forEach((l, i) => {
    if (l === '') return;
    try {
      parsed.push({ value: JSON.parse(l), line: i + 1 });
    } catch {
      throw new UserError(`${path}:${i + 1}: not valid JSON`);
    }
  });
  if (parsed.length === 0) throw new UserError(`${path}: empty trace`);
  const head = parsed[0].value;
  if (!isObject(head) || head.format !== TRACE_FORMAT) {
    throw new UserError(`${path}:1: not an xllama GPU trace (expected a header with "format":"${TRACE_FORMAT}")`);
  }
  if (head.version !== TRACE_VERSION) {
    throw new UserError(`${path}:1: trace version ${showValue(head.version)} is not supported (expected ${TRACE_VERSION})`);
  }
  const snapshots = parsed.slice(1).map(({ value, line }) => checkSnapshot(value, `${path}:${line}`));
  if (snapshots.length === 0) throw new UserError(`${path}: the trace has a header but no snapshots`);
  return { header: head as unknown as TraceHeader, snapshots };
}

export function readTrace(path: string): Trace {
  let text: string;
  try {
    text = readBoundedFile(path, { maxBytes: MAX_TRACE_BYTES, noun: 'trace file', limitPhrase: 'a trace may have' }).toString('utf8');
  } catch (err) {
    throw err instanceof UserError ? new UserError(`--replay ${err.message}`) : err;
  }
  return parseTrace(text, path);
}

// `xllama gpu-monitor`: what each GPU engine really does (GPM on Hopper+), the busiest one as Total,
// NVML's legacy GPU-Util beside it. Interactive Ink panel, or --once / --json for scripts, with
// --record / --replay of raw snapshot traces.
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { outputClosed, writeOut } from '../stdout-guard.js';
import { loadAddon } from '../native/addon.js';
import type { MonitorAddon } from '../native/types.js';
import { MonitorModel, type MonitorView } from '../monitor/aggregate.js';
import { formatViewText, viewToJson } from '../monitor/format.js';
import { MonitorSession } from '../monitor/session.js';
import {
  LiveSource, MAX_INTERVAL_MS, MIN_INTERVAL_MS, MonitorUnavailableError, ReplaySource, type SnapshotSource,
} from '../monitor/sources.js';
import { readTrace, TraceWriter } from '../monitor/trace.js';

interface GpuMonitorOptions {
  interval: string;
  once?: boolean;
  json?: boolean;
  record?: string;
  replay?: string;
  speed?: string;
  duration?: string;
}

interface Settings {
  intervalMs: number;
  once: boolean;
  json: boolean;
  record: string | null;
  replay: string | null;
  speed: number;
  durationMs: number | null;
}

function parseSettings(o: GpuMonitorOptions): Settings {
  const interval = Number(o.interval);
  if (!/^\d+$/.test(o.interval) || interval < MIN_INTERVAL_MS || interval > MAX_INTERVAL_MS) {
    throw new UserError(`--interval must be a whole number of milliseconds from ${MIN_INTERVAL_MS} to ${MAX_INTERVAL_MS} (got "${o.interval}")`);
  }
  if (o.record !== undefined && o.replay !== undefined) throw new UserError('--record and --replay cannot be used together');
  let speed = 1;
  if (o.speed !== undefined) {
    if (o.replay === undefined) throw new UserError('--speed applies only to --replay');
    speed = o.speed === 'max' ? Infinity : Number(o.speed);
    if (!(speed > 0) || (!Number.isFinite(speed) && o.speed !== 'max')) {
      throw new UserError(`--speed must be a positive number or "max" (got "${o.speed}")`);
    }
  }
  let durationMs: number | null = null;
  if (o.duration !== undefined) {
    const s = Number(o.duration);
    if (!(s > 0) || !Number.isFinite(s)) throw new UserError(`--duration must be a positive number of seconds (got "${o.duration}")`);
    durationMs = s * 1000;
  }
  return {
    intervalMs: interval,
    once: Boolean(o.once),
    json: Boolean(o.json),
    record: o.record ?? null,
    replay: o.replay ?? null,
    speed,
    durationMs,
  };
}

/** The snapshot source, checked usable before anything (like a --record file) is created. */
function makeSource(s: Settings): SnapshotSource {
  if (s.replay !== null) return new ReplaySource(readTrace(s.replay).snapshots, s.speed);
  const addon = loadAddon() as unknown as MonitorAddon;
  const probe = addon.monitorProbe();
  if (!probe.available) throw new MonitorUnavailableError(probe.reason ?? 'unknown reason');
  return new LiveSource(addon, s.intervalMs);
}

function makeSession(s: Settings): MonitorSession {
  const source = makeSource(s);
  return new MonitorSession(source, s.record === null ? null : new TraceWriter(s.record, s.intervalMs));
}

/** Runs a session until the replay ends, --duration passes, SIGINT/SIGTERM, or stdout's reader goes away. */
function runUntilDone(session: MonitorSession, durationMs: number | null): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | null = null;
    const cleanUp = () => {
      if (timer) clearTimeout(timer);
      process.off('SIGINT', finish);
      process.off('SIGTERM', finish);
      outputClosed.removeEventListener('abort', finish);
      session.stop();
    };
    const finish = () => {
      cleanUp();
      resolve();
    };
    session.onEnd(finish);
    process.on('SIGINT', finish);
    process.on('SIGTERM', finish);
    outputClosed.addEventListener('abort', finish);
    if (durationMs !== null) timer = setTimeout(finish, durationMs);
    try {
      session.start();
    } catch (err) {
      cleanUp();
      reject(err);
    }
  });
}

/** --once: a single snapshot, after GPM has its two samples (live), or the end state of a replay. */
async function runOnce(s: Settings): Promise<void> {
  let view: MonitorView | null = null;
  if (s.replay !== null) {
    const model = new MonitorModel();
    for (const snap of readTrace(s.replay).snapshots) view = model.update(snap);
  } else {
    const session = makeSession(s);
    view = await new Promise<MonitorView | null>((resolve, reject) => {
      // GPM metrics exist from the second sample on; give the collector a few intervals at most.
      const deadline = setTimeout(() => resolve(session.latest), s.intervalMs * 4 + 2000);
      // Ready once no GPU is still waiting for its second GPM sample (or after a few samples regardless).
      const warmingUp = (v: MonitorView) => v.gpus.some((g) => g.unavailable.gpm?.startsWith('waiting'));
      session.onView((v) => {
        if ((v.seq >= 2 && !warmingUp(v)) || v.seq >= 5) {
          clearTimeout(deadline);
          resolve(v);
        }
      });
      try {
        session.start();
      } catch (err) {
        clearTimeout(deadline);
        reject(err);
      }
    }).finally(() => session.stop());
  }
  if (view === null) throw new UserError('gpu-monitor: the collector produced no snapshot', 1);
  process.stdout.write(s.json ? `${JSON.stringify(viewToJson(view))}\n` : formatViewText(view));
}

async function runJson(s: Settings): Promise<void> {
  const session = makeSession(s);
  session.onView((v) => writeOut(`${JSON.stringify(viewToJson(v))}\n`));
  await runUntilDone(session, s.durationMs);
}

/** --record without a terminal (scripts): sample and record, print nothing. */
async function runHeadlessRecord(s: Settings): Promise<void> {
  const session = makeSession(s);
  process.stderr.write(`gpu-monitor: recording to ${s.record}${s.durationMs === null ? ' (Ctrl-C to stop)' : ''}\n`);
  await runUntilDone(session, s.durationMs);
}

async function runInteractive(s: Settings): Promise<void> {
  const session = makeSession(s);
  // Ink and React load only here: --json, --once and piped runs never import them.
  const { runMonitorApp } = await import('../ui/gpu-monitor-app.js');
  await runMonitorApp(session, s.durationMs);
}

export function registerGpuMonitor(program: Command): void {
  program
    .command('gpu-monitor')
    .description('show what each GPU engine really does (compute, tensor, memory, copy, video), busiest as Total')
    .option('--interval <ms>', `sampling interval in milliseconds (${MIN_INTERVAL_MS}-${MAX_INTERVAL_MS})`, '500')
    .option('--once', 'print one snapshot as plain text and exit (no interactive panel)')
    .option('--json', 'print one JSON line per sample (with --once: a single line)')
    .option('--record <file>', 'also write the raw snapshots to FILE as JSON lines (a trace)')
    .option('--replay <file>', 'play a recorded trace back instead of sampling the GPUs')
    .option('--speed <factor>', 'replay speed: 1 = recorded pace, 4 = four times faster, "max" = no waiting')
    .option('--duration <seconds>', 'stop after this many seconds')
    .addHelpText(
      'after',
      `
Total is the busiest engine, named ("idle" when every engine is below 1%); NVML's GPU-Util (share of
time any kernel runs) is shown beside it and flagged when the two differ by 30 points or more. Compute is
the busiest SM pipe (FP32, FP16, FP64 or integer) against its peak, not SM activity, which reads ~100%
whenever warps sit on the SMs, even waiting on memory. Keys: q quit, p pause, +/- interval, tab next GPU.

Examples:
  $ xllama gpu-monitor                                 interactive panel
  $ xllama gpu-monitor --once                          one plain-text snapshot
  $ xllama gpu-monitor --json --interval 250           JSON lines, 4 per second
  $ xllama gpu-monitor --record run.jsonl --duration 10
  $ xllama gpu-monitor --replay run.jsonl --speed 4`,
    )
    .action(async (opts: GpuMonitorOptions) => {
      const s = parseSettings(opts);
      if (s.once) return runOnce(s);
      if (s.json) return runJson(s);
      if (process.stdout.isTTY && process.stdin.isTTY) return runInteractive(s);
      if (s.record !== null) return runHeadlessRecord(s);
      throw new UserError('gpu-monitor: the interactive panel needs a terminal; use --once or --json (or --record FILE)');
    });
}

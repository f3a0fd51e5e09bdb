// Runs the real `xllama` launcher under a time and memory watchdog: the child gets its own process group
// (so a timeout kills everything it started), its resident memory is read from /proc while it runs (and
// it is killed past the limit), and a preloaded probe reports its exact peak on exit.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { launcher } from '../helpers/run-cli.js';

const probe = pathToFileURL(join(fileURLToPath(new URL('.', import.meta.url)), 'rss-probe.js')).href;

export interface WatchdogLimits {
  timeoutMs: number;
  maxRssBytes: number;
}

export interface RunResult {
  args: string[];
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Killed by the watchdog for going past maxRssBytes. */
  overMemory: boolean;
  /** Peak resident memory: the probe's exact figure, else the largest /proc reading; 0 when neither came. */
  peakRssBytes: number;
  ms: number;
}

/** VmRSS and VmHWM (peak) of a live process, in bytes; null where /proc can't say. */
function procMemory(pid: number): { rss: number; peak: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const bytes = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rss: bytes('VmRSS'), peak: bytes('VmHWM') };
  } catch {
    return null;
  }
}

const MAX_OUTPUT = 1 << 20; // keep at most 1 MiB of each stream

export function runWatched(args: string[], limits: WatchdogLimits, scratchFile: string): Promise<RunResult> {
  const started = performance.now();
  rmSync(scratchFile, { force: true });
  const child = spawn(process.execPath, ['--import', probe, launcher, ...args], {
    detached: true, // its own process group: the timeout kills the group
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', XLLAMA_DEBUG: '', XLLAMA_FUZZ_RSS_FILE: scratchFile },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => { if (stdout.length < MAX_OUTPUT) stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s: string) => { if (stderr.length < MAX_OUTPUT) stderr += s; });
  let timedOut = false;
  let overMemory = false;
  let polledPeak = 0;
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => { timedOut = true; kill(); }, limits.timeoutMs);
  const poll = setInterval(() => {
    const m = procMemory(child.pid!);
    if (!m) return;
    polledPeak = Math.max(polledPeak, m.peak, m.rss);
    if (m.rss > limits.maxRssBytes) { overMemory = true; kill(); }
  }, 50);
  return new Promise((resolve) => {
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      let peak = polledPeak;
      try {
        peak = Math.max(peak, Number(readFileSync(scratchFile, 'utf8')) * 1024);
      } catch {
        // no probe figure: the process died before its exit handler ran (a signal is reported anyway)
      }
      rmSync(scratchFile, { force: true });
      resolve({ args, status, signal, stdout, stderr, timedOut, overMemory, peakRssBytes: peak, ms: performance.now() - started });
    });
  });
}

// Runs one bench configuration in a child process (`xllama bench-run`) and passes its JSON lines on. The
// child's end is turned into one line saying how it failed, if it did: its own error message, a time-out,
// a signal (SIGKILL is what the kernel's out-of-memory killer sends), or an exit code with its last words.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { packageRoot } from '../native/addon.js';
import { parseMessage, type ChildMessage } from './protocol.js';

/** The pipe the child writes its JSON lines to. */
const RESULTS_FD = 3;

/** stderr kept from a child, for its last line when it dies without a message. */
const STDERR_TAIL_CHARS = 4096;

export interface ChildOptions {
  /** Kill the child after this long (null: no limit). */
  timeoutMs: number | null;
  /** Aborting kills the child (Ctrl+C in the parent). */
  signal: AbortSignal;
  /** Each whole line the child writes on stderr (bench --verbose shows them); otherwise only its last words are kept. */
  onStderrLine?: (line: string) => void;
}

/** Why a child ended badly, in words; null when it finished its work. */
export type ChildFailure = string | null;

export function describeSignal(signal: NodeJS.Signals): string {
  switch (signal) {
    case 'SIGKILL': return 'killed by SIGKILL (out of host memory, or killed from outside)';
    case 'SIGSEGV': return 'crashed (SIGSEGV)';
    case 'SIGBUS': return 'crashed (SIGBUS)';
    case 'SIGABRT': return 'aborted (SIGABRT)';
    case 'SIGINT': case 'SIGTERM': return `interrupted (${signal})`;
    default: return `killed by ${signal}`;
  }
}

function lastLine(text: string): string | null {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length > 0 ? lines[lines.length - 1] : null;
}

/** Runs `xllama bench-run ARGS`, with the same Node options as this process. */
export function runChild(args: string[], onMessage: (m: ChildMessage) => void, opts: ChildOptions): Promise<ChildFailure> {
  return new Promise((resolve) => {
    const launcher = join(packageRoot, 'bin', 'xllama.js');
    const child = spawn(process.execPath, [...process.execArgv, launcher, 'bench-run', ...args, '--results-fd', String(RESULTS_FD)], {
      // stdin stays open: the child exits when it closes (this process went away).
      stdio: ['pipe', 'ignore', 'pipe', 'pipe'],
    });
    child.stdin?.on('error', () => {});  // never written to; it only has to stay open
    let errorMessage: string | null = null;
    let finished = false;
    let timedOut = false;
    let stderrTail = '';
    let partialLine = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderrTail = (stderrTail + s).slice(-STDERR_TAIL_CHARS);
      if (!opts.onStderrLine) return;
      const lines = (partialLine + s).split('\n');
      partialLine = lines.pop() as string;
      for (const line of lines) opts.onStderrLine(line);
    });
    createInterface({ input: child.stdio[RESULTS_FD] as Readable }).on('line', (line) => {
      const m = parseMessage(line);
      if (!m) return;
      if (m.type === 'error') errorMessage = m.message;
      if (m.type === 'done') finished = true;
      onMessage(m);
    });
    const kill = () => child.kill('SIGKILL');
    const timer = opts.timeoutMs === null ? null : setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    opts.signal.addEventListener('abort', kill, { once: true });
    let spawnError: Error | null = null;
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (opts.onStderrLine && partialLine !== '') opts.onStderrLine(partialLine);
      opts.signal.removeEventListener('abort', kill);
      child.stdin?.destroy();
      if (spawnError) resolve(`could not start the benchmark process: ${(spawnError as Error).message}`);
      else if (timedOut) resolve(`timed out after ${(opts.timeoutMs as number) / 1000} s`);
      else if (opts.signal.aborted) resolve('interrupted');
      else if (errorMessage !== null) resolve(errorMessage);
      else if (signal) resolve(describeSignal(signal));
      else if (code !== 0) resolve(`exited with code ${code}${lastLine(stderrTail) ? `: ${lastLine(stderrTail)}` : ''}`);
      else resolve(finished ? null : 'ended before finishing its tests');
    });
  });
}

// Runs the real `xllama` launcher in a child process, as a user would.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams, type SpawnSyncReturns } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Package root: this file is dist/test/helpers/run-cli.js. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const fixtures = join(repoRoot, 'fixtures');
export const launcher = join(repoRoot, 'bin', 'xllama.js');

export function runCli(args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}):
    SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [launcher, ...args], {
    encoding: 'utf8',
    input: opts.input ?? '',
    env: { ...process.env, FORCE_COLOR: '0', ...opts.env },
    timeout: opts.timeoutMs ?? 120_000,
  });
}

export interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts the launcher without waiting for it: `onStart` gets the child (to close its stdout, send it a
 * signal, ...). Resolves when it exits; kills it and rejects after `timeoutMs`.
 */
export function startCli(args: string[], onStart: (child: ChildProcessWithoutNullStreams) => void,
    opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliExit> {
  const child = spawn(process.execPath, [launcher, ...args], {
    env: { ...process.env, FORCE_COLOR: '0', ...opts.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  child.stdin.on('error', () => {}); // the child may exit without reading its stdin
  child.stdin.end(opts.input ?? '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`xllama ${args.join(' ')} did not end within ${opts.timeoutMs ?? 60_000} ms; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    onStart(child);
  });
}

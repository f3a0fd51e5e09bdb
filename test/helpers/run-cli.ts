// Runs the real `xllama` launcher in a child process, as a user would.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Package root: this file is dist/test/helpers/run-cli.js. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const fixtures = join(repoRoot, 'fixtures');
export const launcher = join(repoRoot, 'bin', 'xllama.js');

export function runCli(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}):
    SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [launcher, ...args], {
    encoding: 'utf8',
    input: opts.input ?? '',
    env: { ...process.env, FORCE_COLOR: '0', ...opts.env },
    timeout: opts.timeoutMs ?? 120_000,
  });
}

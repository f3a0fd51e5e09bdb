// The contract for bad input, checked on a real CLI run: exit code 2, nothing on stdout, one line on stderr
// starting "xllama: " with no stack trace, containing every given pattern.
import assert from 'node:assert/strict';
import type { SpawnSyncReturns } from 'node:child_process';
import { runCli } from './run-cli.js';

export function assertOneLineRefusal(r: SpawnSyncReturns<string>, what: string, ...patterns: (RegExp | string)[]): void {
  assert.equal(r.status, 2, `exit code for ${what}: ${r.stderr}`);
  assert.equal(r.stdout, '', `stdout of ${what}`);
  assert.ok(!r.stderr.includes('    at '), `stack trace printed:\n${r.stderr}`);
  assert.match(r.stderr, /^xllama: [^\n]+\n$/, `exactly one line from ${what}: ${r.stderr}`);
  for (const p of patterns) {
    if (typeof p === 'string') assert.ok(r.stderr.includes(p), `"${p}" not in: ${r.stderr}`);
    else assert.match(r.stderr, p);
  }
}

/** Runs `xllama ARGS` and checks it is refused that way. */
export function assertCliRefused(args: string[], ...patterns: (RegExp | string)[]): void {
  assertOneLineRefusal(runCli(args), args.join(' '), ...patterns);
}

// The fuzzer's watchdog itself: it reports a run's exit and peak memory, and kills a run (with everything
// it started) past its time or memory limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { runWatched } from './watchdog.js';

const scratch = mkdtempSync(join(tmpdir(), 'xllama-watchdog-'));
test.after(() => rmSync(scratch, { recursive: true, force: true }));
const GiB = 1024 ** 3;
// Replays an 8-second trace in real time: a run that outlives short limits.
const slow = ['gpu-monitor', '--replay', join(fixtures, 'monitor', 'h100-idle.jsonl'), '--json'];

test('a normal run: its exit code, output and peak memory (from the probe) come back', async () => {
  const r = await runWatched(['info', join(fixtures, 'models', 'stories260K')], { timeoutMs: 60_000, maxRssBytes: GiB }, join(scratch, 'a'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^layers +5$/m);
  assert.equal(r.timedOut, false);
  assert.ok(r.peakRssBytes > 20 * 1024 ** 2 && r.peakRssBytes < GiB, `peak ${r.peakRssBytes}`);
});

test('a run past its time limit is killed and reported as timed out', async () => {
  const r = await runWatched(slow, { timeoutMs: 1500, maxRssBytes: GiB }, join(scratch, 'b'));
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.ok(r.ms < 6000, `took ${r.ms} ms`);
});

test('a run past its memory limit is killed and reported', async () => {
  const r = await runWatched(slow, { timeoutMs: 60_000, maxRssBytes: 8 * 1024 ** 2 }, join(scratch, 'c'));
  assert.equal(r.overMemory, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.ok(r.peakRssBytes > 8 * 1024 ** 2);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseTrace, readTrace, TraceWriter, TRACE_FORMAT } from '../../cli/monitor/trace.js';
import { ReplaySource } from '../../cli/monitor/sources.js';
import { makeGpu, makeSnapshot } from './synthetic.js';

test('a recorded trace reads back as the same snapshots', () => {
  const path = join(mkdtempSync(join(tmpdir(), 'xllama-trace-')), 't.jsonl');
  const snaps = [1, 2, 3].map((i) => makeSnapshot([makeGpu({ gpm: { smActivity: i * 10 } })], i));
  const w = new TraceWriter(path, 500);
  snaps.forEach((s) => w.write(s));
  w.close();
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  assert.equal(lines.length, 4);
  assert.equal(JSON.parse(lines[0]).format, TRACE_FORMAT);
  const trace = readTrace(path);
  assert.equal(trace.header.intervalMs, 500);
  assert.deepEqual(trace.snapshots, snaps);
});

test('bad traces are one-line errors naming the file and line', () => {
  const header = JSON.stringify({ format: TRACE_FORMAT, version: 1, recordedAt: 'x', intervalMs: 250 });
  assert.throws(() => parseTrace('', 'a.jsonl'), /a\.jsonl: empty trace/);
  assert.throws(() => parseTrace('{"hello":1}\n', 'a.jsonl'), /a\.jsonl:1: not an xllama GPU trace/);
  assert.throws(() => parseTrace(`${header}\n{oops\n`, 'a.jsonl'), /a\.jsonl:2: not valid JSON/);
  assert.throws(() => parseTrace(`${header}\n{"time":1}\n`, 'a.jsonl'), /a\.jsonl:2: not a GPU snapshot/);
  assert.throws(() => parseTrace(`${header}\n`, 'a.jsonl'), /header but no snapshots/);
  assert.throws(() => parseTrace(header.replace('"version":1', '"version":7'), 'a.jsonl'), /version 7 is not supported/);
  assert.throws(() => readTrace('/nonexistent/t.jsonl'), /--replay \/nonexistent\/t\.jsonl: no such file/);
  assert.throws(() => readTrace('/dev/zero'), /: --replay \/dev\/zero: not a regular file$/);
  assert.throws(() => new TraceWriter('/nonexistent/dir/t.jsonl', 500), /--record \/nonexistent\/dir\/t\.jsonl: cannot create/);
});

test('replay keeps the recorded pace (scaled by speed) and pauses', async () => {
  const snaps = [0, 1, 2].map((i) => ({ ...makeSnapshot([makeGpu()], i + 1), time: 1000 + i * 200 }));
  const source = new ReplaySource(snaps, 2); // 200 ms apart at x2 -> ~100 ms
  const seen: number[] = [];
  const started = Date.now();
  await new Promise<void>((resolve) => source.start((s) => seen.push(s.seq), resolve));
  const elapsed = Date.now() - started;
  assert.deepEqual(seen, [1, 2, 3]);
  assert.ok(elapsed >= 190 && elapsed < 1500, `took ${elapsed} ms`);

  const paused = new ReplaySource(snaps, Infinity);
  const got: number[] = [];
  paused.start((s) => {
    got.push(s.seq);
    if (s.seq === 1) paused.setPaused(true);
  }, () => got.push(-1));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(got, [1]);
  await new Promise<void>((resolve) => {
    paused.setPaused(false);
    setTimeout(resolve, 50);
  });
  assert.deepEqual(got, [1, 2, 3, -1]);
});

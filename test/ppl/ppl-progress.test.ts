// ppl's stderr progress: a live line on a terminal (never wider than it), plain lines elsewhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PplProgressReporter, formatEta } from '../../cli/commands/ppl-progress.js';

function stream(isTTY: boolean, columns = 80) {
  const writes: string[] = [];
  return { writes, out: { isTTY, columns, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream };
}

const step = (done: number, ppl: number) => ({ done, total: 40, ppl, elapsedMs: done * 500, evaluatedTokens: done * 2047, etaMs: (40 - done) * 500 });

test('a terminal gets one live line with the newest running values that fit, then the whole list', () => {
  const { writes, out } = stream(true);
  const p = new PplProgressReporter(out);
  for (let i = 1; i <= 12; i++) p.update(step(i, 5 + i / 100));
  const last = writes[writes.length - 1];
  assert.ok(last.startsWith('\r\x1b[K12/40 chunks · 4,094 tok/s · ETA 14 s · '), JSON.stringify(last));
  assert.ok(last.length - '\r\x1b[K'.length < 80, `${last.length}`);
  assert.ok(last.endsWith(' · [10]5.1000,[11]5.1100,[12]5.1200'), JSON.stringify(last));
  p.finish();
  const values = Array.from({ length: 12 }, (_, i) => `[${i + 1}]${(5 + (i + 1) / 100).toFixed(4)}`).join(',');
  assert.equal(writes[writes.length - 1], `\r\x1b[K${values}\n`);
});

test('a pipe gets one plain line per chunk and nothing at the end', () => {
  const { writes, out } = stream(false);
  const p = new PplProgressReporter(out);
  p.update(step(1, 6.5));
  p.update(step(2, 6.25));
  p.finish();
  assert.deepEqual(writes, ['[1]6.5000 · 1/40 chunks · 4,094 tok/s · ETA 20 s\n', '[2]6.2500 · 2/40 chunks · 4,094 tok/s · ETA 19 s\n']);
  assert.equal(formatEta(125_000), '2:05');
});

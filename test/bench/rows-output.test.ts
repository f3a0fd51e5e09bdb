// A child's messages become rows whatever becomes of it, and the renderings say so: configuration failures
// shown once per configuration in the table and Markdown, CSV quoting, split memory per stage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planTests } from '../../cli/engine/benchmark.js';
import { ConfigurationRows, type BenchRow, type Configuration } from '../../cli/bench/rows.js';
import { createWriter, csvCell, formatCount, formatMemory, renderMarkdown } from '../../cli/bench/output.js';

const CONFIG: Configuration = { label: 'm', modelPath: '/m', dummy: null, backend: 'cuda', split: 'none', gpus: null };
const TESTS = planTests([512], [128], [0, 2048]);  // pp512, pp512@d2048, tg128, tg128@d2048
const RUN = { version: '9.9.9', commit: 'abc1234', driver: '580.1', repetitions: 2, engineSampleIntervalMs: 100, enginesUnavailable: null };
const SYS = { gpus: [{ index: 0, name: 'Test GPU' }], gpuNote: null, cuda: '13.0' };

function collect(feed: (rows: ConfigurationRows) => void): BenchRow[] {
  const out: BenchRow[] = [];
  feed(new ConfigurationRows(CONFIG, TESTS, 2, () => null, (r) => out.push(r)));
  return out;
}

test('a child killed mid-test: finished rows stand, the test in flight failed, the rest did not run', () => {
  const rows = collect((c) => {
    c.accept({ type: 'start', test: 'pp512' });
    c.accept({ type: 'result', test: 'pp512', tokensPerSec: [100, 110], startMs: 0, endMs: 1, bytesPerToken: null, bandwidthUse: null });
    c.accept({ type: 'start', test: 'pp512@d2048' });
    c.close('crashed (SIGSEGV)');
    assert.equal(c.failed, 3);
  });
  assert.deepEqual(rows.map((r) => [r.test, r.status, r.message]), [
    ['pp512', 'ok', null],
    ['pp512@d2048', 'failed', 'crashed (SIGSEGV)'],
    ['tg128', 'not-run', 'crashed (SIGSEGV), during an earlier test'],
    ['tg128@d2048', 'not-run', 'crashed (SIGSEGV), during an earlier test'],
  ]);
  assert.deepEqual(rows[0].tokensPerSec, { mean: 105, sd: Math.sqrt(50), samples: [100, 110] });
});

test('a configuration that never loaded fails every test; a clean exit that skipped a test still reports it', () => {
  assert.deepEqual(collect((c) => c.close('out of GPU memory')).map((r) => r.status), ['failed', 'failed', 'failed', 'failed']);
  const rows = collect((c) => {
    c.accept({ type: 'skipped', test: 'pp512@d2048', message: 'does not fit' });
    c.close(null);
  });
  assert.deepEqual(rows.map((r) => [r.test, r.status]),
    [['pp512@d2048', 'skipped'], ['pp512', 'failed'], ['tg128', 'failed'], ['tg128@d2048', 'failed']]);
});

test('Markdown: a failed configuration is one row listing its tests; pipes in messages are escaped', () => {
  const rows = collect((c) => c.close('bad | thing'));
  const md = renderMarkdown(rows, RUN, SYS).split('\n');
  assert.equal(md[2], '| m |  |  | cuda | none | pp512, pp512@d2048, tg128, tg128@d2048 | failed: bad \\| thing |  |  |  |  |  |  |  |  |');
  assert.ok(md.includes('xllama 9.9.9 (commit abc1234) · GPU 0: Test GPU · NVIDIA driver 580.1 · CUDA 13.0'));
});

test('CSV cells are quoted when they must be; counts and split memory read well', () => {
  assert.equal(csvCell('plain'), 'plain');
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell(null), '');
  assert.equal(formatCount(6_738_415_616), '6.74 B');
  assert.equal(formatCount(260_032), '260.03 K');
  const gib = 2 ** 30;
  assert.equal(formatMemory({ weightsBytes: 3 * gib, kvCacheBytes: gib, scratchBytes: 0, devices: [
    { device: 0, weightsBytes: gib, kvCacheBytes: gib / 2, scratchBytes: 0 },
    { device: 0, weightsBytes: 2 * gib, kvCacheBytes: gib / 2, scratchBytes: 0 },
  ] }), '4.00 GiB (GPU 0 1.50 GiB + GPU 0 2.50 GiB)');
});

test('a measured row shows the engines, the power drawn against the limit and the SM clock (table and CSV)', () => {
  const engines = { samples: 40, smActivity: 98, memoryBandwidth: 71, tensor: 0, powerW: 698.4, powerLimitW: 700,
    smClockMHz: 1705.2, total: { percent: 78, engine: 'compute' as const, label: 'Compute', pipe: null, idle: false } };
  const out: BenchRow[] = [];
  const rows = new ConfigurationRows(CONFIG, TESTS.slice(2, 3), 2, () => engines, (r) => out.push(r));
  rows.accept({ type: 'config', model: 'm', modelPath: '/m', params: 1, backend: 'cuda', maxSeqLen: 4096, loadSeconds: 1,
    memory: { weightsBytes: 1, kvCacheBytes: 0, scratchBytes: 0, devices: [] }, copyBandwidth: [],
    gpus: [{ device: 0, name: 'Test GPU', pciBusId: '0000:3B:00.0' }], cudaRuntime: '13.0', gpuUnavailableReason: null });
  rows.accept({ type: 'start', test: 'tg128' });
  rows.accept({ type: 'result', test: 'tg128', tokensPerSec: [95, 96], startMs: 0, endMs: 9, bytesPerToken: 3.6e10, bandwidthUse: 0.8 });
  rows.close(null);
  const md = renderMarkdown(out, RUN, SYS).split('\n');
  assert.match(md[0], /\| busiest engine \| power \| SM MHz \|$/);
  assert.match(md[2], /\| 80\.0% \| 98% \| 71% \| 0% \| 78% Compute \| 698\/700 W \| 1705 \|$/);
  let csv = '';
  const writer = createWriter('csv', RUN, (t) => { csv += t; });
  for (const r of out) writer.row(r);
  writer.finish(SYS);
  const [head, line] = csv.trim().split('\n').map((l) => l.split(','));
  assert.equal(line[head.indexOf('power_w')], '698.4');
  assert.equal(line[head.indexOf('power_limit_w')], '700');
  assert.equal(line[head.indexOf('sm_clock_mhz')], '1705.2');
});

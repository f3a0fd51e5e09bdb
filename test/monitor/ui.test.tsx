// The Ink panel rendered from the fixture trace with ink-testing-library.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { render } from 'ink-testing-library';
import { MonitorModel, type MonitorView } from '../../cli/monitor/aggregate.js';
import { readTrace } from '../../cli/monitor/trace.js';
import { ReplaySource } from '../../cli/monitor/sources.js';
import { MonitorSession } from '../../cli/monitor/session.js';
import { MonitorScreen } from '../../cli/ui/monitor-screen.js';
import { GpuMonitorApp } from '../../cli/ui/gpu-monitor-app.js';
import { fixtures } from '../helpers/run-cli.js';

const trace = readTrace(join(fixtures, 'monitor', 'synthetic-trace.jsonl'));
const TENSOR_PHASE = 6; // snapshot index inside the tensor-core phase (see fixtures/monitor/README.md)
const TRICKLE_PHASE = 12;
const IDLE_PHASE = 1;

function viewAt(index: number): MonitorView {
  const model = new MonitorModel();
  let view: MonitorView | null = null;
  for (const s of trace.snapshots.slice(0, index + 1)) view = model.update(s);
  return view!;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rowOf(frame: string, label: string): string {
  const row = frame.split('\n').find((l) => l.startsWith(`║${label} `) || l.startsWith(`│${label} `));
  assert.ok(row, `no row for ${label} in:\n${frame}`);
  return row;
}

test('each GPU card shows engine bars, %, Total named and legacy GPU-Util', () => {
  const raw = trace.snapshots[TENSOR_PHASE].gpus[0].gpm;
  const { lastFrame } = render(<MonitorScreen view={viewAt(TENSOR_PHASE)} selected={0} paused={false} rateLabel="replay x1" columns={100} rows={60} />);
  const frame = lastFrame()!;
  assert.match(frame, /^xllama gpu-monitor · driver 550\.00 \(synthetic\) +replay x1$/m);
  assert.match(frame, /GPU 0 · NVIDIA H100 80GB HBM3 \(synthetic\)/);
  assert.match(frame, /GPU 1 · NVIDIA A10G \(synthetic\)/);
  assert.ok(frame.includes(`Total ${Math.round(raw.tensorActivity!)}% · Tensor`), frame);
  assert.match(frame, /GPU-Util \(NVML\) 100%/);
  // Compute is the busiest SM pipe (integer here), named; SM activity and occupancy are a detail line.
  assert.match(rowOf(frame, 'Compute'), /^[│║]Compute \(INT\) /);
  assert.ok(frame.includes(`SMs active ${Math.round(raw.smActivity!)}% · occupancy ${Math.round(raw.smOccupancy!)}%`), frame);
  for (const [label, value] of [['Tensor', raw.tensorActivity!], ['Compute', raw.integer!], ['Memory bandwidth', raw.dramBandwidth!]] as const) {
    const row = rowOf(frame, label);
    assert.ok(row.includes(`${Math.round(value)}%`), row);
    const filled = [...row].filter((c) => c === '█').length;
    const empty = [...row].filter((c) => c === '░').length;
    assert.ok(Math.abs(filled / (filled + empty) - value / 100) <= 1 / (filled + empty), `${label}: ${filled}/${filled + empty} for ${value}%`);
  }
  assert.match(rowOf(frame, 'Video encode'), /n\/a/);
  assert.match(frame, /Memory 32\.6 GiB \/ 79\.6 GiB · Power 655 \/ 700 W · SM 1980 MHz · Mem 2619 MHz/);
  assert.match(frame, /4242 python3/);
  assert.match(frame, /~ coarse NVML counter; no GPM: GPM metrics need a Hopper or newer data-center GPU/);
  assert.match(frame, /q quit · p pause · \+\/- interval · tab next GPU/);
});

test('the disagreement flag shows when GPU-Util says busy and the engines say idle', () => {
  const { lastFrame } = render(<MonitorScreen view={viewAt(TRICKLE_PHASE)} selected={0} paused={false} rateLabel="x" columns={100} rows={60} />);
  assert.match(lastFrame()!, /Total \d% · Compute \(INT\) {3}GPU-Util \(NVML\) 100% \(!\) disagrees with Total/);
  assert.doesNotMatch(viewAt(TENSOR_PHASE).gpus[0].disagreement ? 'flagged' : '', /flagged/);
});

test('an idle GPU reads "Total 0% · idle", naming no engine', () => {
  const { lastFrame } = render(<MonitorScreen view={viewAt(IDLE_PHASE)} selected={0} paused={false} rateLabel="x" columns={100} rows={60} />);
  const frame = lastFrame()!;
  assert.match(frame, /Total 0% · idle {3}GPU-Util \(NVML\) 0%/);
  assert.match(frame, /SMs active 0% · occupancy 0%/);
  assert.match(rowOf(frame, 'Compute'), /^[│║]Compute {2,}/, 'no pipe named when Compute is idle');
});

test('a short terminal keeps the selected GPU full and the others compact', () => {
  const { lastFrame } = render(<MonitorScreen view={viewAt(TENSOR_PHASE)} selected={1} paused={false} rateLabel="x" columns={100} rows={24} />);
  const frame = lastFrame()!;
  assert.equal(frame.split('\n').filter((l) => /^[│║]Tensor /.test(l)).length, 1, 'one card shows engine rows');
  assert.match(frame, /Total 88% · Tensor/);
  assert.match(frame, /Total 62% · Video decode/);
});

test('the app follows a replayed session; p pauses, tab moves between GPUs', async () => {
  const session = new MonitorSession(new ReplaySource(trace.snapshots, 1000));
  const app = render(<GpuMonitorApp session={session} />);
  const ended = new Promise<void>((resolve) => session.onEnd(resolve));
  session.start();
  await ended;
  await delay(50);
  let frame = app.lastFrame()!;
  assert.match(frame, /Total 87% · Copy/);
  assert.match(frame, /replay x1000 · end of trace/);
  assert.match(frame, /╔/); // the selected card (GPU 0) has a double border
  assert.ok(frame.indexOf('╔') < frame.indexOf('GPU 1'));

  app.stdin.write('\t');
  await delay(50);
  frame = app.lastFrame()!;
  assert.ok(frame.indexOf('╔') > frame.indexOf('GPU 0 ·'), 'tab selects GPU 1');

  app.stdin.write('p');
  await delay(50);
  assert.match(app.lastFrame()!, /PAUSED/);
  app.stdin.write('-');
  await delay(50);
  assert.match(app.lastFrame()!, /replay x500/);
  app.unmount();
  session.stop();
});

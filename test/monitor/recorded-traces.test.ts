// Real traces recorded on an H100 (scripts/device/record-monitor-traces.sh, adopted into
// fixtures/monitor/h100-{tensor,memory,idle,fp32}.jsonl by scripts/adopt-monitor-traces.sh): the engine that
// leads must match the load that ran, legacy GPU-Util must read near 100% under the loads, and the idle
// GPU's Total must name no engine. Each is skipped until its trace exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MonitorModel, type GpuView } from '../../cli/monitor/aggregate.js';
import type { EngineId } from '../../cli/monitor/engines.js';
import { formatTotal } from '../../cli/monitor/format.js';
import { readTrace } from '../../cli/monitor/trace.js';
import { fixtures } from '../helpers/run-cli.js';

/** GPU 0's views for the samples where GPM had an interval (the first pass only primes it). */
function gpmViews(path: string): GpuView[] {
  const model = new MonitorModel();
  return readTrace(path).snapshots.map((s) => model.update(s).gpus[0]).filter((g) => g.gpmReady);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function summary(views: GpuView[]) {
  const ids = views[0].engines.map((e) => e.id);
  const engines = ids
    .map((id) => ({ id, mean: mean(views.map((v) => v.engines.find((e) => e.id === id)!.percent ?? 0)) }))
    .sort((a, b) => b.mean - a.mean);
  const legacy = views.map((v) => v.legacyUtil).filter((v): v is number => v !== null);
  return { lead: engines[0], engines, legacy: legacy.length ? mean(legacy) : null };
}

function fixture(name: string): { path: string; skip: string | false } {
  const path = join(fixtures, 'monitor', name);
  return { path, skip: existsSync(path) ? false : `${name} not recorded yet (scripts/adopt-monitor-traces.sh)` };
}

const loads: [string, EngineId[]][] = [
  ['h100-tensor.jsonl', ['tensor', 'compute']],
  ['h100-memory.jsonl', ['memory']],
  ['h100-fp32.jsonl', ['compute']],
];
for (const [name, leads] of loads) {
  const { path, skip } = fixture(name);
  test(`recorded ${name}: ${leads.join(' or ')} leads, legacy GPU-Util reads >= 90%`, { skip }, () => {
    const views = gpmViews(path);
    assert.ok(views.length >= 10, `${views.length} GPM samples`);
    const m = summary(views);
    assert.ok(leads.includes(m.lead.id), `lead ${m.lead.id} (${JSON.stringify(m.engines)})`);
    assert.ok(m.legacy !== null && m.legacy >= 90, `legacy GPU-Util ${m.legacy}`);
    const named = views.filter((v) => v.total?.engine != null && leads.includes(v.total.engine));
    assert.ok(named.length >= 0.8 * views.length, `Total named ${leads.join('/')} in ${named.length}/${views.length}`);
  });
}

{
  const { path, skip } = fixture('h100-fp32.jsonl');
  test('recorded h100-fp32.jsonl: Total names the FP32 pipe ("Compute (FP32)")', { skip }, () => {
    const views = gpmViews(path);
    const fp32 = views.filter((v) => /^Total \d+% · Compute \(FP32\)$/.test(formatTotal(v))).length;
    assert.ok(fp32 >= 0.8 * views.length, `"Compute (FP32)" in ${fp32}/${views.length}: ${views.map(formatTotal).join(', ')}`);
  });
}

{
  const { path, skip } = fixture('h100-memory.jsonl');
  test('recorded h100-memory.jsonl: SM activity reads busy but is shown as detail, not as Compute', { skip }, () => {
    const views = gpmViews(path);
    const active = mean(views.map((v) => v.smActivity ?? 0));
    const compute = mean(views.map((v) => v.engines.find((e) => e.id === 'compute')!.percent ?? 0));
    const memory = mean(views.map((v) => v.engines.find((e) => e.id === 'memory')!.percent ?? 0));
    // A streaming copy keeps warps resident on every SM while they wait on DRAM.
    assert.ok(active >= 50, `SM activity ${active}%`);
    assert.ok(compute < memory, `Compute ${compute}% vs Memory bandwidth ${memory}%`);
  });
}

{
  const { path, skip } = fixture('h100-idle.jsonl');
  test('recorded h100-idle.jsonl: Total reads "0% · idle", naming no engine', { skip }, () => {
    const views = gpmViews(path);
    assert.ok(views.length >= 10, `${views.length} GPM samples`);
    const notIdle = views.filter((v) => !v.total?.idle).map((v) => `${formatTotal(v)} (${v.total?.percent})`);
    assert.deepEqual(notIdle, [], 'every sample idle');
    const zero = views.filter((v) => formatTotal(v) === 'Total 0% · idle').length;
    assert.ok(zero >= 0.9 * views.length, `"Total 0% · idle" in ${zero}/${views.length}`);
    assert.ok(views.every((v) => v.total!.engine === null && v.total!.label === null));
  });
}

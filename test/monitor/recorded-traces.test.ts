// Real traces recorded on a GPU (scripts/device/record-monitor-traces.sh, copied to
// fixtures/monitor/h100-{tensor,memory,idle}.jsonl): the engine that leads must match the load that
// ran, and legacy GPU-Util must read near 100% under both loads. Skipped until the traces exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MonitorModel } from '../../cli/monitor/aggregate.js';
import type { EngineId } from '../../cli/monitor/engines.js';
import { readTrace } from '../../cli/monitor/trace.js';
import { fixtures } from '../helpers/run-cli.js';

function meansOf(path: string) {
  const model = new MonitorModel();
  const sums = new Map<EngineId, number[]>();
  const legacy: number[] = [];
  for (const snap of readTrace(path).snapshots) {
    const gpu = model.update(snap).gpus[0];
    if (!gpu.gpmReady) continue;
    for (const e of gpu.engines) if (e.percent !== null) sums.set(e.id, [...(sums.get(e.id) ?? []), e.percent]);
    if (gpu.legacyUtil !== null) legacy.push(gpu.legacyUtil);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const engines = [...sums].map(([id, xs]) => ({ id, mean: mean(xs) })).sort((a, b) => b.mean - a.mean);
  return { lead: engines[0], engines, legacy: mean(legacy), samples: legacy.length };
}

const cases: { name: string; leads: EngineId[] | null; legacyMin: number | null }[] = [
  { name: 'h100-tensor.jsonl', leads: ['compute', 'tensor'], legacyMin: 90 },
  { name: 'h100-memory.jsonl', leads: ['memory'], legacyMin: 90 },
  { name: 'h100-idle.jsonl', leads: null, legacyMin: null },
];

for (const c of cases) {
  const path = join(fixtures, 'monitor', c.name);
  test(`recorded ${c.name}: the leading engine matches the load`, { skip: existsSync(path) ? false : `${c.name} not recorded yet` }, () => {
    const m = meansOf(path);
    assert.ok(m.samples >= 10, `${m.samples} GPM samples`);
    if (c.leads) assert.ok(c.leads.includes(m.lead.id), `lead ${m.lead.id} (${JSON.stringify(m.engines)})`);
    if (c.legacyMin !== null) assert.ok(m.legacy >= c.legacyMin, `legacy GPU-Util ${m.legacy}`);
    if (c.leads === null) assert.ok(m.lead.mean < 10, `idle GPU busiest engine ${m.lead.id} at ${m.lead.mean}%`);
  });
}

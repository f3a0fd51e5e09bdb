#!/usr/bin/env node
// Summarizes recorded gpu-monitor traces with xllama's own aggregation (dist/cli/monitor):
// mean % per engine, mean SM activity/occupancy and SM pipes, mean legacy GPU-Util, which engine leads,
// how often each engine was Total, and the collector's own cost per sampling pass.
//   node scripts/device/summarize-trace.mjs TRACE.jsonl [--expect-lead compute,tensor] [--expect-legacy-min 90]
//                                           [--expect-idle] [--frame FILE]
// With --expect-*, prints "check: PASS|FAIL ..." lines and exits 3 when a check fails. --expect-lead and
// --expect-legacy-min judge the busiest GPU; --expect-idle wants Total to read idle in every sample of
// every GPU.
// --frame FILE writes the interactive panel as it looks at the end of the trace (100 columns, no colour).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { parseTrace } = await import(join(root, 'dist/cli/monitor/trace.js'));
const { MonitorModel } = await import(join(root, 'dist/cli/monitor/aggregate.js'));

const args = process.argv.slice(2);
const file = args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
if (!file) {
  console.error('usage: summarize-trace.mjs TRACE.jsonl [--expect-lead id,id] [--expect-legacy-min N]');
  process.exit(2);
}
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const expectLead = opt('--expect-lead')?.split(',');
const frameFile = opt('--frame');
const expectLegacyMin = opt('--expect-legacy-min') === undefined ? undefined : Number(opt('--expect-legacy-min'));
const expectIdle = args.includes('--expect-idle');
const { formatTotal } = await import(join(root, 'dist/cli/monitor/format.js'));

let trace;
try {
  trace = parseTrace(readFileSync(file, 'utf8'), file);
} catch (err) {
  console.error(`summarize-trace: ${err.message}`);
  process.exit(2);
}
const model = new MonitorModel();
const perGpu = new Map();
const costs = [];
let lastView = null;
for (const snap of trace.snapshots) {
  costs.push(snap.sampleCostMs);
  const view = model.update(snap);
  lastView = view;
  for (const g of view.gpus) {
    if (!perGpu.has(g.index)) {
      perGpu.set(g.index, { name: g.name, engines: new Map(), legacy: [], totals: new Map(), disagree: 0, n: 0, idle: 0,
        sm: { active: [], occupancy: [] }, pipes: new Map() });
    }
    const acc = perGpu.get(g.index);
    if (g.unavailable.gpm?.startsWith('waiting')) continue; // GPM warm-up: no interval yet
    acc.n++;
    for (const e of g.engines) {
      if (!acc.engines.has(e.id)) acc.engines.set(e.id, { label: e.label, values: [], sources: new Set() });
      const ea = acc.engines.get(e.id);
      if (e.percent !== null) ea.values.push(e.percent);
      ea.sources.add(e.source);
    }
    if (g.legacyUtil !== null) acc.legacy.push(g.legacyUtil);
    if (g.total) {
      // "Compute (FP32)", "Memory bandwidth", or "idle": what the Total line named.
      const named = formatTotal(g).replace(/^Total [^·]*· /, '');
      acc.totals.set(named, (acc.totals.get(named) ?? 0) + 1);
      if (g.total.idle) acc.idle++;
    }
    if (g.disagreement) acc.disagree++;
    if (g.smActivity !== null) acc.sm.active.push(g.smActivity);
    if (g.smOccupancy !== null) acc.sm.occupancy.push(g.smOccupancy);
    const raw = snap.gpus.find((x) => x.index === g.index).gpm;
    for (const [pipe, v] of [['FP32', raw.fp32], ['FP16', raw.fp16], ['FP64', raw.fp64], ['INT', raw.integer]]) {
      if (typeof v === 'number') acc.pipes.set(pipe, [...(acc.pipes.get(pipe) ?? []), v]);
    }
  }
}

const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
const fmt = (v) => (v === null ? '  n/a' : `${v.toFixed(1).padStart(5)}%`);
const spanS = (trace.snapshots.at(-1).time - trace.snapshots[0].time) / 1000;
console.log(`${file}: ${trace.snapshots.length} snapshots over ${spanS.toFixed(1)} s (interval ${trace.header.intervalMs} ms)`);
const meanCost = mean(costs.filter((c) => typeof c === 'number'));
if (meanCost !== null) {
  console.log(`  collector: ${meanCost.toFixed(2)} ms per sampling pass (${((100 * meanCost) / trace.header.intervalMs).toFixed(2)}% of the interval on its thread)`);
}
// The --expect checks judge the GPU that was busiest (highest mean Total), the one running the load.
const meanTotal = (acc) => mean([...acc.engines.values()].map((e) => mean(e.values) ?? 0));
const busiest = [...perGpu.entries()].sort((a, b) => meanTotal(b[1]) - meanTotal(a[1]))[0]?.[0];
let failed = false;
for (const [index, acc] of perGpu) {
  console.log(`  GPU ${index}: ${acc.name} (${acc.n} samples)`);
  let lead = null;
  for (const [id, ea] of acc.engines) {
    const m = mean(ea.values);
    if (m !== null && (lead === null || m > lead.mean)) lead = { id, label: ea.label, mean: m };
    console.log(`    ${ea.label.padEnd(17)} ${fmt(m)}  (${[...ea.sources].join('/')})`);
  }
  const legacy = mean(acc.legacy);
  console.log(`    ${'GPU-Util (NVML)'.padEnd(17)} ${fmt(legacy)}`);
  if (acc.sm.active.length || acc.sm.occupancy.length) {
    console.log(`    SM activity ${fmt(mean(acc.sm.active))} · occupancy ${fmt(mean(acc.sm.occupancy))} (detail, not an engine)`);
    console.log(`    SM pipes: ${[...acc.pipes].map(([p, xs]) => `${p} ${fmt(mean(xs)).trim()}`).join(' · ') || 'n/a'}`);
  }
  console.log(`    leads: ${lead ? `${lead.label} (${lead.mean.toFixed(1)}%)` : 'n/a'}; Total named: ${[...acc.totals].map(([k, v]) => `${k} x${v}`).join(', ') || 'n/a'}; disagreement flagged in ${acc.disagree}/${acc.n}`);
  if (expectLead && index === busiest) {
    const ok = lead !== null && expectLead.includes(lead.id);
    failed ||= !ok;
    console.log(`    check: ${ok ? 'PASS' : 'FAIL'} leading engine ${lead?.id ?? 'n/a'} in {${expectLead.join(', ')}}`);
  }
  if (expectLegacyMin !== undefined && index === busiest) {
    const ok = legacy !== null && legacy >= expectLegacyMin;
    failed ||= !ok;
    console.log(`    check: ${ok ? 'PASS' : 'FAIL'} mean GPU-Util ${legacy?.toFixed(1) ?? 'n/a'}% >= ${expectLegacyMin}%`);
  }
  if (expectIdle) {
    const ok = acc.n > 0 && acc.idle === acc.n;
    failed ||= !ok;
    console.log(`    check: ${ok ? 'PASS' : 'FAIL'} Total reads "idle" in ${acc.idle}/${acc.n} samples`);
  }
}
if (frameFile) {
  const { default: React } = await import('react');
  const { renderToString } = await import('ink');
  const { MonitorScreen } = await import(join(root, 'dist/cli/ui/monitor-screen.js'));
  const frame = renderToString(
    React.createElement(MonitorScreen, {
      view: lastView, selected: 0, paused: false, rateLabel: `every ${trace.header.intervalMs} ms`, columns: 100, rows: 60,
    }),
    { columns: 100 },
  );
  writeFileSync(frameFile, `${frame}\n`);
  console.log(`  panel frame at the end of the trace: ${frameFile}`);
}
process.exit(failed ? 3 : 0);

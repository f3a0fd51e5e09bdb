// `xllama generate` on a GPU: greedy text and ids against llama2.c / reference.json, seeded sampling on the
// device (forwardSample) and on the host, stop strings. Writes $OUT/generate-<backend>.json and prints it.
//   node scripts/device/check-generate.mjs [--backend cuda|cpu]
// An fp16-activation backend may leave the fp32 greedy path at a near-tie, so the report gives the length
// of the common prefix and the top-2 margin there instead of failing on the first difference.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'cuda';
const out = process.env.OUT ?? '.';
mkdirSync(out, { recursive: true });
const model = 'fixtures/models/stories260K';
const prompt = 'Once upon a time';
const expected = readFileSync(join(model, 'llama2c_expected_greedy_200.txt'), 'utf8');
const ref = JSON.parse(readFileSync(join(model, 'reference.json'), 'utf8'));
const greedy201 = ref.sequences.find((s) => s.name === 'greedy201').ids;

function cli(extra) {
  const r = spawnSync(process.execPath, ['bin/xllama.js', 'generate', '-m', model, '--backend', backend, '-p', prompt, ...extra],
    { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function commonPrefix(a, b) {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
function json(extra) {
  const r = cli([...extra, '--json']);
  if (r.status !== 0) return { error: r.stderr.trim(), status: r.status };
  return JSON.parse(r.stdout);
}

const report = { backend };
const text = cli(['-n', '196', '--temperature', '0']);
report.greedyText = {
  status: text.status, stderr: text.stderr.trim(),
  equalsLlama2c: prompt + text.stdout === `${expected}\n`,
  commonPrefixChars: commonPrefix(prompt + text.stdout, expected), expectedChars: expected.length,
};
const g = json(['-n', '200', '--temperature', '0']);
report.greedyIds = g.error ? g : {
  promptIdsMatch: JSON.stringify(g.promptIds) === JSON.stringify(greedy201.slice(0, 5)),
  commonPrefixWithReference: commonPrefix(g.generatedIds, greedy201.slice(5)), referenceLength: 196,
  timings: g.timings,
};
// temperature + top-k only → the pick happens on the device with the host's uniform numbers.
const dev = [json(['-n', '100', '--temperature', '1', '--top-k', '0', '--top-p', '1', '--min-p', '0', '--seed', '7']),
  json(['-n', '100', '--temperature', '1', '--top-k', '0', '--top-p', '1', '--min-p', '0', '--seed', '7']),
  json(['-n', '100', '--temperature', '1', '--top-k', '0', '--top-p', '1', '--min-p', '0', '--seed', '8'])];
report.deviceSampling = dev.some((d) => d.error) ? dev : {
  sameSeedSameIds: JSON.stringify(dev[0].generatedIds) === JSON.stringify(dev[1].generatedIds),
  otherSeedDiffers: JSON.stringify(dev[0].generatedIds) !== JSON.stringify(dev[2].generatedIds),
  sample: dev[0].text.slice(0, 200),
};
// The default sampling (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05): picked on the device, against the host
// sampler on the same seed (a typical-p a hair under 1 keeps the pick on the host and drops nothing it would keep).
const defaults = [json(['-n', '100', '--seed', '7']), json(['-n', '100', '--seed', '7', '--typical-p', '0.999999999'])];
report.defaultSampling = defaults.some((d) => d.error) ? defaults : {
  deviceEqualsHost: commonPrefix(defaults[0].generatedIds, defaults[1].generatedIds) === defaults[1].generatedIds.length,
  commonPrefix: commonPrefix(defaults[0].generatedIds, defaults[1].generatedIds),
  deviceTimings: defaults[0].timings, hostTimings: defaults[1].timings,
};
// Penalties, sampled and greedy: picked on the device from the token history it keeps, against the host sampler.
const penaltyCases = {
  sampled: ['-n', '100', '--seed', '7', '--repeat-penalty', '1.1', '--frequency-penalty', '0.3', '--presence-penalty', '0.2'],
  greedy: ['-n', '100', '--temperature', '0', '--repeat-penalty', '1.3'],
};
report.penaltySampling = {};
for (const [name, flags] of Object.entries(penaltyCases)) {
  const runs = [json(flags), json(flags), json([...flags, '--typical-p', '0.999999999'])];
  report.penaltySampling[name] = runs.some((d) => d.error) ? runs : {
    sameSeedSameIds: JSON.stringify(runs[0].generatedIds) === JSON.stringify(runs[1].generatedIds),
    deviceEqualsHost: commonPrefix(runs[0].generatedIds, runs[2].generatedIds) === runs[2].generatedIds.length,
    commonPrefix: commonPrefix(runs[0].generatedIds, runs[2].generatedIds),
    deviceTimings: runs[0].timings, hostTimings: runs[2].timings,
  };
}
const stop = json(['-n', '100', '--temperature', '0', '--stop', 'red ball']);
report.stopString = stop.error ? stop : { stopReason: stop.stopReason, text: stop.text };

const file = join(out, `generate-${backend}.json`);
writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
console.log(JSON.stringify(report, null, 2));

// `npm run fuzz -- --seed S --n N [--first I] [--case I] [--keep] [--jobs J] [--backend cpu|cuda]`: a fuzz campaign over the
// fixture models through the real CLI. Prints each failing case with the command that reproduces it, then a
// summary; exits 1 when any case broke the contract.
import { describeFailure, runCampaign, type CaseReport } from './campaign.js';

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: npm run fuzz -- --seed S --n N [--first I] [--case I] [--keep] [--jobs J] [--backend cpu|cuda]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]) {
  const opts = { seed: 1, first: 0, n: 100, keep: false, jobs: 2, backend: 'cpu' as 'cpu' | 'cuda' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (flag === '--keep') {
      opts.keep = true;
      continue;
    }
    if (flag === '--backend') {
      const b = argv[++i];
      if (b !== 'cpu' && b !== 'cuda') usage('--backend is cpu or cuda');
      opts.backend = b;
      continue;
    }
    const value = Number(argv[++i]);
    if (!Number.isSafeInteger(value) || value < 0) usage(`${flag} needs a non-negative integer`);
    if (flag === '--seed') opts.seed = value;
    else if (flag === '--n') opts.n = value;
    else if (flag === '--first') opts.first = value;
    else if (flag === '--case') Object.assign(opts, { first: value, n: 1 });
    else if (flag === '--jobs') opts.jobs = Math.max(1, value);
    else usage(`unknown flag ${flag}`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const started = performance.now();
let done = 0;
const { root, reports } = await runCampaign({
  seed: opts.seed, first: opts.first, n: opts.n, keep: opts.keep, concurrency: opts.jobs, backend: opts.backend,
  onCase: (r: CaseReport) => {
    done++;
    if (r.violations.length > 0) process.stdout.write(`${describeFailure(r)}\n`);
    else if (opts.n === 1) process.stdout.write(`case ${r.fuzzCase.index}: ${r.fuzzCase.what.join('; ')}\n${r.runs.map((run) =>
      `  ${run.args[0]} exit ${run.status}: ${(run.stderr || run.stdout).trim().split('\n')[0]}`).join('\n')}\n`);
    if (done % 50 === 0) process.stderr.write(`${done}/${opts.n} cases\n`);
  },
});
const runs = reports.flatMap((r) => r.runs);
const failed = reports.filter((r) => r.violations.length > 0);
const byExit = new Map<string, number>();
for (const r of runs) byExit.set(`${r.args[0]} ${r.status ?? r.signal}`, (byExit.get(`${r.args[0]} ${r.status ?? r.signal}`) ?? 0) + 1);
const peak = Math.max(...runs.map((r) => r.peakRssBytes));
const slowest = Math.max(...runs.map((r) => r.ms));
process.stdout.write(`seed ${opts.seed}, cases ${opts.first}..${opts.first + opts.n - 1}: ${failed.length} failing; ` +
  `${runs.length} runs (${[...byExit].sort().map(([k, v]) => `${k}: ${v}`).join(', ')}); ` +
  `peak memory ${(peak / 1024 ** 2).toFixed(0)} MiB, slowest run ${(slowest / 1000).toFixed(1)} s, ` +
  `total ${((performance.now() - started) / 1000).toFixed(0)} s${opts.keep ? `; folders kept in ${root}` : ''}\n`);
process.exitCode = failed.length > 0 ? 1 : 0;

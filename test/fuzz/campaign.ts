// A fuzz campaign: case i of seed S damages a fresh copy of one fixture model (or the flags of a run), runs
// `xllama info` and `xllama generate` on it under the watchdog (and `xllama chat` where the chat template or its
// tokens were damaged), and checks the contract: exit 0, or exit 2
// with at most 3 lines naming the file, field or flag; never a signal, a timeout, more than 1 GiB, a stack
// trace or an "internal error".
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { CaseBuilder, Picker, pickMutation } from './mutations.js';
import { runWatched, type RunResult, type WatchdogLimits } from './watchdog.js';

export const FIXTURES = ['stories260K', 'stories260K-gptq-4bit-g32', 'stories260K-gptq-4bit-g64-actorder'] as const;

export const DEFAULT_LIMITS: WatchdogLimits = { timeoutMs: 30_000, maxRssBytes: 1024 ** 3 };

/** Files a refusal may name, besides the folder itself, a tensor or a flag. */
const FILE_NAMES = ['config.json', 'generation_config.json', 'model.safetensors', '.safetensors', 'tokenizer.json',
  'tokenizer_config.json', 'quantize_config.json', 'model.safetensors.index.json', 'special_tokens_map.json',
  'chat_template.jinja'];

export interface FuzzCase {
  seed: number;
  index: number;
  fixture: string;
  dir: string;
  what: string[];
  /** The names of the mutations applied (MUTATIONS[].name). */
  kinds: string[];
  infoArgs: string[] | null;
  generateArgs: string[];
  /** chat with stdin closed: it renders the template on a first message, loads, and ends at the input's end. */
  chatArgs: string[] | null;
  /** When set, a refusal must name one of these (a mutated flag); else any file, tensor, flag or the folder. */
  blame: string[];
}

export interface CaseReport {
  fuzzCase: FuzzCase;
  runs: RunResult[];
  violations: string[];
}

/** The case's own seed: the same (seed, index) always builds the same case. */
function caseSeed(seed: number, index: number): number {
  return (seed % 0x100000) * 0x100000000 + index;
}

/** Sampling settings that send the pick through each path: backend greedy, backend top-k, host filters. */
const SAMPLING = [
  ['--temperature', '0'],
  ['--temperature', '0.8', '--top-k', '0'],
  ['--temperature', '0.8', '--top-k', '5', '--top-p', '1', '--min-p', '0'],
  [],
];

/** A file a mutation must not read: it would wait for a writer (a FIFO), never end (/dev/zero) or take GBs. */
function hasUnreadableFile(dir: string): boolean {
  return readdirSync(dir).some((name) => {
    try {
      const st = statSync(join(dir, name));
      return (!st.isFile() && !st.isDirectory()) || st.size > 64 * 1024 * 1024;
    } catch {
      return false; // a dangling link or a loop: reading it fails at once
    }
  });
}

export function buildCase(seed: number, index: number, root: string, backend = 'cpu'): FuzzCase {
  const p = new Picker(caseSeed(seed, index));
  const fixture = p.pick(FIXTURES);
  const dir = join(root, `case-${index}`, fixture);
  mkdirSync(join(root, `case-${index}`), { recursive: true });
  cpSync(join(fixtures, 'models', fixture), dir, {
    recursive: true,
    filter: (src) => !/(reference\.json|calibration\.json|\.txt)$/.test(src),
  });
  const c = new CaseBuilder(dir, p, fixture !== 'stories260K');
  const count = p.chance(0.2) ? 2 : 1;
  const kinds: string[] = [];
  for (let k = 0; k < count; k++) {
    const m = pickMutation(p, c.quantized);
    if (hasUnreadableFile(dir)) {
      c.note(`${m.name}: not applied, a file the first damage left would stall the fuzzer reading it`);
      continue;
    }
    try {
      m.apply(c);
    } catch {
      // A second mutation may need what the first one destroyed (a header to edit, a file to read).
      c.note(`${m.name}: not applicable after the first damage`);
      continue;
    }
    kinds.push(m.name);
    if (!m.flagsOnly) c.filesChanged = true;
  }
  const generateArgs = ['generate', '-m', dir, '-p', c.prompt, '-n', '4', '--backend', backend, '--threads', '1',
    '--seed', String(index), ...p.pick(SAMPLING), ...c.flags];
  const chatArgs = c.runChat ? ['chat', '-m', dir, '-n', '4', '--backend', backend, '--threads', '1'] : null;
  return { seed, index, fixture, dir, what: c.what, kinds, infoArgs: c.runInfo ? ['info', dir] : null, generateArgs,
    chatArgs, blame: c.filesChanged ? [] : c.blame };
}

/** What is wrong with one run, by the contract. */
export function violations(run: RunResult, c: FuzzCase, limits: WatchdogLimits): string[] {
  const out: string[] = [];
  const mib = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MiB`;
  if (run.timedOut) out.push(`no result after ${limits.timeoutMs / 1000} s (killed)`);
  if (run.overMemory) out.push(`killed past ${mib(limits.maxRssBytes)} of memory`);
  else if (run.peakRssBytes > limits.maxRssBytes) out.push(`peak memory ${mib(run.peakRssBytes)}`);
  if (run.signal && !run.timedOut && !run.overMemory) out.push(`ended by ${run.signal}`);
  if (run.status !== null && run.status !== 0 && run.status !== 2) out.push(`exit code ${run.status}`);
  if (/internal error/i.test(run.stderr)) out.push('"internal error"');
  if (/^\s+at .+[:(]\d+/m.test(run.stderr)) out.push('a stack trace');
  if (run.status === 2) {
    const lines = run.stderr.trimEnd().split('\n');
    if (lines.length > 3) out.push(`${lines.length} lines on stderr`);
    if (!lines[0]!.startsWith('xllama: ')) out.push('stderr does not start with "xllama: "');
    const text = run.stderr;
    const named = c.blame.length > 0
      ? c.blame.some((b) => text.includes(b))
      : text.includes(c.dir) || FILE_NAMES.some((f) => text.includes(f)) || /tensor |model\.|lm_head/.test(text) ||
        /(^|[\s(:'])--?[a-z]/.test(text.slice('xllama: '.length));
    if (!named) out.push(`the message names ${c.blame.length ? `none of ${c.blame.join(', ')}` : 'no file, field or flag'}`);
    if (run.args[0] === 'info' && run.stdout !== '') out.push('info printed a report and then failed');
  }
  return out.map((v) => `${run.args[0]}: ${v}`);
}

export interface CampaignOptions {
  seed: number;
  /** Cases [first, first + n). */
  first?: number;
  n: number;
  concurrency?: number;
  limits?: WatchdogLimits;
  /** Keep the mutated folders (they are under the returned root). */
  keep?: boolean;
  /** generate's --backend: cpu (CI), or cuda on a GPU machine. */
  backend?: 'cpu' | 'cuda';
  onCase?: (report: CaseReport) => void;
}

/** Runs the cases on `concurrency` workers (each one CLI process at a time); returns every case's report. */
export async function runCampaign(opts: CampaignOptions): Promise<{ root: string; reports: CaseReport[] }> {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const first = opts.first ?? 0;
  const root = mkdtempSync(join(tmpdir(), 'xllama-fuzz-'));
  const reports: CaseReport[] = [];
  let next = first;
  const worker = async (w: number): Promise<void> => {
    while (next < first + opts.n) {
      const index = next++;
      const fuzzCase = buildCase(opts.seed, index, root, opts.backend);
      const runs: RunResult[] = [];
      const scratch = join(root, `rss-${w}`);
      if (fuzzCase.infoArgs) runs.push(await runWatched(fuzzCase.infoArgs, limits, scratch));
      runs.push(await runWatched(fuzzCase.generateArgs, limits, scratch));
      if (fuzzCase.chatArgs) runs.push(await runWatched(fuzzCase.chatArgs, limits, scratch));
      const report = { fuzzCase, runs, violations: runs.flatMap((r) => violations(r, fuzzCase, limits)) };
      reports.push(report);
      opts.onCase?.(report);
      if (!opts.keep) rmSync(join(root, `case-${index}`), { recursive: true, force: true });
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 2 }, (_, w) => worker(w)));
  if (!opts.keep) rmSync(root, { recursive: true, force: true });
  reports.sort((a, b) => a.fuzzCase.index - b.fuzzCase.index);
  return { root, reports };
}

/** One failing case, for a person to reproduce. */
export function describeFailure(r: CaseReport): string {
  const c = r.fuzzCase;
  return [
    `case ${c.index} (${c.fixture}): ${c.what.join('; ')}`,
    ...r.violations.map((v) => `  ${v}`),
    ...r.runs.map((run) => `  ${run.args[0]} exit ${run.status ?? run.signal}: ${run.stderr.trim().split('\n').slice(0, 4).join(' | ').slice(0, 400)}`),
    `  reproduce: npm run fuzz -- --seed ${c.seed} --case ${c.index} --keep`,
  ].join('\n');
}

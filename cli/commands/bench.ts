// `xllama bench (-m MODEL | --dummy NAME)`: prompt and generation tokens/s, GPU memory and bandwidth use,
// as a table or (--json) one JSON object.
import type { Command } from 'commander';
import { performance } from 'node:perf_hooks';
import Table from 'cli-table3';
import { UserError } from '../errors.js';
import { formatBytes } from '../format.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { NativeModel } from '../engine/native-model.js';
import { loadAddon } from '../native/addon.js';
import { measureDecode, measurePrefill, planSeqLen, type BenchPlan, type DecodeResult, type PrefillResult } from '../engine/benchmark.js';
import { parseBackend, parseInteger } from './flags.js';

interface BenchFlags {
  model?: string;
  dummy?: string;
  backend?: string;
  prompt?: string;
  context?: string;
  gen?: string;
  repeats?: string;
  maxSeqLen?: string;
  threads?: string;
  json?: boolean;
  verbose?: boolean;
}

const DEFAULT_PROMPTS = [512, 2048];
const DEFAULT_CONTEXTS = [128, 2048];

function parseList(value: string | undefined, flag: string, min: number): number[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((v) => parseInteger(v, flag, min) as number);
  if (items.length === 0) throw new UserError(`${flag}: give a comma-separated list of token counts`);
  return items;
}

/** The plan from the flags; default lengths that don't fit the model's context are left out. */
function planFrom(flags: BenchFlags, modelMax: number): BenchPlan {
  const genTokens = parseInteger(flags.gen, '--gen', 1) ?? 128;
  const repeats = parseInteger(flags.repeats, '--repeats', 1) ?? 3;
  const prompts = parseList(flags.prompt, '--prompt', 1);
  const contexts = parseList(flags.context, '--context', 0);
  const plan: BenchPlan = {
    promptLengths: prompts ?? DEFAULT_PROMPTS.filter((n) => n <= modelMax),
    contexts: contexts ?? DEFAULT_CONTEXTS.filter((c) => c + genTokens + 8 <= modelMax),
    genTokens, repeats,
  };
  if (plan.promptLengths.length === 0 && !prompts) plan.promptLengths = [Math.min(128, modelMax)];
  if (plan.contexts.length === 0 && !contexts) plan.contexts = [0];
  const need = planSeqLen(plan);
  if (need > modelMax) {
    throw new UserError(`--prompt/--context/--gen need ${need} cache positions, more than the model's context (${modelMax})`);
  }
  return plan;
}

async function openModel(flags: BenchFlags, seqLen: number): Promise<{ model: NativeModel; name: string; checkpointBytes: number }> {
  const backend = parseBackend(flags.backend);
  const threads = parseInteger(flags.threads, '--threads', 1);
  if (flags.dummy) {
    return { model: await NativeModel.openDummy(flags.dummy, { backend, maxSeqLen: seqLen }), name: `${flags.dummy} (dummy)`, checkpointBytes: 0 };
  }
  const spec = loadModelSpec(flags.model as string);
  const checkpointBytes = spec.files.reduce((sum, f) => sum + f.size, 0);
  return { model: await NativeModel.open(spec, { backend, maxSeqLen: seqLen, threads }), name: spec.dir, checkpointBytes };
}

/** --verbose: the load's total on stderr (the CUDA backend adds its own breakdown line before it). */
function reportLoad(name: string, seconds: number, checkpointBytes: number): void {
  const files = checkpointBytes > 0
    ? `: ${formatBytes(checkpointBytes)} of safetensors at ${fmt(checkpointBytes / 1e9 / seconds, 2)} GB/s` : '';
  process.stderr.write(`xllama: load: ${name} in ${fmt(seconds, 2)} s${files}\n`);
}

function copyBandwidth(model: NativeModel): number | null {
  if (model.backend !== 'cuda') return null;
  return loadAddon().measureCopyBandwidth(0);
}

const fmt = (v: number, digits = 1) => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function renderTable(r: BenchReport): string {
  const lines = [
    `xllama bench · ${r.model} · ${r.backend}${r.gpu ? ` · ${r.gpu}` : ''}`,
    `load ${fmt(r.loadSeconds, 2)} s · memory: weights ${formatBytes(r.memory.weightsBytes)}, ` +
      `KV cache ${formatBytes(r.memory.kvCacheBytes)} (${r.maxSeqLen} positions), scratch ${formatBytes(r.memory.scratchBytes)}` +
      (r.copyBandwidthGBs ? ` · copy bandwidth ${fmt(r.copyBandwidthGBs, 0)} GB/s` : ''),
  ];
  const table = new Table({ head: ['test', 'tokens/s', 'ms', 'bytes/token', 'bandwidth use', 'floor t/s'], style: { head: [], border: [] } });
  for (const p of r.prefill) table.push([`prompt ${p.tokens}`, fmt(p.tokensPerSec, 0), `${fmt(p.msPerChunk, 2)} /prompt`, '', '', '']);
  for (const d of r.decode) {
    table.push([`decode @${d.context}`, fmt(d.tokensPerSec), `${fmt(d.msPerToken, 3)} /token`,
      formatBytes(d.bytesPerToken), d.bandwidthUse === null ? 'n/a' : `${fmt(d.bandwidthUse * 100)}%`,
      d.bandwidthFloorTokensPerSec === null ? 'n/a' : fmt(d.bandwidthFloorTokensPerSec)]);
  }
  return `${lines.join('\n')}\n${table.toString()}\n`;
}

interface BenchReport {
  model: string;
  backend: string;
  gpu: string | null;
  loadSeconds: number;
  maxSeqLen: number;
  memory: ReturnType<NativeModel['memory']>;
  copyBandwidthGBs: number | null;
  prefill: PrefillResult[];
  decode: DecodeResult[];
}

async function runBench(flags: BenchFlags): Promise<void> {
  if (!flags.model === !flags.dummy) throw new UserError('give either -m/--model DIR or --dummy NAME');
  const modelMax = flags.dummy ? Number.MAX_SAFE_INTEGER : loadModelSpec(flags.model as string).arch.maxPositionEmbeddings;
  const requestedSeqLen = parseInteger(flags.maxSeqLen, '--max-seq-len', 1);
  const plan = planFrom(flags, requestedSeqLen ?? (flags.dummy ? 4096 : modelMax));
  if (flags.verbose) process.env.XLLAMA_VERBOSE = '1';  // read by the native backend while it loads
  const t0 = performance.now();
  const { model, name, checkpointBytes } = await openModel(flags, requestedSeqLen ?? planSeqLen(plan));
  const loadSeconds = (performance.now() - t0) / 1000;
  if (flags.verbose) reportLoad(name, loadSeconds, checkpointBytes);
  try {
    const copy = copyBandwidth(model);
    const report: BenchReport = {
      model: name, backend: model.backend,
      gpu: model.backend === 'cuda' ? loadAddon().systemInfo().gpus[0]?.name ?? null : null,
      loadSeconds, maxSeqLen: model.maxSeqLen, memory: model.memory(),
      copyBandwidthGBs: copy ? copy / 1e9 : null, prefill: [], decode: [],
    };
    for (const n of plan.promptLengths) report.prefill.push(await measurePrefill(model, n, plan.repeats));
    for (const c of plan.contexts) report.decode.push(await measureDecode(model, c, plan.genTokens, copy));
    process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : renderTable(report));
  } finally {
    model.close();
  }
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('prompt and generation speed, memory and bandwidth use of a model (or a random --dummy one)')
    .option('-m, --model <dir>', 'model folder in Hugging Face layout')
    .option('--dummy <name>', 'random GPTQ 4-bit model built on the GPU: llama-7b, llama-13b, llama3-8b, llama-70b, tiny')
    .option('--backend <name>', 'auto, cpu or cuda (default auto)')
    .option('--prompt <list>', `prompt lengths to time, comma-separated (default ${DEFAULT_PROMPTS.join(',')})`)
    .option('--context <list>', `cache lengths for decode speed (default ${DEFAULT_CONTEXTS.join(',')})`)
    .option('--gen <n>', 'tokens generated per decode measurement (default 128)')
    .option('--repeats <n>', 'timed runs per prompt length; the median is reported (default 3)')
    .option('--max-seq-len <n>', 'KV-cache positions (default: what the plan needs)')
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--json', 'print one JSON object')
    .option('--verbose', "where the load's time went, on stderr")
    .addHelpText('after', `
Examples:
  $ xllama bench --dummy llama-7b                    no download needed: a random model of Llama-2-7B's shapes
  $ xllama bench -m ./Llama-2-7B-GPTQ --json
  $ xllama bench -m ./stories260K --backend cpu --prompt 128 --context 0,256`)
    .action(async (flags: BenchFlags) => runBench(flags));
}

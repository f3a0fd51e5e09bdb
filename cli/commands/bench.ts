// `xllama bench`: prompt and generation speed across configurations in llama-bench's manner. Every model
// (-m, --dummy) × backend × GPU placement (--gpus/--gpu-split pairs) is one configuration, run in its own
// child process (bench-run.ts) so a crash or an out-of-memory becomes a row; each test (ppN, tgN, at each
// depth) is timed -r times after a warm-up. Results go to stdout (-o), progress to stderr.
import { Option, type Command } from 'commander';
import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { buildInfo } from '../build-info.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { DUMMY_NAMES, dummyArch } from '../engine/dummy-models.js';
import { planTests, testName, type BenchTest } from '../engine/benchmark.js';
import { loadAddon } from '../native/addon.js';
import type { MonitorAddon, SystemInfo } from '../native/types.js';
import type { ConfigMessage } from '../bench/protocol.js';
import { runChild } from '../bench/runner.js';
import { ConfigurationRows, type Configuration } from '../bench/rows.js';
import { EngineSampler, SAMPLE_INTERVAL_MS } from '../bench/utilization.js';
import { createWriter, OUTPUT_FORMATS, type OutputFormat, type SystemSummary } from '../bench/output.js';
import { BenchProgress } from './bench-progress.js';
import { collect, parseInteger } from './flags.js';
import { INT32_MAX } from '../engine/native-limits.js';
import { addModelOptions, modelDirFrom, openOptionsFrom, type ModelFlags } from './model-options.js';
import { registerBenchRun } from './bench-run.js';

interface BenchFlags extends Omit<ModelFlags, 'model' | 'gpus' | 'gpuSplit'> {
  model?: string[];
  gpus?: string[];
  gpuSplit?: string[];
  dummy?: string[];
  prompt?: string;
  gen?: string;
  depth?: string;
  context?: string;
  repeats?: string;
  output?: string;
  json?: boolean;
  timeout?: string;
}

const DEFAULTS = { prompt: [512], gen: [128], depth: [0], repeats: 5 };

/** Token counts from a comma list ("none": no tests of this kind), without repeats. */
function parseSizes(value: string | undefined, flag: string, min: number, fallback: number[], noneAllowed: boolean): number[] {
  if (value === undefined) return fallback;
  if (noneAllowed && value.trim() === 'none') return [];
  return [...new Set(value.split(',').map((v) => parseInteger(v, flag, min, INT32_MAX) as number))];
}

function parseTestsFrom(flags: BenchFlags): BenchTest[] {
  const tests = planTests(
    parseSizes(flags.prompt, '-p/--prompt', 1, DEFAULTS.prompt, true),
    parseSizes(flags.gen, '-n/--gen', 1, DEFAULTS.gen, true),
    parseSizes(flags.depth ?? flags.context, '-d/--depth', 0, DEFAULTS.depth, false),
  );
  if (tests.length === 0) throw new UserError('-p/--prompt and -n/--gen: both are none, so there is nothing to run');
  return tests;
}

/** GPUs this machine has, counted through NVML (no CUDA context is made in this process); 0 without a driver. */
function machineGpuCount(): number {
  const probe = (loadAddon() as unknown as MonitorAddon).monitorProbe();
  return probe.available ? probe.gpuCount : 0;
}

/**
 * The i-th --gpu-split pairs with the i-th --gpus; a flag given once applies to every value of the other.
 * A split may not have more entries than the GPUs it is spread over.
 */
function placementsFrom(gpus: string[], splits: string[]): { gpus: string | null; split: string }[] {
  if (gpus.length > 1 && splits.length > 1 && gpus.length !== splits.length) {
    throw new UserError(`--gpus is given ${gpus.length} times and --gpu-split ${splits.length} times: ` +
      'give one --gpus per --gpu-split, or one for all');
  }
  let gpuCount: number | null = null;
  return Array.from({ length: Math.max(gpus.length, splits.length, 1) }, (_, i) => {
    const g = gpus.length === 0 ? null : gpus[gpus.length === 1 ? 0 : i];
    const split = splits.length === 0 ? 'none' : splits[splits.length === 1 ? 0 : i].trim();
    const devices = g === null ? null : g.split(',').map((d) => parseInteger(d, '--gpus', 0, INT32_MAX) as number);
    if (split !== 'none' && split !== 'auto') {
      const entries = split.split(',').length;
      const over = devices?.length ?? (gpuCount ??= machineGpuCount());
      if (entries > over) {
        throw new UserError(`--gpu-split ${split}: ${entries} entries, but ${devices ? `--gpus ${g} names` : 'this machine has'} ` +
          `${over} GPU${over === 1 ? '' : 's'}`);
      }
    }
    return { gpus: g, split };
  });
}

function configurationsFrom(flags: BenchFlags): Configuration[] {
  const dummies = flags.dummy ?? [];
  for (const d of dummies) {
    dummyArch(d);  // an unknown name: one line listing the presets
  }
  // Without -m or --dummy, the shared default model (an error naming -m where there is none).
  const dirs = flags.model ?? (dummies.length === 0 ? [modelDirFrom({})] : []);
  const models = [
    ...dirs.map((dir) => {
      const spec = loadModelSpec(dir);  // a bad folder is a flag error now, not a row later
      return { label: basename(spec.dir), modelPath: spec.dir, dummy: null };
    }),
    ...dummies.map((d) => ({ label: `${d} (dummy)`, modelPath: null, dummy: d })),
  ];
  // The shared parser checks each backend, --max-seq-len and --threads here; the placement is the child's to open.
  const backends = (flags.backend ?? 'auto').split(',')
    .map((b) => openOptionsFrom({ backend: b.trim(), maxSeqLen: flags.maxSeqLen, threads: flags.threads }).backend ?? 'auto');
  const placements = placementsFrom(flags.gpus ?? [], flags.gpuSplit ?? []);
  return models.flatMap((m) => backends.flatMap((backend) => placements.map((p) => ({ ...m, backend, ...p }))));
}

function childArgs(c: Configuration, flags: BenchFlags, tests: BenchTest[], repetitions: number): string[] {
  const args = c.dummy !== null ? ['--dummy', c.dummy] : ['-m', c.modelPath as string];
  args.push('--backend', c.backend);
  if (c.gpus !== null) args.push('--gpus', c.gpus);
  if (c.split !== 'none') args.push('--gpu-split', c.split);
  if (flags.maxSeqLen !== undefined) args.push('--max-seq-len', flags.maxSeqLen);
  if (flags.threads !== undefined) args.push('--threads', flags.threads);
  if (flags.verbose) args.push('--verbose');
  args.push('--tests', tests.map(testName).join(','), '--repetitions', String(repetitions));
  return args;
}

function configurationLabel(c: Configuration): string {
  return `${c.label} · ${c.backend} · ${c.gpus === null ? `split ${c.split}` : `split ${c.split} on ${c.gpus}`}`;
}

function outputFormat(flags: BenchFlags): OutputFormat {
  const f = flags.output ?? (flags.json ? 'json' : 'table');
  if (!(OUTPUT_FORMATS as readonly string[]).includes(f)) {
    throw new UserError(`-o/--output: unknown format '${f}' (use ${OUTPUT_FORMATS.join(', ')})`);
  }
  return f as OutputFormat;
}

/**
 * GPUs as NVML names them, else as the configurations' processes saw them; the CUDA runtime from those processes.
 * When no configuration got as far as loading (every row says why), this process asks the addon itself: the
 * children are done by then, so the CUDA context that costs holds no one's memory.
 */
function systemSummary(sampler: EngineSampler | null, configs: ConfigMessage[]): SystemSummary {
  const nvml = sampler?.gpus() ?? [];
  if (configs.length === 0) {
    let info: SystemInfo;
    try {
      info = loadAddon().systemInfo();
    } catch (err) {
      // The rows are what matter; a machine that can't even be described must not keep them from printing.
      return { gpus: nvml, gpuNote: err instanceof Error ? err.message : String(err), cuda: null };
    }
    return {
      gpus: nvml.length > 0 ? nvml : info.gpus.map((g) => ({ index: g.index, name: g.name })),
      gpuNote: info.gpuUnavailableReason ?? null,
      cuda: info.cudaRuntime ?? null,
    };
  }
  const seen = new Map<number, string>();
  for (const c of configs) for (const g of c.gpus) seen.set(g.device, g.name);
  return {
    gpus: nvml.length > 0 ? nvml : [...seen].map(([index, name]) => ({ index, name })),
    gpuNote: configs.find((c) => c.gpuUnavailableReason)?.gpuUnavailableReason ?? null,
    cuda: configs.find((c) => c.cudaRuntime)?.cudaRuntime ?? null,
  };
}

/** stdout that stops quietly when its reader goes away (`| head`). */
function stdoutWriter(): (text: string) => void {
  let open = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    open = false;
  });
  return (text) => {
    if (open) process.stdout.write(text);
  };
}

async function runBench(flags: BenchFlags): Promise<void> {
  // Every flag is checked before anything runs.
  const tests = parseTestsFrom(flags);
  const repetitions = parseInteger(flags.repeats, '-r/--repeats', 1) ?? DEFAULTS.repeats;
  const timeoutSeconds = parseInteger(flags.timeout, '--timeout', 1);
  const format = outputFormat(flags);
  const configs = configurationsFrom(flags);

  const started = EngineSampler.start();
  const sampler = started.sampler;
  const { version, commit } = buildInfo();
  const progress = new BenchProgress(configs.length * tests.length, repetitions);
  const stdout = stdoutWriter();
  const writer = createWriter(format, {
    version, commit, driver: sampler?.driverVersion ?? null, repetitions,
    engineSampleIntervalMs: SAMPLE_INTERVAL_MS, enginesUnavailable: started.sampler ? null : started.reason,
  }, (text) => progress.above(() => stdout(text)));
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort();
  process.once('SIGINT', onInterrupt);
  const loaded: ConfigMessage[] = [];
  let failed = 0;
  try {
    for (const c of configs) {
      const label = configurationLabel(c);
      const rows = new ConfigurationRows(c, tests, repetitions,
        (busIds, startMs, endMs) => sampler?.average(busIds, startMs, endMs) ?? null,
        (row) => {
          writer.row(row);
          progress.row(label, row);
        });
      if (interrupt.signal.aborted) {
        rows.notRun('interrupted');
        continue;
      }
      progress.configuration(label);
      const failure = await runChild(childArgs(c, flags, tests, repetitions), (m) => {
        rows.accept(m);
        if (m.type === 'run') progress.run(label, m.test, m.run);
      }, {
        timeoutMs: timeoutSeconds === undefined ? null : timeoutSeconds * 1000, signal: interrupt.signal,
        // --verbose: the child's placement plan and load breakdown, above the progress line
        ...(flags.verbose ? { onStderrLine: (line: string) => progress.above(() => process.stderr.write(`${line}\n`)) } : {}),
      });
      rows.close(failure);
      failed += rows.failed;
      if (rows.config) loaded.push(rows.config);
      sampler?.forgetBefore(Date.now());
    }
  } finally {
    progress.stop();
    sampler?.stop();
    process.off('SIGINT', onInterrupt);
  }
  writer.finish(systemSummary(sampler, loaded));
  if (interrupt.signal.aborted) throw new UserError('bench: interrupted; the rows say which tests finished', 130);
  if (failed > 0) {
    throw new UserError(`bench: ${failed} of ${configs.length * tests.length} tests failed or did not run; their rows say why`, 1);
  }
}

/** bench's own wording of the shared model flags; -m, --gpus and --gpu-split repeat, each value a configuration. */
const BENCH_MODEL_FLAGS: Record<string, { description: string; repeatable: boolean }> = {
  '--model': { description: 'model folder in Hugging Face layout (repeatable: each is a configuration)', repeatable: true },
  '--backend': { description: 'auto, cpu or cuda, or a comma list of them, each a configuration (default auto)', repeatable: false },
  '--max-seq-len': { description: 'KV-cache positions (default: what the longest test needs); a test needing more is a row saying so', repeatable: false },
  '--gpus': { description: 'CUDA devices, comma-separated, for the --gpu-split of the same position (repeatable)', repeatable: true },
  '--gpu-split': { description: "'none', 'auto' or GB per GPU, e.g. 20,24 (repeatable: each is a configuration)", repeatable: true },
  '--verbose': { description: "print each configuration's GPU plan and where its load's time went (disk, copies, GPU), on stderr", repeatable: false },
};

export function registerBench(program: Command): void {
  const cmd = program
    .command('bench')
    .description('prompt and generation speed across models, backends and GPU splits, with memory and engine utilization');
  addModelOptions(cmd);
  for (const o of cmd.options) {
    const own = o.long ? BENCH_MODEL_FLAGS[o.long] : undefined;
    if (!own) continue;
    o.description = own.description;
    if (own.repeatable) o.argParser(collect);
  }
  cmd
    .option('--dummy <name>', `random GPTQ 4-bit model built on the GPU (repeatable): ${DUMMY_NAMES.join(', ')}`, collect)
    .option('-p, --prompt <list>', 'prompt sizes, comma-separated: a ppN test each (default 512; none: no prompt tests)')
    .option('-n, --gen <list>', 'generation sizes: a tgN test each, one token per step (default 128; none: none)')
    .option('-d, --depth <list>', 'run every test after this many cached positions too: tg128@d2048 (default 0)')
    .addOption(new Option('--context <list>', 'old name of --depth').hideHelp())
    .option('-r, --repeats <n>', `timed runs per test, after untimed warm-ups (two for prompt tests; default ${DEFAULTS.repeats})`)
    .option('-o, --output <format>', `${OUTPUT_FORMATS.join(', ')} (default table); results only, on stdout`)
    .addOption(new Option('--json', 'old name of -o json').hideHelp())
    .option('--timeout <seconds>', 'stop a configuration that runs longer; its rows say so (default: no limit)')
    .addHelpText('after', `
Each model × backend × GPU placement runs in its own process: a crash or an out-of-memory becomes a row
and the next configuration still runs. A test that does not fit the context is a row saying so.
t/s is the mean ± sd over the runs; "bw use" is bytes per token × t/s ÷ the GPU's measured copy
bandwidth; SM act, mem bw, tensor, busiest engine, power (drawn/limit) and SM MHz average gpu-monitor's
samples during the runs (a GPU held at its power limit runs below its maximum clock).

Examples:
  $ xllama bench --dummy llama-7b                          no download needed: a random Llama-2-7B-shaped model
  $ xllama bench --dummy llama-7b --dummy llama-13b -p 512,2048 -n 128 -d 0,2048 -r 3
  $ xllama bench -m ./Llama-2-70B-GPTQ --gpus 0 --gpus 0,1 --gpu-split none --gpu-split auto
  $ xllama bench -m ./stories260K --backend cpu -p 32 -n 8 -r 2 -o md`)
    .action(async (flags: BenchFlags) => runBench(flags));
  registerBenchRun(program);
}

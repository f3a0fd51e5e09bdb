// `xllama bench-run` (hidden): one configuration of `xllama bench`, which runs it in a process of its own
// so that a crash or an out-of-memory ends only this configuration. It opens the model with the shared
// model flags, runs the tests and writes JSON lines (cli/bench/protocol.ts) to --results-fd (stdout when
// run by hand, for debugging).
import type { Command } from 'commander';
import { performance } from 'node:perf_hooks';
import { basename } from 'node:path';
import { isUserError, UserError } from '../errors.js';
import { formatBytes } from '../format.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { parameterCount } from '../engine/loader/parameters.js';
import type { ModelArchitecture } from '../engine/model-spec.js';
import type { OpenOptions } from '../engine/model-handle.js';
import { NativeModel, type OpenTimings } from '../engine/native-model.js';
import { dummyArch } from '../engine/dummy-models.js';
import {
  bandwidthUse, decodeBytesPerToken, meanDecodeContext, meanSd, parseTestName, positionsNeeded, runTest, testName, type BenchTest,
} from '../engine/benchmark.js';
import { loadAddon } from '../native/addon.js';
import { writeMessage, type ChildMessage, type ConfigMessage } from '../bench/protocol.js';
import { measureCopyBandwidthApart } from '../bench/copy-bandwidth.js';
import { parseInteger } from './flags.js';
import { addModelOptions, modelDirFrom, openOptionsFrom, type ModelFlags } from './model-options.js';

interface BenchRunFlags extends ModelFlags {
  dummy?: string;
  tests: string;
  repetitions: string;
  resultsFd?: string;
}

function parseTests(list: string): BenchTest[] {
  return list.split(',').map((name) => {
    const t = parseTestName(name);
    if (!t) throw new UserError(`--tests: '${name}' is not a test name (pp512, tg128, tg128@d2048)`);
    return t;
  });
}

/** What is known about the model before it is opened. */
interface ModelToOpen {
  label: string;
  path: string | null;
  context: number;
  /** Bytes of safetensors the load reads (0 for a dummy). */
  checkpointBytes: number;
  /** Seconds spent reading the folder (configs, tokenizer files, safetensors headers) before the load. */
  specSeconds: number;
  params: (shape: ModelArchitecture) => number;
  open: (maxSeqLen: number) => Promise<NativeModel>;
}

function modelToOpen(flags: BenchRunFlags, opts: OpenOptions): ModelToOpen {
  if (flags.dummy !== undefined) {
    const name = flags.dummy;
    return {
      label: `${name} (dummy)`, path: null, context: dummyArch(name).maxPositionEmbeddings, checkpointBytes: 0, specSeconds: 0,
      params: (arch) => parameterCount({ arch }),
      open: (maxSeqLen) => NativeModel.openDummy(name, { ...opts, maxSeqLen }),
    };
  }
  const t0 = performance.now();
  const spec = loadModelSpec(modelDirFrom(flags));
  const specSeconds = (performance.now() - t0) / 1000;
  return {
    label: basename(spec.dir), path: spec.dir, context: spec.arch.maxPositionEmbeddings,
    checkpointBytes: spec.files.reduce((sum, f) => sum + f.size, 0), specSeconds,
    params: () => parameterCount(spec),
    open: (maxSeqLen) => NativeModel.open(spec, { ...opts, maxSeqLen }),
  };
}

/**
 * --verbose: after the native backend's own breakdown lines, where the rest of the open went (Node's side)
 * and the load's total: NativeModel.open, from loading the addon to the backend built.
 */
function reportLoad(m: ModelToOpen, seconds: number, t: OpenTimings): void {
  const f = (x: number) => `${x.toFixed(2)} s`;
  const before = m.path ? `; before it, the folder's configs, tokenizer and safetensors headers read in ${f(m.specSeconds)}` : '';
  process.stderr.write(`xllama: load: open: addon ${f(t.addon)}, checkpoint read-ahead started in ${f(t.readAhead)}, ` +
    `GPU query (CUDA driver, a context per GPU) ${f(t.gpuQuery)}, options and GPU placement ${f(t.placement)}, ` +
    `native load ${f(t.native)} (the lines above)${before}\n`);
  const files = m.checkpointBytes > 0
    ? `: ${formatBytes(m.checkpointBytes)} of safetensors at ${(m.checkpointBytes / 1e9 / seconds).toFixed(2)} GB/s` : '';
  process.stderr.write(`xllama: load: ${m.label} in ${seconds.toFixed(2)} s${files}\n`);
}

/** A dummy's architecture from the shape the backend reports (dummies have no biases and no tied embeddings). */
function archOf(model: NativeModel): ModelArchitecture {
  return { ...model.shape(), attentionBias: false, tieWordEmbeddings: false } as ModelArchitecture;
}

function describe(model: NativeModel, m: ModelToOpen, loadSeconds: number): ConfigMessage {
  const addon = loadAddon();
  const info = addon.systemInfo();
  const memory = model.memory();
  const devices = [...new Set(memory.devices.map((d) => d.device).filter((d) => d >= 0))];
  // In a process of its own (cli/bench/copy-bandwidth.ts); a device without a figure reads n/a.
  const copyBandwidth: ConfigMessage['copyBandwidth'] = measureCopyBandwidthApart(devices);
  return {
    type: 'config', model: m.label, modelPath: m.path, params: m.params(archOf(model)), backend: model.backend,
    maxSeqLen: model.maxSeqLen, loadSeconds, memory, copyBandwidth,
    gpus: devices.map((device) => {
      const g = info.gpus.find((x) => x.index === device);
      return { device, name: g?.name ?? `GPU ${device}`, pciBusId: g?.pciBusId ?? '' };
    }),
    cudaRuntime: info.cudaRuntime ?? null, gpuUnavailableReason: info.gpuUnavailableReason ?? null,
  };
}

async function runConfiguration(flags: BenchRunFlags, emit: (m: ChildMessage) => void): Promise<void> {
  const tests = parseTests(flags.tests);
  const repetitions = parseInteger(flags.repetitions, '--repetitions', 1) as number;
  const opts = openOptionsFrom(flags);
  const requested = opts.maxSeqLen;
  const m = modelToOpen(flags, opts);
  // A test fits when its positions fit both the model's context and the cache the user asked for.
  const limit = Math.min(m.context, requested ?? Infinity);
  const limitName = requested !== undefined && requested < m.context ? `--max-seq-len is ${requested}` : `the model's context is ${m.context}`;
  const fits = (t: BenchTest) => positionsNeeded(t) <= limit;
  const runnable = tests.filter(fits);
  // The cache holds what the longest test needs, unless the user sized it; nothing loads if no test fits.
  if (flags.verbose) process.env.XLLAMA_VERBOSE = '1';  // the native load prints where its time went
  const t0 = performance.now();
  const model = runnable.length === 0 ? null : await m.open(requested ?? Math.max(...runnable.map(positionsNeeded)));
  const loadSeconds = (performance.now() - t0) / 1000;
  if (model && flags.verbose) reportLoad(m, loadSeconds, model.openTimings);
  try {
    const config = model ? describe(model, m, loadSeconds) : null;
    if (config) emit(config);
    const copy = new Map(config?.copyBandwidth.map((c) => [c.device, c.bytesPerSec]));
    for (const t of tests) {
      const name = testName(t);
      if (!model || !config || !fits(t)) {
        emit({ type: 'skipped', test: name, message: `does not fit: needs ${positionsNeeded(t)} positions, ${limitName}` });
        continue;
      }
      emit({ type: 'start', test: name });
      try {
        const timing = await runTest(model, t, repetitions, (run) => emit({ type: 'run', test: name, run }));
        const stages = t.kind === 'tg' ? decodeBytesPerToken(config.memory, config.maxSeqLen, meanDecodeContext(t)) : null;
        emit({
          type: 'result', test: name, ...timing,
          bytesPerToken: stages ? stages.reduce((a, s) => a + s.bytes, 0) : null,
          bandwidthUse: stages ? bandwidthUse(stages, copy, meanSd(timing.tokensPerSec).mean) : null,
        });
      } catch (err) {
        // A test the backend refuses (out of memory at this length, say) is its row; the others still run.
        if (!isUserError(err)) throw err;
        emit({ type: 'test-failed', test: name, message: err.message });
      }
    }
  } finally {
    model?.close();
  }
  emit({ type: 'done' });
}

/** The parent keeps our stdin open; when it goes away (killed, say), so do we, instead of running on unseen. */
function exitWithParent(): void {
  process.stdin.on('end', () => process.exit(129)).on('error', () => process.exit(129)).resume();
  process.stdin.unref?.();
}

export function registerBenchRun(program: Command): void {
  const cmd = program.command('bench-run', { hidden: true })
    .description('one configuration of `xllama bench`, in its own process (internal)');
  addModelOptions(cmd)
    .option('--dummy <name>', 'random GPTQ 4-bit model built on the GPU')
    .requiredOption('--tests <list>', 'test names, comma-separated: pp512,tg128,tg128@d2048')
    .option('--repetitions <n>', 'timed runs per test, after a warm-up', '5')
    .option('--results-fd <fd>', 'file descriptor for the JSON lines (the parent passes its pipe)')
    .action(async (flags: BenchRunFlags) => {
      const fd = parseInteger(flags.resultsFd, '--results-fd', 1) ?? 1;
      if (flags.resultsFd !== undefined) exitWithParent();
      const emit = (m: ChildMessage) => writeMessage(fd, m);
      try {
        await runConfiguration(flags, emit);
      } catch (err) {
        emit({ type: 'error', message: isUserError(err) ? err.message : `internal error: ${(err as Error)?.message ?? String(err)}` });
        throw err;
      }
    });
}

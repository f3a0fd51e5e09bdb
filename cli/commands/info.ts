// `xllama info [MODEL_DIR | -m MODEL_DIR] [--gpus] [--json]`: what this machine can run, and what a model is.
import type { Command } from 'commander';
import { basename } from 'node:path';
import { loadAddon } from '../native/addon.js';
import { UserError } from '../errors.js';
import { formatBytes } from '../format.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { summarizeModel, type ModelSummary, type TokenizerSummary } from '../engine/loader/model-summary.js';
import { TextTokenizer } from '../engine/tokenizer.js';
import { ChatTemplate } from '../engine/chat-template.js';
import { modelFootprint } from '../engine/gpu-footprint.js';
import { placeOnGpus } from '../engine/gpu-placement.js';
import { planRows, type SplitPlan } from '../engine/gpu-split.js';
import { DEFAULT_CHUNK_TOKENS } from '../engine/model-handle.js';
import type { ModelSpec } from '../engine/model-spec.js';
import type { GpuDescription } from '../native/types.js';
import { parseInteger } from './flags.js';
import { addModelArgument, gpuSplitFrom, parseGpuList, withModelArgument } from './model-options.js';
import { describeSamplingDefaults } from '../engine/loader/generation-config.js';

interface InfoOptions {
  /** -m/--model, the spelling the other commands use; the same as the positional argument. */
  model?: string;
  /** true: list this machine's GPUs; a list: the GPUs a --gpu-split plan uses. */
  gpus?: boolean | string;
  gpuSplit?: string;
  maxSeqLen?: string;
  json?: boolean;
}

/** 279.2K, 6.74B. */
function formatCount(n: number): string {
  for (const [div, suffix] of [[1e9, 'B'], [1e6, 'M'], [1e3, 'K']] as const) {
    if (n >= div) return `${(n / div).toPrecision(3)}${suffix}`;
  }
  return String(n);
}

function printGpus(json: boolean): void {
  const sys = loadAddon().systemInfo();
  const backends = ['cpu', ...(sys.cudaCompiled && sys.gpus.length > 0 ? ['cuda'] : [])];
  if (json) {
    process.stdout.write(`${JSON.stringify({ backends, ...sys })}\n`);
    return;
  }
  const cuda = !sys.cudaCompiled ? '' : sys.gpus.length > 0 ? ` (CUDA runtime ${sys.cudaRuntime})`
    : ` (this build has CUDA ${sys.cudaRuntime}, unused: no GPU)`;
  const lines = [`backends: ${backends.join(', ')}${cuda}`];
  if (sys.gpus.length === 0) lines.push(`GPUs: none (${sys.gpuUnavailableReason ?? 'unknown reason'})`);
  for (const g of sys.gpus) {
    lines.push(`GPU ${g.index}: ${g.name}, ${formatBytes(g.totalMemory)} (${formatBytes(g.freeMemory)} free), ` +
      `compute capability ${g.computeCapability}, ${g.multiprocessors} SMs, PCI ${g.pciBusId}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

function describeQuant(s: ModelSummary): string {
  const q = s.quantization;
  if (!q) return `none (${s.torchDtype ?? 'floating point'} weights)`;
  const group = q.groupSize === -1 ? 'no grouping' : `group size ${q.groupSize}`;
  return `GPTQ ${q.bits}-bit, ${group}, act-order ${q.descAct ? 'yes' : 'no'}, ${q.sym ? 'symmetric' : 'asymmetric'}, ` +
    `format ${q.checkpointFormat} (${q.source === 'inferred' ? 'inferred from the tensors' : `from ${q.source}`})`;
}

function describeRope(s: ModelSummary): string {
  const r = s.ropeScaling;
  if (!r) return `theta ${s.ropeTheta}`;
  const extra = r.type === 'llama3'
    ? `, low/high freq factor ${r.lowFreqFactor}/${r.highFreqFactor}, original context ${r.originalMaxPositionEmbeddings}`
    : r.type === 'yarn'
      ? `, original context ${r.originalMaxPositionEmbeddings}, attention factor ${+r.attentionFactor!.toFixed(4)}, ` +
        `beta fast/slow ${r.betaFast}/${r.betaSlow}`
      : '';
  return `theta ${s.ropeTheta}, ${r.type} scaling × ${r.factor}${extra}`;
}

/**
 * Where the model goes on GPUs, planned without loading it: on one GPU by default (what it needs there), or
 * as --gpus/--gpu-split ask, against this machine's free memory when it has GPUs, else against the budgets.
 */
function gpuPlan(spec: ModelSpec, opts: InfoOptions): { plan: SplitPlan; gpus: GpuDescription[] | null } {
  const request = gpuSplitFrom({ gpus: typeof opts.gpus === 'string' ? opts.gpus : undefined, gpuSplit: opts.gpuSplit });
  const maxSeqLen = parseInteger(opts.maxSeqLen, '--max-seq-len', 1);
  let gpus: GpuDescription[] | null = null;
  if (request) {
    const sys = loadAddon().systemInfo();
    gpus = sys.cudaCompiled && sys.gpus.length > 0 ? sys.gpus : null;
  }
  const fp = modelFootprint(spec, DEFAULT_CHUNK_TOKENS);
  const placed = placeOnGpus(fp, request, { gpus, maxSeqLen, modelMaxSeqLen: spec.arch.maxPositionEmbeddings });
  return { plan: placed.plan, gpus };
}

function tokenizerRows(s: ModelSummary): [string, string][] {
  const t = s.tokenizer;
  const ids = (bos: number | null, eos: number[]) => `${bos ?? 'none'} / ${eos.length ? eos.join(', ') : 'none'}`;
  if (!t) return [['bos / eos ids', ids(s.bosTokenId, s.eosTokenIds)]];
  const unused = s.vocabSize - t.vocabSize;
  return [
    ['tokenizer', `${t.vocabSize} tokens${unused > 0 ? ` (${unused} embedding rows past them, unused)` : ''}, ` +
      `chat template ${t.chatTemplateFile === null ? 'none' : `in ${t.chatTemplateFile}`}`],
    ['bos / eos ids', ids(t.bosTokenId, t.eosTokenIds)],
  ];
}

export function formatModelSummary(s: ModelSummary, plan?: SplitPlan, gpus?: GpuDescription[] | null): string {
  const rows: [string, string][] = [
    ['model', s.dir],
    ['architecture', `${s.architecture}${s.modelType ? ` (${s.modelType})` : ''}`],
    ['layers', String(s.layers)],
    ['hidden size', String(s.hiddenSize)],
    ['intermediate size', String(s.intermediateSize)],
    ['attention heads', `${s.heads} query, ${s.kvHeads} key/value${s.kvHeads < s.heads ? ' (GQA)' : ''}, head dim ${s.headDim}`],
    ['vocabulary', String(s.vocabSize)],
    ['context length', String(s.contextLength)],
    ['rope', describeRope(s)],
    ['embeddings', s.tiedEmbeddings ? 'tied (lm_head is the embedding matrix)' : 'separate lm_head'],
    ['parameters', `${formatCount(s.parameters)} (${s.parameters.toLocaleString('en-US')})`],
    ['quantization', describeQuant(s)],
    ['size on disk', `${formatBytes(s.diskBytes)} in ${s.files.length} file${s.files.length === 1 ? '' : 's'}`],
    ['GPU weights', formatBytes(s.gpuWeightBytes)],
    ...tokenizerRows(s),
    ...(Object.keys(s.samplingDefaults).length > 0
      ? [['sampling', `${describeSamplingDefaults(s.samplingDefaults)} (generation_config.json)`] as [string, string]] : []),
    ...(plan ? planRows(plan, (d) => gpus?.find((g) => g.index === d)?.name) : []),
  ];
  if (plan && gpus === null && plan.mode !== 'single') rows.push(['', 'no GPU here: planned against the budgets alone']);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

/** Builds the tokenizer as generation would (every check included) and parses the chat template. */
function checkTokenizer(spec: ModelSpec): TokenizerSummary {
  const tok = TextTokenizer.fromFiles(spec.tokenizer, spec);
  const hasTemplate = tok.chatTemplate !== null;
  if (hasTemplate) new ChatTemplate(tok.chatTemplate, tok, tok.chatTemplateSource);
  return {
    vocabSize: tok.vocabSize, bosTokenId: tok.bosId, eosTokenIds: [...tok.eosIds],
    chatTemplate: hasTemplate, chatTemplateFile: hasTemplate ? basename(tok.chatTemplateSource) : null,
  };
}

export function registerInfo(program: Command): void {
  const cmd = program
    .command('info')
    .description('describe a model folder, or list the backends and GPUs (--gpus)');
  addModelArgument(cmd)
    .option('-m, --model <dir>', 'the model folder, as the other commands take it (the same as the argument)')
    .option('--gpus [list]', 'alone: list the available backends and each GPU; with a model, the GPUs of its --gpu-split plan')
    .option('--gpu-split <split>', "print the model's layer split without loading it: 'auto' or GB per GPU, e.g. 20,24")
    .option('--max-seq-len <n>', "KV-cache positions for the GPU plan (default: the model's context, or what fits)")
    .option('--json', 'print JSON')
    .action(async (modelArg: string | undefined, opts: InfoOptions) => {
      opts = withModelArgument('info', modelArg, opts);
      let model = opts.model;
      // `info --gpus DIR`: commander hands DIR to --gpus; it is the model, and --gpus lists the GPUs.
      if (typeof opts.gpus === 'string' && !model && !/^[\d,\s]+$/.test(opts.gpus)) {
        model = opts.gpus;
        opts.gpus = true;
      }
      if (opts.gpus === true || !model) {
        if (!opts.gpus && !model) throw new UserError('info: give a model folder, or --gpus');
        printGpus(Boolean(opts.json));
        return;
      }
      if (typeof opts.gpus === 'string') parseGpuList(opts.gpus);  // a bad list is refused before the model is read
      const spec = loadModelSpec(model);
      const summary = summarizeModel(spec, checkTokenizer(spec));
      const { plan, gpus } = gpuPlan(spec, opts);
      process.stdout.write(opts.json ? `${JSON.stringify({ ...summary, gpuPlan: plan })}\n`
        : `${formatModelSummary(summary, plan, gpus)}\n`);
    });
}

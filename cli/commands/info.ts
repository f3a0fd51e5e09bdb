// `xllama info [MODEL_DIR] [--gpus] [--json]`: what this machine can run, and what a model is.
import type { Command } from 'commander';
import { loadAddon } from '../native/addon.js';
import { UserError } from '../errors.js';
import { formatBytes } from '../format.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { summarizeModel, type ModelSummary } from '../engine/loader/model-summary.js';

interface InfoOptions {
  gpus?: boolean;
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
    ? `, low/high freq factor ${r.lowFreqFactor}/${r.highFreqFactor}, original context ${r.originalMaxPositionEmbeddings}` : '';
  return `theta ${s.ropeTheta}, ${r.type} scaling × ${r.factor}${extra}`;
}

export function formatModelSummary(s: ModelSummary): string {
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
    ['bos / eos ids', `${s.bosTokenId ?? 'none'} / ${s.eosTokenIds.length ? s.eosTokenIds.join(', ') : 'none'}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('describe a model folder, or list the backends and GPUs (--gpus)')
    .argument('[model]', 'model folder in Hugging Face layout')
    .option('--gpus', 'list the available backends and each GPU')
    .option('--json', 'print JSON')
    .action(async (model: string | undefined, opts: InfoOptions) => {
      if (opts.gpus || !model) {
        if (!opts.gpus && !model) throw new UserError('info: give a model folder, or --gpus');
        printGpus(Boolean(opts.json));
        return;
      }
      const summary = summarizeModel(loadModelSpec(model));
      process.stdout.write(opts.json ? `${JSON.stringify(summary)}\n` : `${formatModelSummary(summary)}\n`);
    });
}

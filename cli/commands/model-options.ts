// The flags that say which model to open and where it runs, defined once for generate, chat, ppl and
// bench: -m (or the folder as the argument of chat, generate and info), --backend, --max-seq-len (also
// -c/--ctx-size, llama.cpp's spelling), --threads and the GPU placement (--gpus, --gpu-split, --verbose).
// Without -m, the demo model that ships in the package is used.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import type { GpuSplitRequest, OpenOptions } from '../engine/model-handle.js';
import { packageRoot } from '../native/addon.js';
import { addAlias, parseBackend, parseInteger } from './flags.js';
import { INT32_MAX, MAX_THREADS } from '../engine/native-limits.js';

/** The small real model in the package (stories260K, MIT, from llama2.c): a first run needs no download. */
export const DEMO_MODEL_DIR = join(packageRoot, 'fixtures', 'models', 'stories260K');

export interface ModelFlags {
  model?: string;
  backend?: string;
  maxSeqLen?: string;
  threads?: string;
  gpus?: string;
  gpuSplit?: string;
  verbose?: boolean;
}

/**
 * `ctxSizeFor`: the option that llama.cpp's -c/--ctx-size stands for. The KV-cache size (--max-seq-len) by
 * default; ppl passes 'ctx', its tokens per chunk, which is what -c means to llama-perplexity.
 */
export function addModelOptions(cmd: Command, { ctxSizeFor = 'maxSeqLen' }: { ctxSizeFor?: string } = {}): Command {
  const alsoCtxSize = ctxSizeFor === 'maxSeqLen' ? ', also -c/--ctx-size' : '';
  cmd
    .option('-m, --model <dir>', 'model folder in Hugging Face layout (default: the bundled demo model, stories260K)')
    .option('--backend <name>', 'auto, cpu or cuda (default auto)')
    .option('--max-seq-len <n>', `KV-cache positions${alsoCtxSize} (default: the model's max_position_embeddings, ` +
      'capped by free GPU memory)')
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--gpus <list>', 'CUDA devices to use, comma-separated, in order (default: all with --gpu-split, else GPU 0); a device may repeat')
    .option('--gpu-split <split>', "layer split across --gpus: 'auto' (by free memory) or GB per GPU, e.g. 20,24; " +
      'a budget counts weights, KV cache, scratch and reserve (default: one GPU)')
    .option('--verbose', 'print where the model goes on the GPUs (layers and bytes per GPU) before it loads');
  return addAlias(cmd, '-c, --ctx-size <n>', ctxSizeFor);
}

/** `chat DIR`, `generate DIR`, `info DIR`: the model folder as the argument, the same as -m. */
export function addModelArgument(cmd: Command): Command {
  return cmd.argument('[model]', 'model folder in Hugging Face layout (the same as -m/--model)');
}

/** The flags with the positional model folder folded into -m; two different folders are refused. */
export function withModelArgument<T extends Pick<ModelFlags, 'model'>>(command: string, modelArg: string | undefined, flags: T): T {
  if (modelArg === undefined) return flags;
  if (flags.model !== undefined && flags.model !== modelArg) {
    throw new UserError(`${command}: two model folders (${flags.model} and ${modelArg}); give one`);
  }
  return { ...flags, model: modelArg };
}

/** The model folder from -m; without -m the bundled demo model, said in one line on stderr. */
export function modelDirFrom(flags: ModelFlags): string {
  if (flags.model !== undefined) {
    if (flags.model.trim() === '') throw new UserError('-m/--model: the folder name is empty');
    return flags.model;
  }
  if (!existsSync(join(DEMO_MODEL_DIR, 'config.json'))) {
    throw new UserError('-m/--model: give the model folder (this copy of xllama has no bundled demo model)');
  }
  process.stderr.write('no -m given: using the bundled demo model stories260K; pass -m DIR for yours\n');
  return DEMO_MODEL_DIR;
}

/** --gpus: GPU indices, comma-separated; a GPU may repeat. */
export function parseGpuList(value: string | undefined, flag = '--gpus'): number[] | undefined {
  if (value === undefined) return undefined;
  return value.split(',').map((item) => {
    const v = item.trim();
    if (!/^\d+$/.test(v)) {
      throw new UserError(`${flag}: '${item}' is not a GPU number (give GPU indices such as 0,1; a GPU may repeat)`);
    }
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new UserError(`${flag}: ${v} is too large`);
    return n;
  });
}

/** --gpu-split: 'auto', or GB (2^30 bytes) per GPU, comma-separated, each 0 or more. */
export function parseGpuSplit(value: string | undefined): 'auto' | number[] | undefined {
  if (value === undefined) return undefined;
  if (value.trim().toLowerCase() === 'auto') return 'auto';
  const budgets = value.split(',').map((item) => {
    const v = item.trim();
    if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(v)) {
      throw new UserError(`--gpu-split: '${item}' is not a number of GB (give 'auto', or GB per GPU in --gpus order, e.g. 20,24)`);
    }
    const gb = Number(v);
    if (gb < 0) throw new UserError(`--gpu-split: ${v} is negative (a budget is 0 GB or more)`);
    return gb;
  });
  if (budgets.every((gb) => gb === 0)) throw new UserError('--gpu-split: every budget is 0 GB');
  return budgets;
}

/** --gpus and --gpu-split as one request (undefined when neither is given). */
export function gpuSplitFrom(flags: Pick<ModelFlags, 'gpus' | 'gpuSplit'>): GpuSplitRequest | undefined {
  const gpus = parseGpuList(flags.gpus);
  const split = parseGpuSplit(flags.gpuSplit);
  if (!gpus && !split) return undefined;
  if (gpus && Array.isArray(split) && split.length !== gpus.length) {
    throw new UserError(`--gpu-split: ${split.length} budget${split.length === 1 ? '' : 's'} for the ${gpus.length} ` +
      `GPU${gpus.length === 1 ? '' : 's'} of --gpus (give one per GPU, in order)`);
  }
  return { ...(gpus ? { gpus } : {}), ...(split ? { split } : {}) };
}

/** The GPU placement part of the open options: --gpus/--gpu-split, and --verbose printing the plan on stderr. */
export function placementFrom(flags: Pick<ModelFlags, 'gpus' | 'gpuSplit' | 'verbose'>): Pick<OpenOptions, 'gpuSplit' | 'onPlan'> {
  const gpuSplit = gpuSplitFrom(flags);
  return {
    ...(gpuSplit ? { gpuSplit } : {}),
    ...(flags.verbose ? { onPlan: (text: string) => process.stderr.write(text) } : {}),
  };
}

/** Backend, threads, cache size and GPU placement from the flags. */
export function openOptionsFrom(flags: ModelFlags): OpenOptions & { maxSeqLen?: number } {
  return {
    backend: parseBackend(flags.backend),
    maxSeqLen: parseInteger(flags.maxSeqLen, '--max-seq-len', 2, INT32_MAX),
    threads: parseInteger(flags.threads, '--threads', 1, MAX_THREADS),
    ...placementFrom(flags),
  };
}

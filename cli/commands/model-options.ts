// The flags that say which model to open and where it runs, defined once for generate, chat, ppl and
// bench: -m, --backend, --max-seq-len (also -c/--ctx-size, llama.cpp's spelling), --threads and the GPU
// placement (--gpus, --gpu-split). Without -m, the demo model that ships in the package is used.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import type { OpenOptions } from '../engine/model-handle.js';
import { packageRoot } from '../native/addon.js';
import { addAlias, parseBackend, parseInteger } from './flags.js';

/** The small real model in the package (stories260K, MIT, from llama2.c): a first run needs no download. */
export const DEMO_MODEL_DIR = join(packageRoot, 'fixtures', 'models', 'stories260K');

export interface ModelFlags {
  model?: string;
  backend?: string;
  maxSeqLen?: string;
  threads?: string;
  gpus?: string;
  gpuSplit?: string;
}

export function addModelOptions(cmd: Command): Command {
  cmd
    .option('-m, --model <dir>', 'model folder in Hugging Face layout (default: the bundled demo model, stories260K)')
    .option('--backend <name>', 'auto, cpu or cuda (default auto)')
    .option('--max-seq-len <n>', "KV-cache positions, also -c/--ctx-size (default: the model's max_position_embeddings, " +
      'capped by free GPU memory)')
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--gpus <list>', 'CUDA devices to use, comma-separated, in order (default: all); a device may repeat')
    .option('--gpu-split <split>', "layer split across --gpus: 'auto' or GB per GPU, e.g. 20,24 (default: one GPU)");
  return addAlias(cmd, '-c, --ctx-size <n>', 'maxSeqLen');
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

/** Backend, threads and cache size from the flags (placement across GPUs: see gpu-split). */
export function openOptionsFrom(flags: ModelFlags): OpenOptions & { maxSeqLen?: number } {
  if (flags.gpus !== undefined || flags.gpuSplit !== undefined) {
    throw new UserError('--gpus/--gpu-split: the layer split is not available in this build yet');
  }
  return {
    backend: parseBackend(flags.backend),
    maxSeqLen: parseInteger(flags.maxSeqLen, '--max-seq-len', 2),
    threads: parseInteger(flags.threads, '--threads', 1),
  };
}

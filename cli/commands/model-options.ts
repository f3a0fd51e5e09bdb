// The flags that say which model to open and where it runs, defined once for generate, chat, ppl and
// bench: -m, --backend, --max-seq-len, --threads and the GPU placement (--gpus, --gpu-split).
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import type { OpenOptions } from '../engine/model-handle.js';
import { parseBackend, parseInteger } from './flags.js';

export interface ModelFlags {
  model?: string;
  backend?: string;
  maxSeqLen?: string;
  threads?: string;
  gpus?: string;
  gpuSplit?: string;
}

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('-m, --model <dir>', 'model folder in Hugging Face layout')
    .option('--backend <name>', 'auto, cpu or cuda (default auto)')
    .option('--max-seq-len <n>', "KV-cache positions (default: the model's max_position_embeddings, capped by free GPU memory)")
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--gpus <list>', 'CUDA devices to use, comma-separated, in order (default: all); a device may repeat')
    .option('--gpu-split <split>', "layer split across --gpus: 'auto' or GB per GPU, e.g. 20,24 (default: one GPU)");
}

/** The model folder from -m. */
export function modelDirFrom(flags: ModelFlags): string {
  if (!flags.model) throw new UserError('-m/--model: give the model folder');
  return flags.model;
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

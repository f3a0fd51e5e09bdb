// The fixture models and their reference.json (HF transformers float32 outputs; see fixtures/models/README.md),
// plus the small maths the CPU tests share: argmax, NLL from a logits row, relative logit error.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { NativeModel } from '../../cli/engine/native-model.js';
import type { OpenOptions } from '../../cli/engine/model-handle.js';

export const MODELS = ['stories260K', 'stories260K-gptq-4bit-g32', 'stories260K-gptq-4bit-g64-actorder'] as const;

export interface RefSequence {
  name: string;
  ids: number[];
  nll: number[];
  top5: [number, number][][];
  last_logits: number[];
  total_nll: number;
  ppl: number;
}

export interface Reference {
  sequences: RefSequence[];
  greedy: Record<'from_bos' | 'from_golden', { prompt: number[]; n_new: number; new_ids: number[] }>;
  ppl_text: { ids: number[]; chunk_len: number; n_chunks: number; n_predictions: number; total_nll: number; ppl: number };
}

export const modelDir = (name: string): string => join(fixtures, 'models', name);

export function loadReference(name: string): Reference {
  return JSON.parse(readFileSync(join(modelDir(name), 'reference.json'), 'utf8')) as Reference;
}

export function openModel(name: string, opts: OpenOptions = {}): Promise<NativeModel> {
  return NativeModel.open(loadModelSpec(modelDir(name)), { backend: 'cpu', ...opts });
}

export function row(logits: Float32Array, vocab: number, t: number): Float32Array {
  return logits.subarray(t * vocab, (t + 1) * vocab);
}

/** First index of the largest value (HF's argmax tie rule). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** −log_softmax(logits)[target], in float64 as the reference computes it. */
export function nll(logits: ArrayLike<number>, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return -(logits[target] - max - Math.log(sum));
}

/** max|ours − ref| / max|ref| over the given (id, logit) pairs. */
export function relError(logits: ArrayLike<number>, pairs: [number, number][]): number {
  let diff = 0, scale = 0;
  for (const [id, ref] of pairs) {
    diff = Math.max(diff, Math.abs(logits[id] - ref));
    scale = Math.max(scale, Math.abs(ref));
  }
  return diff / scale;
}

/** Greedy decoding with the KV cache: the prompt in one forward, then one token per step. */
export async function greedy(model: NativeModel, prompt: number[], steps: number): Promise<number[]> {
  await model.trimCache(0);
  const out: number[] = [];
  let next = argmax(await model.forward(prompt, 0));
  let pos = prompt.length;
  for (let i = 0; i < steps; i++) {
    out.push(next);
    if (i + 1 === steps) break;
    next = argmax(await model.forward([next], pos));
    pos += 1;
  }
  return out;
}

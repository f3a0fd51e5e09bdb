// Prompt (prefill) and generation (decode) speed of a loaded model, with the bytes a decoded token reads
// so that speed can be set against the memory-bandwidth floor. UI-free: commands/bench.ts renders it.
import { performance } from 'node:perf_hooks';
import type { NativeModel } from './native-model.js';

export interface BenchPlan {
  /** Prompt lengths to time, each from an empty cache. */
  promptLengths: number[];
  /** Cache lengths at which decode speed is measured. */
  contexts: number[];
  /** Tokens generated per decode measurement. */
  genTokens: number;
  /** Timed repeats per prompt length (the median is reported; one extra untimed run warms up). */
  repeats: number;
}

export interface PrefillResult {
  tokens: number;
  tokensPerSec: number;
  msPerChunk: number;
}

export interface DecodeResult {
  context: number;
  tokensPerSec: number;
  msPerToken: number;
  /** Weights plus the KV cache read for one token at this context. */
  bytesPerToken: number;
  /** bytesPerToken × tokens/s ÷ copy bandwidth; null without a bandwidth figure. */
  bandwidthUse: number | null;
  /** The speed at which reading bytesPerToken would take all the copy bandwidth. */
  bandwidthFloorTokensPerSec: number | null;
}

/** Decode steps before timing: the first replays capture CUDA graphs. */
const DECODE_WARMUP = 8;

/** The longest cache a plan needs. */
export function planSeqLen(plan: BenchPlan): number {
  return Math.max(0, ...plan.promptLengths, ...plan.contexts.map((c) => c + DECODE_WARMUP + plan.genTokens));
}

/** Deterministic token ids spread over the vocabulary, avoiding the usual special ids 0–2. */
function syntheticTokens(n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => ((i * 7919 + 13) % Math.max(1, vocab - 3)) + 3);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export async function measurePrefill(model: NativeModel, tokens: number, repeats: number): Promise<PrefillResult> {
  const ids = syntheticTokens(tokens, model.vocabSize);
  const times: number[] = [];
  for (let r = 0; r <= repeats; r++) {
    await model.trimCache(0);
    const t0 = performance.now();
    await model.forward(ids, 0, false);
    if (r > 0) times.push(performance.now() - t0);
  }
  const ms = median(times);
  return { tokens, tokensPerSec: tokens / (ms / 1000), msPerChunk: ms };
}

/** Bytes one decoded token reads: every weight once, plus K and V of every cached position in every layer. */
export function decodeBytesPerToken(model: NativeModel, context: number): number {
  const s = model.shape();
  const kvBytesPerValue = model.backend === 'cuda' ? 2 : 4;  // fp16 cache on the GPU, float32 on the CPU
  return model.memory().weightsBytes + context * s.numLayers * 2 * s.numKvHeads * s.headDim * kvBytesPerValue;
}

export async function measureDecode(model: NativeModel, context: number, genTokens: number,
    copyBytesPerSec: number | null): Promise<DecodeResult> {
  await model.trimCache(0);
  if (context > 0) await model.forward(syntheticTokens(context, model.vocabSize), 0, false);
  const greedy = { temperature: 0, topK: 0, uniform: 0 };
  let pos = context;
  let id = 3;
  for (let i = 0; i < DECODE_WARMUP; i++) id = await model.forwardSample([id], pos++, greedy);
  const t0 = performance.now();
  for (let i = 0; i < genTokens; i++) id = await model.forwardSample([id], pos++, greedy);
  const ms = performance.now() - t0;
  const tokensPerSec = genTokens / (ms / 1000);
  const bytesPerToken = decodeBytesPerToken(model, context + DECODE_WARMUP + genTokens / 2);
  return {
    context, tokensPerSec, msPerToken: ms / genTokens, bytesPerToken,
    bandwidthUse: copyBytesPerSec ? (bytesPerToken * tokensPerSec) / copyBytesPerSec : null,
    bandwidthFloorTokensPerSec: copyBytesPerSec ? copyBytesPerSec / bytesPerToken : null,
  };
}

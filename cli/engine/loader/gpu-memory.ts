// The one weight-size estimate: how many bytes each part of a model takes as the CUDA backend stores it
// (cuda/stage_load.cu uploads, cuda/weight_repack.cu packs). `info`, the GPU split planner
// (cli/engine/gpu-split.ts) and the memory check before a CUDA load all use it; scripts/device/check-split.mjs
// compares it with what the backend reports it allocated.
//
// How the backend stores a model:
// - q/k/v are one linear (concatenated outputs), gate/up another; o and down stand alone.
// - A 4-bit linear keeps its packed nibbles (K/8 × N int32) and fp16 scales (groups × N). Zeros are unpacked to
//   one byte each (groups × N) only when they differ, which GPTQ's symmetric mode never does; act-order keeps a
//   K-entry int32 row permutation unless it is the identity, which it always is for a single group, and the
//   linears whose input is the normalized hidden state (q/k/v, gate/up) a copy of their norm's fp16 weights in that
//   row order (for the decode kernels). A group size that is not a multiple of 8 can't be packed: such linears are
//   dequantized to fp16.
// - Every dense tensor is fp16 whatever its file dtype. Biases are concatenated like their linears.
// - A tied embedding table is on the GPU (lm_head reads it); an untied one stays in pinned host memory (it
//   is only gathered, one row per token), and lm_head is its own fp16 matrix.
// - Each allocation is at least 16 bytes.
import type { GptqSettings, ModelArchitecture, ModelSpec } from '../model-spec.js';

const FP16 = 2;
const INT32 = 4;
const alloc = (bytes: number): number => Math.max(bytes, 16);

/** The bytes of each part of a model on the GPU (and the host part), for one GPU or a layer split. */
export interface WeightBytes {
  /** Each decoder layer: its two norms and its q/k/v, o, gate/up and down linears. */
  layers: number[];
  /** The embedding table in fp16: on the first GPU when tied, else in pinned host memory. */
  embedding: number;
  tied: boolean;
  /** The final norm (on the last GPU). */
  finalNorm: number;
  /** The untied lm_head (on the last GPU); 0 when tied (the embedding table serves as lm_head). */
  lmHead: number;
}

/** The architecture fields the GPU memory figures depend on. */
export type Arch = Pick<ModelArchitecture, 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' |
  'numKvHeads' | 'headDim' | 'tieWordEmbeddings' | 'attentionBias'>;
type Quant = Pick<GptqSettings, 'groupSize' | 'descAct' | 'sym'> | null;

/** One linear as the backend uploads it: `outs` are the concatenated parts' output sizes. */
function linearBytes(k: number, outs: number[], quant: Quant, bias: boolean): number {
  const n = outs.reduce((a, b) => a + b, 0);
  const groupSize = quant ? (quant.groupSize === -1 ? k : quant.groupSize) : 0;
  let bytes: number;
  if (quant && groupSize % 8 === 0) {
    const groups = Math.ceil(k / groupSize);
    bytes = alloc((k / 8) * n * INT32) + alloc(groups * n * FP16);
    if (!quant.sym) bytes += alloc(groups * n);
    if (quant.descAct && groups > 1) bytes += alloc(k * INT32);
  } else {
    bytes = alloc(k * n * FP16);
  }
  return bytes + (bias ? alloc(n * FP16) : 0);
}

export function weightBytes(spec: { arch: Arch; quant: Quant }): WeightBytes {
  const a = spec.arch;
  const h = a.hiddenSize;
  const q = spec.quant;
  const attn = a.numHeads * a.headDim;
  const kv = a.numKvHeads * a.headDim;
  // Act-order q/k/v and gate/up: their norms in row order as well.
  const rowOrderNorms = q && q.descAct && q.groupSize % 8 === 0 && Math.ceil(h / (q.groupSize === -1 ? h : q.groupSize)) > 1
    ? 2 * alloc(h * FP16) : 0;
  const layer = 2 * alloc(h * FP16) + rowOrderNorms +
    linearBytes(h, [attn, kv, kv], q, a.attentionBias) +
    linearBytes(attn, [h], q, false) +
    linearBytes(h, [a.intermediateSize, a.intermediateSize], q, false) +
    linearBytes(a.intermediateSize, [h], q, false);
  const table = alloc(a.vocabSize * h * FP16);
  return {
    layers: Array.from({ length: a.numLayers }, () => layer),
    embedding: table,
    tied: a.tieWordEmbeddings,
    finalNorm: alloc(h * FP16),
    lmHead: a.tieWordEmbeddings ? 0 : table,
  };
}

/** What stays in pinned host memory: the untied embedding table. */
export function weightsHostBytes(spec: Pick<ModelSpec, 'arch' | 'quant'>): number {
  const w = weightBytes(spec);
  return w.tied ? 0 : w.embedding;
}

/** The weights on one GPU holding the whole model. */
export function weightsGpuBytes(spec: Pick<ModelSpec, 'arch' | 'quant'>): number {
  const w = weightBytes(spec);
  return w.layers.reduce((s, b) => s + b, 0) + w.finalNorm + (w.tied ? w.embedding : w.lmHead);
}

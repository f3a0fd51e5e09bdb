// Everything a model needs on its GPUs, per part, for the split planner (gpu-split.ts) and the memory check
// before a CUDA load: weights (loader/gpu-memory.ts, the one weight estimate), the KV cache per layer and
// position, each stage's scratch and the reserve it keeps free. The scratch and reserve mirror
// Stage::allocate_scratch (cuda/stage.cu) and kStageReserveBytes (cuda/cuda_backend.cu);
// scripts/device/check-split.mjs checks the figures against what the backend reports.
import { weightBytes, type Arch } from './loader/gpu-memory.js';
import type { GptqSettings } from './model-spec.js';

/** The CUDA decode GEMV's row limit (cuda::kGemvMaxRows) and the lm_head rows per pass (Stage::kLogitRows). */
const GEMV_MAX_ROWS = 8;
const LOGIT_ROWS = 64;
/**
 * The sampled pick's state, cuda::top_k_scratch_words: a count and a flag, the walked row (one word per id, rounded
 * up to 4), the penalties' token history (one word per id), the per-block lists (blocks of kTopKSlice logits,
 * kMaxDeviceTopK entries each) and the blocks' maxima.
 */
const TOP_K_SLICE = 2048;
const MAX_DEVICE_TOP_K = 64;
function topKScratchBytes(vocab: number): number {
  const blocks = Math.ceil(vocab / TOP_K_SLICE);
  return 4 * (4 + 4 * Math.ceil(vocab / 4) + vocab + 2 * blocks * MAX_DEVICE_TOP_K + blocks);
}
/** Free memory each stage keeps back: CUDA graphs, cuBLAS workspace, fragmentation. */
export const STAGE_RESERVE_BYTES = 256 * 2 ** 20;

/** What a model needs, part by part, to place its layers on GPUs. */
export interface ModelFootprint {
  /** Weights of each decoder layer. */
  layerWeights: number[];
  /** Weights only the first stage holds: a tied embedding table (an untied one is in host memory). */
  firstWeights: number;
  /** Weights only the last stage holds: the final norm and lm_head (a tied table: the last stage's own copy). */
  lastWeights: number;
  /** Weights a stage that is first and last holds besides its layers (a tied table serves both ends). */
  soleWeights: number;
  /** K and V of one position of one layer. */
  kvBytesPerLayerPosition: number;
  /** Scratch of every stage, and what the last adds (its logits buffer). */
  stageScratch: number;
  lastScratch: number;
  /** Free memory each stage keeps back. */
  stageReserve: number;
  /** Pinned host memory: the untied embedding table. */
  hostBytes: number;
}


/** The prompt path's dequantization tile in fp16 values (dequant_budget_halves: 128 MiB, XLLAMA_DEQUANT_MIB). */
function dequantBudgetHalves(): number {
  const mib = Number.parseInt(process.env.XLLAMA_DEQUANT_MIB ?? '', 10);
  return (mib > 0 ? mib : 128) * 2 ** 19;
}

/** DequantAhead's ring (kDequantAheadSlots): dequantization tiles besides the first, on 4-bit models unless
 * XLLAMA_DEQUANT_AHEAD=0. */
const DEQUANT_AHEAD_SLOTS = 3;
function dequantAheadExtraTiles(quantized: boolean): number {
  return quantized && process.env.XLLAMA_DEQUANT_AHEAD !== '0' ? DEQUANT_AHEAD_SLOTS - 1 : 0;
}

/** [K, N] of a layer's linears as the backend holds them: q/k/v, o_proj, gate/up, down_proj. */
function layerLinears(a: Arch): [number, number][] {
  const { hiddenSize: hid, intermediateSize: I, numHeads: H, numKvHeads: KV, headDim: D } = a;
  return [[hid, (H + 2 * KV) * D], [H * D, hid], [hid, 2 * I], [I, hid]];
}

/**
 * The fused Hopper GEMM (cuda/gemm_q4_wgmma.h): its input rounds a chunk's rows up to 256-token tiles, and a stage
 * of a 4-bit model with a layer linear of a shape it takes (gemm_q4_wgmma_shape_fits) holds its stream-K scratch
 * (132 fp32 partial tiles of 128 x 256, a flag each, two counters) on every GPU, unless XLLAMA_FUSED_PROMPT_GEMM=0.
 */
const FUSED_TILE_TOKENS = 256, FUSED_TILE_FEATURES = 128, FUSED_MAX_BLOCKS = 132;
const FUSED_SCRATCH_BYTES = FUSED_MAX_BLOCKS * FUSED_TILE_FEATURES * FUSED_TILE_TOKENS * 4 + (FUSED_MAX_BLOCKS + 2) * 4;
function fusedScratchBytes(a: Arch, quant: Pick<GptqSettings, 'groupSize'> | null): number[] {
  if (!quant || (process.env.XLLAMA_FUSED_PROMPT_GEMM ?? '').startsWith('0')) return [];
  const fits = ([k, n]: [number, number]) => {
    const group = quant.groupSize === -1 ? k : quant.groupSize;
    return k % 64 === 0 && n % FUSED_TILE_FEATURES === 0 && group > 0 && group % 32 === 0;
  };
  return layerLinears(a).some(fits) ? [FUSED_SCRATCH_BYTES] : [];
}

/** Stage::allocate_scratch, allocation by allocation (each at least 16 bytes). */
function scratchBytes(a: Arch, chunkTokens: number, quant: Pick<GptqSettings, 'groupSize'> | null):
    { stage: number; last: number } {
  const quantized = quant !== null;
  const { hiddenSize: hid, intermediateSize: I, numHeads: H, numKvHeads: KV, headDim: D } = a;
  const rows = Math.max(chunkTokens, GEMV_MAX_ROWS);
  const kmax = Math.max(hid, I, H * D);
  const qkvDim = (H + 2 * KV) * D;
  const workFloats = GEMV_MAX_ROWS * H * 64 * (D + 2);
  // The budget, capped by the largest layer linear taken whole (columns rounded up to 128), at least 128 columns.
  const whole = (k: number, n: number) => k * Math.ceil(n / 128) * 128;
  const largest = Math.max(...layerLinears(a).map(([k, n]) => whole(k, n)));
  const deq = Math.max(Math.min(dequantBudgetHalves(), largest), kmax * 128);
  // q/k/v and gate/up: fp16 rows of a prompt chunk or fp32 rows of a decode step, whichever is larger
  const projection = (width: number) => Math.max(rows * width * 2, GEMV_MAX_ROWS * width * 4);
  const sizes = [
    rows * hid * 4, rows * kmax * 2, projection(qkvDim), rows * H * D * 2, rows * H * D * 2, projection(2 * I),
    rows * I * 2, Math.ceil(rows / FUSED_TILE_TOKENS) * FUSED_TILE_TOKENS * kmax * 2, deq * 2,
    ...fusedScratchBytes(a, quant), workFloats * 4, GEMV_MAX_ROWS * H * 4, 2 * GEMV_MAX_ROWS * 4,
    Math.ceil(hid / 128) * 4, (rows + 1) * 4, (D / 2) * 4,
    ...Array<number>(dequantAheadExtraTiles(quantized)).fill(deq * 2),
  ];
  return {
    stage: sizes.reduce((s, b) => s + Math.max(b, 16), 0),
    // The lm_head's logits slice, its greedy pick's state (a 64-bit key and a counter), the sampled pick's state,
    // and score()'s targets and NLLs for one chunk of rows.
    last: Math.max(LOGIT_ROWS * a.vocabSize * 4, 16) + 16 + 16 + topKScratchBytes(a.vocabSize) +
      2 * Math.max(rows * 4, 16),
  };
}

export function modelFootprint(spec: { arch: Arch; quant: Pick<GptqSettings, 'groupSize' | 'descAct' | 'sym'> | null },
    chunkTokens: number): ModelFootprint {
  const w = weightBytes(spec);
  const scratch = scratchBytes(spec.arch, chunkTokens, spec.quant);
  const head = w.finalNorm + (w.tied ? w.embedding : w.lmHead);
  return {
    layerWeights: w.layers,
    firstWeights: w.tied ? w.embedding : 0,
    lastWeights: head,
    soleWeights: w.finalNorm + (w.tied ? w.embedding : w.lmHead),
    kvBytesPerLayerPosition: spec.arch.numKvHeads * spec.arch.headDim * 2 * 2,
    stageScratch: scratch.stage,
    lastScratch: scratch.last,
    stageReserve: STAGE_RESERVE_BYTES,
    hostBytes: w.tied ? 0 : w.embedding,
  };
}

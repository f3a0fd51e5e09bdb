// The scratch figure mirrors Stage::allocate_scratch: a 4-bit model's stage also holds DequantAhead's two extra
// dequantization tiles (128 MiB of fp16 each, or the largest layer linear where that is smaller), which
// XLLAMA_DEQUANT_AHEAD=0 leaves out, and the fused GEMM's stream-K scratch, which XLLAMA_FUSED_PROMPT_GEMM=0 leaves
// out; an fp16 model has neither.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modelFootprint } from '../../cli/engine/gpu-footprint.js';
import type { Arch } from '../../cli/engine/loader/gpu-memory.js';

const arch: Arch = {
  vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32,
  headDim: 128, tieWordEmbeddings: false, attentionBias: false,
};
const gptq = { groupSize: 128, descAct: false, sym: true };
const TILE = 128 * 2 ** 20;
// 132 partial tiles of 128 x 256 fp32, a flag per tile and two counters (cuda/gemm_q4_wgmma.h)
const FUSED = 132 * 128 * 256 * 4 + 134 * 4;

function withEnv<T>(name: string, value: string | undefined, f: () => T): T {
  const saved = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}
const withAhead = <T>(value: string | undefined, f: () => T): T => withEnv('XLLAMA_DEQUANT_AHEAD', value, f);

test('a 4-bit model counts two more dequantization tiles and the fused GEMM scratch more than an fp16 one', () => {
  const q = withAhead(undefined, () => modelFootprint({ arch, quant: gptq }, 512));
  const f = withAhead(undefined, () => modelFootprint({ arch, quant: null }, 512));
  assert.equal(q.stageScratch - f.stageScratch, 2 * TILE + FUSED);
  assert.equal(q.lastScratch, f.lastScratch);
});

test('XLLAMA_FUSED_PROMPT_GEMM=0 leaves the fused GEMM scratch out, =1 keeps it', () => {
  const q = (value: string | undefined) =>
    withEnv('XLLAMA_FUSED_PROMPT_GEMM', value, () => modelFootprint({ arch, quant: gptq }, 512).stageScratch);
  assert.equal(q(undefined) - q('0'), FUSED);
  assert.equal(q('1'), q(undefined));
});

test('the fused GEMM input rounds a chunk\'s rows up to 256-token tiles', () => {
  const fp16 = (chunk: number) => modelFootprint({ arch, quant: null }, chunk).stageScratch;
  // 300 rows hold 512 in that one buffer (11008 columns of fp16), the rest grows with the rows themselves
  const perRow = fp16(301) - fp16(300);
  assert.equal(fp16(300) - fp16(299), perRow);
  assert.equal(fp16(257) - fp16(256), perRow + 256 * 11008 * 2);
});

test('XLLAMA_DEQUANT_AHEAD=0 leaves the extra tiles out', () => {
  const on = withAhead('1', () => modelFootprint({ arch, quant: gptq }, 512));
  const off = withAhead('0', () => modelFootprint({ arch, quant: gptq }, 512));
  const fp16 = withAhead('0', () => modelFootprint({ arch, quant: null }, 512));
  assert.equal(on.stageScratch - off.stageScratch, 2 * TILE);
  assert.equal(off.stageScratch - fp16.stageScratch, FUSED);
});

test('a small model\'s dequantization tiles hold its largest layer linear whole, not the 128 MiB budget', () => {
  // gate/up is the largest: 64 inputs × 344 outputs, rounded up to 384 columns.
  const tiny: Arch = { ...arch, vocabSize: 512, hiddenSize: 64, intermediateSize: 172, numLayers: 5, numHeads: 8,
    numKvHeads: 4, headDim: 8 };
  const q = withAhead(undefined, () => modelFootprint({ arch: tiny, quant: gptq }, 512));
  const f = withAhead(undefined, () => modelFootprint({ arch: tiny, quant: null }, 512));
  assert.equal(q.stageScratch - f.stageScratch, 2 * (64 * 384 * 2) + FUSED);
});

test('a 4-bit model whose linears the fused GEMM takes none of holds no stream-K scratch', () => {
  // hidden 80 and intermediate 200: no K is a multiple of 64 (q/k/v, o_proj, gate/up, down_proj)
  const odd: Arch = { ...arch, vocabSize: 512, hiddenSize: 80, intermediateSize: 200, numLayers: 3, numHeads: 10,
    numKvHeads: 5, headDim: 8 };
  const q = withAhead('0', () => modelFootprint({ arch: odd, quant: gptq }, 512));
  const f = withAhead('0', () => modelFootprint({ arch: odd, quant: null }, 512));
  assert.equal(q.stageScratch, f.stageScratch);
});

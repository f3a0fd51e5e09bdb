// The scratch figure mirrors Stage::allocate_scratch: a 4-bit model's stage also holds DequantAhead's two extra
// dequantization tiles (128 MiB of fp16 each, or the largest layer linear where that is smaller), which
// XLLAMA_DEQUANT_AHEAD=0 leaves out; an fp16 model has none.
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

function withAhead<T>(value: string | undefined, f: () => T): T {
  const saved = process.env.XLLAMA_DEQUANT_AHEAD;
  if (value === undefined) delete process.env.XLLAMA_DEQUANT_AHEAD;
  else process.env.XLLAMA_DEQUANT_AHEAD = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.XLLAMA_DEQUANT_AHEAD;
    else process.env.XLLAMA_DEQUANT_AHEAD = saved;
  }
}

test('a 4-bit model counts two more dequantization tiles than an fp16 one of the same shape', () => {
  const q = withAhead(undefined, () => modelFootprint({ arch, quant: gptq }, 512));
  const f = withAhead(undefined, () => modelFootprint({ arch, quant: null }, 512));
  assert.equal(q.stageScratch - f.stageScratch, 2 * TILE);
  assert.equal(q.lastScratch, f.lastScratch);
});

test('XLLAMA_DEQUANT_AHEAD=0 leaves the extra tiles out', () => {
  const on = withAhead('1', () => modelFootprint({ arch, quant: gptq }, 512));
  const off = withAhead('0', () => modelFootprint({ arch, quant: gptq }, 512));
  const fp16 = withAhead('0', () => modelFootprint({ arch, quant: null }, 512));
  assert.equal(on.stageScratch - off.stageScratch, 2 * TILE);
  assert.equal(off.stageScratch, fp16.stageScratch);
});

test('a small model\'s dequantization tiles hold its largest layer linear whole, not the 128 MiB budget', () => {
  // gate/up is the largest: 64 inputs × 344 outputs, rounded up to 384 columns.
  const tiny: Arch = { ...arch, vocabSize: 512, hiddenSize: 64, intermediateSize: 172, numLayers: 5, numHeads: 8,
    numKvHeads: 4, headDim: 8 };
  const q = withAhead(undefined, () => modelFootprint({ arch: tiny, quant: gptq }, 512));
  const f = withAhead(undefined, () => modelFootprint({ arch: tiny, quant: null }, 512));
  assert.equal(q.stageScratch - f.stageScratch, 2 * (64 * 384 * 2));
});

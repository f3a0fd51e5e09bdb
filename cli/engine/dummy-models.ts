// The --dummy presets: random GPTQ 4-bit models of real shapes, built directly on the GPU (no download),
// for measuring speed and memory. This table is their one definition: the native side receives the shape.
import { UserError } from '../errors.js';
import type { NativeModelSpec } from '../native/types.js';

export type DummyArch = NativeModelSpec['arch'];

function llama(hiddenSize: number, intermediateSize: number, numLayers: number, numHeads: number, numKvHeads: number,
               vocabSize: number, maxPositionEmbeddings: number, ropeTheta: number): DummyArch {
  return {
    vocabSize, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim: hiddenSize / numHeads,
    maxPositionEmbeddings, rmsNormEps: 1e-5, ropeTheta, tieWordEmbeddings: false, ropeScaling: null,
  };
}

/** Name → shape (Llama 2 7B/13B/70B, Llama 3 8B, and a tiny one for quick checks). */
export const DUMMY_MODELS: Readonly<Record<string, DummyArch>> = {
  'llama-7b': llama(4096, 11008, 32, 32, 32, 32000, 4096, 10000),
  'llama-13b': llama(5120, 13824, 40, 40, 40, 32000, 4096, 10000),
  'llama3-8b': llama(4096, 14336, 32, 32, 8, 128256, 8192, 500000),
  'llama-70b': llama(8192, 28672, 80, 64, 8, 32000, 4096, 10000),
  tiny: llama(256, 688, 2, 4, 2, 512, 512, 10000),
};

export const DUMMY_NAMES = Object.keys(DUMMY_MODELS);

/** Every dummy is symmetric GPTQ 4-bit with this group size (the common published setting). */
export const DUMMY_GROUP_SIZE = 128;

/** The preset's shape, or a one-line error listing the valid names (with or without a GPU). */
export function dummyArch(name: string): DummyArch {
  const arch = DUMMY_MODELS[name];
  if (!arch) throw new UserError(`--dummy: unknown model '${name}' (use one of ${DUMMY_NAMES.join(', ')})`);
  return arch;
}

// Logical parameter count: a GPTQ linear counts in × out like the fp16 one it came from; tied
// embeddings count once.
import type { ModelSpec } from '../model-spec.js';
import { denseTensors, linearLayers } from './expected-tensors.js';

export function parameterCount(spec: Pick<ModelSpec, 'arch'>): number {
  let n = 0;
  for (const d of denseTensors(spec.arch)) n += d.shape.reduce((a, b) => a * b, 1);
  for (const lin of linearLayers(spec.arch)) n += lin.inFeatures * lin.outFeatures + (lin.bias ? lin.outFeatures : 0);
  return n;
}

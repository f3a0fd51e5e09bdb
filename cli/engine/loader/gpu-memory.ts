// How many bytes the weights take on the GPU: quantized linears keep their packed form (g_idx only
// for act-order), and every dense tensor is stored as fp16 whatever its file dtype.
import type { GptqSettings, ModelSpec } from '../model-spec.js';
import { denseTensors, gptqGroups, linearLayers, type LinearShape } from './expected-tensors.js';

const FP16 = 2;
const INT32 = 4;

function gptqLinearBytes(lin: LinearShape, quant: GptqSettings): number {
  const k = lin.inFeatures;
  const n = lin.outFeatures;
  const groups = gptqGroups(k, quant.groupSize);
  const qweight = (k / 8) * n * INT32;
  const scales = groups * n * FP16;
  const qzeros = groups * (n / 8) * INT32;
  const gIdx = quant.descAct ? k * INT32 : 0;
  return qweight + scales + qzeros + gIdx;
}

export function weightsGpuBytes(spec: Pick<ModelSpec, 'arch' | 'quant'>): number {
  let bytes = 0;
  for (const d of denseTensors(spec.arch)) bytes += d.shape.reduce((a, b) => a * b, 1) * FP16;
  for (const lin of linearLayers(spec.arch)) {
    bytes += spec.quant ? gptqLinearBytes(lin, spec.quant) : lin.inFeatures * lin.outFeatures * FP16;
    if (lin.bias) bytes += lin.outFeatures * FP16;
  }
  return bytes;
}

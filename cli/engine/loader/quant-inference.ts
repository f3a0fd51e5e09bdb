// GPTQ settings inferred from the tensors when neither config.json nor quantize_config.json says them.
// Shapes give the group size; layer 0's g_idx and qzeros (a few KB, read with readSync) give act-order,
// symmetry and the zero-point convention.
import { closeSync, openSync, readSync } from 'node:fs';
import { UserError } from '../../errors.js';
import type { GptqSettings, ModelArchitecture } from '../model-spec.js';
import { linearLayers, type LinearShape } from './expected-tensors.js';
import type { RawTensor } from './safetensors-header.js';

/** Small tensors only: inference reads g_idx and qzeros of one layer. */
const MAX_INSPECT_BYTES = 16 * 1024 * 1024;

function readInt32s(t: RawTensor): Int32Array {
  if (t.byteLength > MAX_INSPECT_BYTES) throw new UserError(`${t.file}: tensor ${t.name} is too large to inspect`);
  const buf = Buffer.alloc(t.byteLength);
  const fd = openSync(t.file, 'r');
  try {
    readSync(fd, buf, 0, t.byteLength, t.offset);
  } finally {
    closeSync(fd);
  }
  return new Int32Array(buf.buffer, buf.byteOffset, t.byteLength / 4);
}

/** Group size = in_features / scales rows, taken from the linear with the most groups. */
function inferGroupSize(linears: LinearShape[], tensors: Map<string, RawTensor>, where: string): number {
  let best: { lin: LinearShape; rows: number } | null = null;
  for (const lin of linears) {
    const scales = tensors.get(`${lin.name}.scales`);
    if (!scales) throw new UserError(`${where}: tensor ${lin.name}.scales is missing (GPTQ tensors found, so every linear needs scales)`);
    const rows = scales.shape[0] ?? 0;
    if (!best || rows > best.rows) best = { lin, rows };
  }
  if (!best || best.rows <= 1) return -1;
  if (best.lin.inFeatures % best.rows !== 0) {
    throw new UserError(`${tensors.get(`${best.lin.name}.scales`)!.file}: tensor ${best.lin.name}.scales has ${best.rows} rows, which does not divide the input size ${best.lin.inFeatures}`);
  }
  return best.lin.inFeatures / best.rows;
}

/** Act-order when some g_idx of layer 0 is not k // group_size. */
function inferDescAct(layer0: LinearShape[], tensors: Map<string, RawTensor>, groupSize: number): boolean {
  for (const lin of layer0) {
    const t = tensors.get(`${lin.name}.g_idx`);
    if (!t || t.dtype !== 'I32') continue;
    const g = readInt32s(t);
    const size = groupSize === -1 ? lin.inFeatures : groupSize;
    for (let k = 0; k < g.length; k++) if (g[k] !== Math.floor(k / size)) return true;
  }
  return false;
}

/**
 * Symmetric 4-bit GPTQ stores zero 8 in every nibble: 0x77777777 in v1 files (zero − 1), 0x88888888 in
 * gptq_v2 files. Anything else is asymmetric, and then the convention can't be told: assume v1, as
 * AutoGPTQ writes by default.
 */
function inferZeros(layer0: LinearShape[], tensors: Map<string, RawTensor>): Pick<GptqSettings, 'sym' | 'checkpointFormat'> {
  const words = new Set<number>();
  for (const lin of layer0) {
    const t = tensors.get(`${lin.name}.qzeros`);
    if (t && t.dtype === 'I32') for (const w of readInt32s(t)) words.add(w >>> 0);
  }
  if (words.size === 1 && words.has(0x77777777)) return { sym: true, checkpointFormat: 'gptq' };
  if (words.size === 1 && words.has(0x88888888)) return { sym: true, checkpointFormat: 'gptq_v2' };
  return { sym: false, checkpointFormat: 'gptq' };
}

export function hasGptqTensors(tensors: Map<string, RawTensor>): boolean {
  for (const name of tensors.keys()) if (name.endsWith('.qweight')) return true;
  return false;
}

export function inferGptqSettings(arch: ModelArchitecture, tensors: Map<string, RawTensor>, where: string): GptqSettings {
  const linears = linearLayers(arch);
  const groupSize = inferGroupSize(linears, tensors, where);
  const layer0 = linears.filter((l) => l.name.startsWith('model.layers.0.'));
  return {
    bits: 4,
    groupSize,
    descAct: inferDescAct(layer0, tensors, groupSize),
    ...inferZeros(layer0, tensors),
    source: 'inferred',
  };
}

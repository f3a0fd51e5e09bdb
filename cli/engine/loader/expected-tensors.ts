// The tensors a model of a given architecture and quantization must have, and the check that the
// safetensors files hold each of them with the right dtype and shape.
import { UserError } from '../../errors.js';
import type { GptqSettings, ModelArchitecture } from '../model-spec.js';
import type { RawTensor } from './safetensors-header.js';

export const FLOAT_DTYPES = ['F16', 'BF16', 'F32'];

/** One linear layer: `name` has no suffix (e.g. model.layers.0.self_attn.q_proj). */
export interface LinearShape {
  name: string;
  inFeatures: number;
  outFeatures: number;
  /** The bias tensor must be there (Qwen2 q/k/v). */
  bias: boolean;
}

/** A tensor stored as is (embeddings, norms, lm_head). */
export interface DenseShape {
  name: string;
  shape: number[];
  /** The config.json fields its shape comes from, for messages. */
  why: string;
}

export function linearLayers(arch: ModelArchitecture): LinearShape[] {
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: ff, attentionBias } = arch;
  const out: LinearShape[] = [];
  for (let l = 0; l < arch.numLayers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      { name: `${p}self_attn.q_proj`, inFeatures: h, outFeatures: numHeads * headDim, bias: attentionBias },
      { name: `${p}self_attn.k_proj`, inFeatures: h, outFeatures: numKvHeads * headDim, bias: attentionBias },
      { name: `${p}self_attn.v_proj`, inFeatures: h, outFeatures: numKvHeads * headDim, bias: attentionBias },
      { name: `${p}self_attn.o_proj`, inFeatures: numHeads * headDim, outFeatures: h, bias: false },
      { name: `${p}mlp.gate_proj`, inFeatures: h, outFeatures: ff, bias: false },
      { name: `${p}mlp.up_proj`, inFeatures: h, outFeatures: ff, bias: false },
      { name: `${p}mlp.down_proj`, inFeatures: ff, outFeatures: h, bias: false },
    );
  }
  return out;
}

export function denseTensors(arch: ModelArchitecture): DenseShape[] {
  const h = arch.hiddenSize;
  const normWhy = `config.json: ${arch.architecture}, ${arch.numLayers} layers, hidden_size ${h}`;
  const vocabWhy = `${normWhy}, vocab_size ${arch.vocabSize}`;
  const out: DenseShape[] = [{ name: 'model.embed_tokens.weight', shape: [arch.vocabSize, h], why: vocabWhy }];
  for (let l = 0; l < arch.numLayers; l++) {
    out.push({ name: `model.layers.${l}.input_layernorm.weight`, shape: [h], why: normWhy });
    out.push({ name: `model.layers.${l}.post_attention_layernorm.weight`, shape: [h], why: normWhy });
  }
  out.push({ name: 'model.norm.weight', shape: [h], why: normWhy });
  if (!arch.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [arch.vocabSize, h], why: vocabWhy });
  return out;
}

const LAYER_TENSOR = /^model\.layers\.(\d+)\./;

/**
 * num_hidden_layers against the layers the files really hold. Runs before anything proportional to the
 * layer count is built, so a config claiming a billion layers is refused at once instead of after a list
 * of seven billion expected tensors has filled the memory.
 */
export function checkLayerCount(arch: ModelArchitecture, tensors: Map<string, RawTensor>, configFile: string): void {
  const held = new Set<number>();
  let last = -1;
  for (const name of tensors.keys()) {
    const m = LAYER_TENSOR.exec(name);
    if (!m) continue;
    const layer = Number(m[1]);
    held.add(layer);
    last = Math.max(last, layer);
  }
  const n = arch.numLayers;
  if (n > held.size) {
    throw new UserError(`${configFile}: num_hidden_layers is ${n}, but the safetensors files hold ${held.size} layer${held.size === 1 ? '' : 's'}`);
  }
  if (last >= n) {
    throw new UserError(`${configFile}: num_hidden_layers is ${n}, but the safetensors files also hold layer ${last} (model.layers.${last}.*)`);
  }
}

/** Rows of scales/qzeros: one per group, or one for the whole input when group_size is -1. */
export function gptqGroups(inFeatures: number, groupSize: number): number {
  return groupSize === -1 ? 1 : inFeatures / groupSize;
}

const fmt = (shape: number[]): string => `[${shape.join(', ')}]`;

class TensorChecker {
  constructor(private readonly tensors: Map<string, RawTensor>, private readonly where: string) {}

  /** Checks the tensor when present; returns whether it was. */
  check(name: string, dtypes: string[], shape: number[], required: boolean, why: string): boolean {
    const t = this.tensors.get(name);
    if (!t) {
      if (required) throw new UserError(`${this.where}: tensor ${name} is missing from the safetensors files (${why})`);
      return false;
    }
    if (!dtypes.includes(t.dtype)) {
      throw new UserError(`${t.file}: tensor ${name} has dtype ${t.dtype}, expected ${dtypes.join(' or ')}`);
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new UserError(`${t.file}: tensor ${name} has shape ${fmt(t.shape)}, expected ${fmt(shape)} (${why})`);
    }
    return true;
  }
}

function checkGptqLinear(c: TensorChecker, lin: LinearShape, quant: GptqSettings, quantFile: string): void {
  const { name, inFeatures: k, outFeatures: n } = lin;
  if (quant.groupSize !== -1 && k % quant.groupSize !== 0) {
    throw new UserError(`${quantFile}: group_size ${quant.groupSize} does not divide the input size ${k} of ${name}`);
  }
  if (k % 8 !== 0 || n % 8 !== 0) {
    throw new UserError(`${name}: GPTQ 4-bit packing needs input and output sizes divisible by 8, got ${k} × ${n}`);
  }
  const groups = gptqGroups(k, quant.groupSize);
  const why = `GPTQ 4-bit linear ${k} → ${n}, ${groups} group(s)`;
  c.check(`${name}.qweight`, ['I32'], [k / 8, n], true, why);
  c.check(`${name}.qzeros`, ['I32'], [groups, n / 8], true, why);
  c.check(`${name}.scales`, ['F16'], [groups, n], true, why);
  c.check(`${name}.g_idx`, ['I32'], [k], false, why);
  c.check(`${name}.bias`, FLOAT_DTYPES, [n], lin.bias, 'the config says this projection has a bias');
}

/**
 * Throws a one-line UserError for the first expected tensor that is missing or has the wrong dtype or
 * shape. `where` names the model folder, `quantFile` the file the GPTQ settings came from.
 */
export function checkExpectedTensors(arch: ModelArchitecture, quant: GptqSettings | null,
    tensors: Map<string, RawTensor>, where: string, quantFile: string): void {
  const c = new TensorChecker(tensors, where);
  for (const d of denseTensors(arch)) c.check(d.name, FLOAT_DTYPES, d.shape, true, d.why);
  for (const lin of linearLayers(arch)) {
    if (quant) {
      checkGptqLinear(c, lin, quant, quantFile);
    } else {
      c.check(`${lin.name}.weight`, FLOAT_DTYPES, [lin.outFeatures, lin.inFeatures], true, 'out × in from config.json');
      c.check(`${lin.name}.bias`, FLOAT_DTYPES, [lin.outFeatures], lin.bias, 'the config says this projection has a bias');
    }
  }
}

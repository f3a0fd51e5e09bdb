// What the loader learns about a model folder, and what the native side needs to map and run it.
// The loader (cli/engine/loader) produces a ModelSpec; the native model (addon glue) consumes it.

import type { ModelShape } from '../native/types.js';
import type { SamplingDefaults } from './loader/generation-config.js';

export type TensorDType = 'F16' | 'BF16' | 'F32' | 'I32';

export interface TensorEntry {
  name: string;
  /** Absolute path of the safetensors file holding it. */
  file: string;
  /** Absolute byte offset of the tensor's data within the file (8 + header length + data_offsets[0]). */
  offset: number;
  byteLength: number;
  dtype: TensorDType;
  shape: number[];
}

export interface RopeScaling {
  type: 'linear' | 'dynamic' | 'llama3' | 'yarn';
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
  /** YaRN: cos and sin are multiplied by it (resolved from attention_factor, or mscale / mscale_all_dim, or factor). */
  attentionFactor?: number;
  /** YaRN: the rotation counts that bound the ramp between extrapolated and interpolated frequencies. */
  betaFast?: number;
  betaSlow?: number;
  /** YaRN: the ramp's bounds rounded to whole dimensions (transformers' default). */
  truncate?: boolean;
}

export type Architecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';

/** The model's sizes (ModelShape, shared with the native side) and the rest of its architecture. */
export interface ModelArchitecture extends ModelShape {
  architecture: Architecture;
  modelType: string;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  attentionBias: boolean;
  torchDtype: string | null;
}

export interface GptqSettings {
  bits: 4;
  /** Group size as stored; -1 means one group over the whole input. */
  groupSize: number;
  descAct: boolean;
  sym: boolean;
  /** 'gptq' stores zero-1 in qzeros (AutoGPTQ v1), 'gptq_v2' stores the zero as is. */
  checkpointFormat: 'gptq' | 'gptq_v2';
  /** Where the settings came from. */
  source: 'config.json' | 'quantize_config.json' | 'inferred';
}

/** A chat template kept in a file of its own (chat_template.jinja). */
export interface ChatTemplateFile {
  path: string;
  text: string;
}

/** Which file named a special token (bos_token, eos_token) where it was not tokenizer_config.json. */
export type SpecialTokenSources = Partial<Record<'bos_token' | 'eos_token', string>>;

export interface TokenizerFiles {
  tokenizerJsonPath: string;
  /** tokenizer_config.json parsed, with `__type: AddedToken` objects flattened to their content. */
  tokenizerConfig: Record<string, unknown>;
  /** Special tokens that special_tokens_map.json gave (transformers' legacy path), by key: that file's path. */
  specialTokenSources: SpecialTokenSources;
  generationConfig: Record<string, unknown> | null;
  /** chat_template.jinja; when present it replaces tokenizer_config.json's chat_template, as in transformers. */
  chatTemplateFile: ChatTemplateFile | null;
}

export interface ModelSpec {
  dir: string;
  arch: ModelArchitecture;
  /** null for unquantized fp16/bf16/fp32 checkpoints. */
  quant: GptqSettings | null;
  /** Every tensor of every shard, by name. */
  tensors: Record<string, TensorEntry>;
  /** The safetensors files, with their sizes in bytes. */
  files: { path: string; size: number }[];
  tokenizer: TokenizerFiles;
  /** Special token ids from config.json / generation_config.json. */
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** generation_config.json's sampling settings, which replace xllama's defaults (flags replace both). */
  samplingDefaults: SamplingDefaults;
}

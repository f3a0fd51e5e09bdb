// What `xllama info MODEL` reports about a model, as one plain object (the --json output).
import type { GptqSettings, ModelSpec, RopeScaling } from '../model-spec.js';
import type { SamplingDefaults } from './generation-config.js';
import { weightsGpuBytes } from './gpu-memory.js';
import { parameterCount } from './parameters.js';

export interface ModelSummary {
  dir: string;
  architecture: string;
  modelType: string;
  layers: number;
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  contextLength: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tiedEmbeddings: boolean;
  attentionBias: boolean;
  torchDtype: string | null;
  parameters: number;
  quantization: GptqSettings | null;
  files: { path: string; size: number }[];
  diskBytes: number;
  gpuWeightBytes: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** generation_config.json's sampling settings, which generate and chat use unless a flag says otherwise. */
  samplingDefaults: SamplingDefaults;
  /** What the checked tokenizer says; null when the summary was made without one. */
  tokenizer: TokenizerSummary | null;
}

export interface TokenizerSummary {
  /** The tokenizer's largest id + 1; at most the model's vocabSize (embeddings may be padded). */
  vocabSize: number;
  /** The ids generation uses: BOS as prompts get it, every id that ends generation. */
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** The model has a chat template (and it parses). */
  chatTemplate: boolean;
  /** The file that holds it: chat_template.jinja or tokenizer_config.json; null when there is none. */
  chatTemplateFile: string | null;
}

export function summarizeModel(spec: ModelSpec, tokenizer: TokenizerSummary | null = null): ModelSummary {
  const a = spec.arch;
  return {
    dir: spec.dir,
    architecture: a.architecture,
    modelType: a.modelType,
    layers: a.numLayers,
    hiddenSize: a.hiddenSize,
    intermediateSize: a.intermediateSize,
    heads: a.numHeads,
    kvHeads: a.numKvHeads,
    headDim: a.headDim,
    vocabSize: a.vocabSize,
    contextLength: a.maxPositionEmbeddings,
    rmsNormEps: a.rmsNormEps,
    ropeTheta: a.ropeTheta,
    ropeScaling: a.ropeScaling,
    tiedEmbeddings: a.tieWordEmbeddings,
    attentionBias: a.attentionBias,
    torchDtype: a.torchDtype,
    parameters: parameterCount(spec),
    quantization: spec.quant,
    files: spec.files,
    diskBytes: spec.files.reduce((s, f) => s + f.size, 0),
    gpuWeightBytes: weightsGpuBytes(spec),
    bosTokenId: spec.bosTokenId,
    eosTokenIds: spec.eosTokenIds,
    samplingDefaults: spec.samplingDefaults,
    tokenizer,
  };
}

// config.json → ModelArchitecture: the supported Llama-family architectures and their sizes.
import { showValue, UserError } from '../../errors.js';
import type { Architecture, ModelArchitecture, RopeScaling } from '../model-spec.js';
import { FieldReader } from './config-fields.js';
import { isJsonObject, type JsonObject } from './json-file.js';
import { INT32_MAX } from '../native-limits.js';

export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'];

function parseArchitectureName(cfg: FieldReader): Architecture {
  const list = cfg.obj.architectures;
  if (!Array.isArray(list) || list.length === 0 || typeof list[0] !== 'string') {
    cfg.fail('architectures', `${list === undefined ? 'is missing' : `is ${showValue(list)}`}, expected a list such as ["LlamaForCausalLM"]`);
  }
  const name = list[0] as string;
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(name)) {
    cfg.fail('architectures', `names ${name}, which is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  }
  return name as Architecture;
}

/** YaRN's attention scaling of a context `scale` times longer (transformers' get_mscale). */
function yarnMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/**
 * YaRN as transformers 5 reads it: factor (else max_position_embeddings / original_max_position_embeddings),
 * the original context (else max_position_embeddings), the attention factor (given, or from mscale and
 * mscale_all_dim, or from factor), beta_fast / beta_slow (32 / 1 where absent or 0) and truncate (true).
 */
function parseYarn(r: FieldReader, raw: JsonObject, context: RopeContext): RopeScaling {
  // transformers tests these with `or` / truthiness: 0 counts as absent.
  const optional = (key: string): number | null => (r.has(key) && raw[key] !== 0 ? r.positive(key) : null);
  const maxPositionEmbeddings = context.maxPositionEmbeddings;
  const original = context.topLevelOriginal() ?? r.int('original_max_position_embeddings', maxPositionEmbeddings);
  const factor = r.has('factor') ? r.positive('factor') : maxPositionEmbeddings / original;
  const mscale = optional('mscale'), mscaleAllDim = optional('mscale_all_dim');
  const attentionFactor = optional('attention_factor') ??
    (mscale !== null && mscaleAllDim !== null ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor));
  return {
    type: 'yarn', factor, originalMaxPositionEmbeddings: original, attentionFactor,
    betaFast: optional('beta_fast') ?? 32, betaSlow: optional('beta_slow') ?? 1, truncate: r.bool('truncate', true),
  };
}

/** What YaRN's defaults come from besides rope_scaling itself. */
interface RopeContext {
  maxPositionEmbeddings: number;
  /**
   * config.json's own original_max_position_embeddings, which transformers puts before rope_scaling's (Phi-3's
   * form). Read only for YaRN: other configs may carry any value there, as transformers ignores it for them.
   */
  topLevelOriginal: () => number | null;
}

/** rope_scaling (or transformers 5 rope_parameters): `type` or `rope_type`; "default" means none. */
function parseRopeScaling(raw: unknown, file: string, key: string, context: RopeContext): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (!isJsonObject(raw)) throw new UserError(`${file}: ${key} is ${showValue(raw)}, expected an object or null`);
  const r = new FieldReader(raw, file, `${key}.`);
  const type = r.string('rope_type') ?? r.string('type');
  if (type === null || type === 'default') return null;
  if (type !== 'linear' && type !== 'dynamic' && type !== 'llama3' && type !== 'yarn') {
    r.fail(raw.rope_type !== undefined ? 'rope_type' : 'type', `is "${type}", which is not supported (linear, dynamic, llama3, yarn)`);
  }
  if (type === 'yarn') return parseYarn(r, raw, context);
  const scaling: RopeScaling = { type: type as RopeScaling['type'], factor: r.positive('factor') };
  if (type === 'llama3') {
    scaling.lowFreqFactor = r.positive('low_freq_factor');
    scaling.highFreqFactor = r.positive('high_freq_factor');
    scaling.originalMaxPositionEmbeddings = r.int('original_max_position_embeddings');
  } else if (r.has('original_max_position_embeddings')) {
    scaling.originalMaxPositionEmbeddings = r.int('original_max_position_embeddings');
  }
  return scaling;
}

/**
 * Mistral v0.1 (and Qwen2 with use_sliding_window) attend only to the last sliding_window positions.
 * The engine runs full attention, which is the same thing up to that length, so the usable context is
 * capped there instead of running past it with different results.
 */
function contextLength(cfg: FieldReader, architecture: Architecture): number {
  const max = cfg.int('max_position_embeddings', 2048);
  if (!cfg.has('sliding_window')) return max;
  if (architecture === 'Qwen2ForCausalLM' && !cfg.bool('use_sliding_window', false)) return max;
  if (architecture === 'LlamaForCausalLM') return max;
  return Math.min(max, cfg.int('sliding_window'));
}

export function parseModelConfig(raw: JsonObject, file: string): ModelArchitecture {
  const cfg = new FieldReader(raw, file);
  const architecture = parseArchitectureName(cfg);
  const hiddenSize = cfg.int('hidden_size');
  const numHeads = cfg.int('num_attention_heads');
  const numKvHeads = cfg.int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    cfg.fail('num_key_value_heads', `is ${numKvHeads}, which does not divide num_attention_heads ${numHeads}`);
  }
  if (!cfg.has('head_dim') && hiddenSize % numHeads !== 0) {
    cfg.fail('num_attention_heads', `is ${numHeads}, which does not divide hidden_size ${hiddenSize} (and head_dim is not given)`);
  }
  const headDim = cfg.int('head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) cfg.fail('head_dim', `is ${headDim}, expected an even number (rotary embeddings)`);
  if (numHeads * headDim > INT32_MAX) {
    cfg.fail('num_attention_heads', `× head_dim is ${numHeads} × ${headDim}, more than xllama supports (at most ${INT32_MAX})`);
  }

  // transformers 5 moves rope_theta and the scaling into rope_parameters.
  const ropeParams = isJsonObject(raw.rope_parameters) ? raw.rope_parameters : null;
  const ropeTheta = ropeParams && ropeParams.rope_theta !== undefined
    ? new FieldReader(ropeParams, file, 'rope_parameters.').positive('rope_theta')
    : cfg.positive('rope_theta', 10000);
  const ropeContext: RopeContext = {
    maxPositionEmbeddings: cfg.int('max_position_embeddings', 2048),
    topLevelOriginal: () => (cfg.has('original_max_position_embeddings') ? cfg.int('original_max_position_embeddings') : null),
  };
  const ropeScaling = ropeParams
    ? parseRopeScaling(ropeParams, file, 'rope_parameters', ropeContext)
    : parseRopeScaling(raw.rope_scaling, file, 'rope_scaling', ropeContext);

  // Qwen2 always has q/k/v biases; Llama's attention_bias would also put one on o_proj, which we don't run.
  const attentionBias = architecture === 'Qwen2ForCausalLM';
  if (architecture !== 'Qwen2ForCausalLM' && cfg.bool('attention_bias', false)) {
    cfg.fail('attention_bias', `is true; biases on the attention projections of ${architecture} are not supported`);
  }
  if (cfg.bool('mlp_bias', false)) cfg.fail('mlp_bias', 'is true; MLP biases are not supported');
  const act = cfg.string('hidden_act');
  if (act !== null && act !== 'silu') cfg.fail('hidden_act', `is "${act}", expected "silu"`);

  return {
    architecture,
    modelType: cfg.string('model_type') ?? '',
    vocabSize: cfg.int('vocab_size'),
    hiddenSize,
    intermediateSize: cfg.int('intermediate_size'),
    numLayers: cfg.int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    maxPositionEmbeddings: contextLength(cfg, architecture),
    rmsNormEps: cfg.positive('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    tieWordEmbeddings: cfg.bool('tie_word_embeddings', false),
    attentionBias,
    torchDtype: cfg.string('torch_dtype') ?? cfg.string('dtype'),
  };
}

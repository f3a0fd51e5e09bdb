// GPTQ settings from config.json's quantization_config or quantize_config.json (inference from the
// tensors themselves lives in quant-inference.ts).
import { showValue, UserError } from '../../errors.js';
import type { GptqSettings } from '../model-spec.js';
import { FieldReader } from './config-fields.js';
import type { JsonObject } from './json-file.js';
import { INT32_MAX } from '../native-limits.js';

/**
 * Parses a GPTQ settings object. `prefix` is the field path inside `file` ("quantization_config." for
 * config.json, "" for quantize_config.json). Anything but 4-bit GPTQ is refused.
 */
export function parseGptqSettings(raw: JsonObject, file: string, prefix: string, source: GptqSettings['source']): GptqSettings {
  const r = new FieldReader(raw, file, prefix);
  const method = r.string('quant_method');
  if (method !== null && method.toLowerCase() !== 'gptq') {
    r.fail('quant_method', `is "${method}"; only GPTQ 4-bit checkpoints are supported`);
  }
  const bits = r.int('bits');
  if (bits !== 4) r.fail('bits', `is ${bits}; only 4-bit GPTQ is supported`);
  const groupSize = raw.group_size ?? -1;
  if (typeof groupSize !== 'number' || !Number.isInteger(groupSize) || (groupSize !== -1 && groupSize < 1) || groupSize > INT32_MAX) {
    r.fail('group_size', `is ${showValue(groupSize)}, expected a positive integer or -1 (no grouping)`);
  }
  if (r.bool('is_marlin_format', false)) r.fail('is_marlin_format', 'is true; Marlin-packed checkpoints are not supported');
  // AutoGPTQ writes checkpoint_format, GPTQModel writes format.
  const formatKey = r.has('checkpoint_format') ? 'checkpoint_format' : 'format';
  const format = r.string(formatKey) ?? 'gptq';
  if (format !== 'gptq' && format !== 'gptq_v2') {
    r.fail(formatKey, `is "${format}", expected "gptq" or "gptq_v2"`);
  }
  return {
    bits: 4,
    groupSize: groupSize as number,
    descAct: r.bool('desc_act', false),
    sym: r.bool('sym', true),
    checkpointFormat: format as GptqSettings['checkpointFormat'],
    source,
  };
}

/** The quantization_config of config.json when it is there; quantize_config.json otherwise. */
export function gptqSettingsFromConfigs(config: JsonObject, configFile: string, quantizeConfig: JsonObject | null,
    quantizeConfigFile: string): GptqSettings | null {
  const inConfig = config.quantization_config;
  if (inConfig !== undefined && inConfig !== null) {
    if (typeof inConfig !== 'object' || Array.isArray(inConfig)) {
      throw new UserError(`${configFile}: quantization_config is ${showValue(inConfig)}, expected an object`);
    }
    return parseGptqSettings(inConfig as JsonObject, configFile, 'quantization_config.', 'config.json');
  }
  if (quantizeConfig) return parseGptqSettings(quantizeConfig, quantizeConfigFile, '', 'quantize_config.json');
  return null;
}

// loadModelSpec(dir): reads a Hugging Face model folder (configs, tokenizer files, safetensors headers),
// checks every tensor the architecture needs, and returns the ModelSpec the native side maps. Tensor
// data is never read here, except a few KB of layer 0 when GPTQ settings must be inferred.
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../../errors.js';
import type { ModelSpec, TensorDType, TensorEntry } from '../model-spec.js';
import { parseModelConfig } from './config.js';
import { checkExpectedTensors, checkLayerCount } from './expected-tensors.js';
import { readJsonObject } from './json-file.js';
import { gptqSettingsFromConfigs } from './quantization.js';
import { hasGptqTensors, inferGptqSettings } from './quant-inference.js';
import { readSafetensorsHeader, type RawTensor } from './safetensors-header.js';
import { planShards } from './shards.js';
import { readTokenizerFiles, specialTokenIds } from './tokenizer-config.js';
import { samplingDefaults } from './generation-config.js';

export { weightBytes, weightsGpuBytes, weightsHostBytes, type WeightBytes } from './gpu-memory.js';
export { parameterCount } from './parameters.js';

const SPEC_DTYPES: readonly string[] = ['F16', 'BF16', 'F32', 'I32'];

function checkFolder(dir: string): void {
  if (!existsSync(dir)) throw new UserError(`${dir}: no such model folder`);
  if (!statSync(dir).isDirectory()) throw new UserError(`${dir}: is not a folder (give the model folder)`);
}

/** All tensors of all shards by name; a name in two shards, or one the index misplaces, is an error. */
function readAllTensors(dir: string): { tensors: Map<string, RawTensor>; files: { path: string; size: number }[] } {
  const plan = planShards(dir);
  const tensors = new Map<string, RawTensor>();
  const files: { path: string; size: number }[] = [];
  for (const file of plan.files) {
    const header = readSafetensorsHeader(file);
    files.push({ path: file, size: header.size });
    for (const t of header.tensors) {
      const prev = tensors.get(t.name);
      if (prev) throw new UserError(`${file}: tensor ${t.name} is also in ${basename(prev.file)}`);
      tensors.set(t.name, t);
    }
  }
  if (plan.weightMap) {
    for (const [name, shard] of plan.weightMap) {
      const t = tensors.get(name);
      if (!t || t.file !== shard) {
        throw new UserError(`${plan.indexFile}: lists tensor ${name} in ${basename(shard)}, but ${t ? `it is in ${basename(t.file)}` : 'that file does not hold it'}`);
      }
    }
  }
  return { tensors, files };
}

export function loadModelSpec(dirArg: string): ModelSpec {
  const dir = resolve(dirArg);
  checkFolder(dir);
  const configFile = join(dir, 'config.json');
  const config = readJsonObject(configFile, true);
  const arch = parseModelConfig(config, configFile);
  const { tensors, files } = readAllTensors(dir);

  if (tensors.has('lm_head.qweight')) throw new UserError(`${tensors.get('lm_head.qweight')!.file}: a quantized lm_head (lm_head.qweight) is not supported`);
  // No lm_head.weight means the output projection is the embedding matrix, whatever the config says.
  if (!tensors.has('lm_head.weight')) arch.tieWordEmbeddings = true;

  const quantizeConfigFile = join(dir, 'quantize_config.json');
  let quant = gptqSettingsFromConfigs(config, configFile, readJsonObject(quantizeConfigFile, false), quantizeConfigFile);
  // Before anything proportional to the layer count is built (inference walks every linear layer).
  checkLayerCount(arch, tensors, configFile);
  if (!quant && hasGptqTensors(tensors)) quant = inferGptqSettings(arch, tensors, dir);
  const quantFile = quant?.source === 'config.json' ? `${configFile} (quantization_config)`
    : quant?.source === 'quantize_config.json' ? quantizeConfigFile : `${dir} (inferred from tensor shapes)`;
  checkExpectedTensors(arch, quant, tensors, dir, quantFile);

  const tokenizer = readTokenizerFiles(dir);
  const generationFile = join(dir, 'generation_config.json');
  const ids = specialTokenIds(config, configFile, tokenizer.generationConfig, generationFile, arch.vocabSize);
  const sampling = samplingDefaults(tokenizer.generationConfig, generationFile);

  const specTensors: Record<string, TensorEntry> = {};
  for (const t of tensors.values()) {
    if (!SPEC_DTYPES.includes(t.dtype)) continue; // extra tensors of other dtypes are not used
    specTensors[t.name] = { ...t, dtype: t.dtype as TensorDType };
  }
  return { dir, arch, quant, tensors: specTensors, files, tokenizer, ...ids, samplingDefaults: sampling };
}

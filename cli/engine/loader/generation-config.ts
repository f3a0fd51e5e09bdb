// generation_config.json's sampling settings: what the model's makers recommend (Llama 3 Instruct: temperature
// 0.6, top-p 0.9). As in vLLM, the ones the file gives replace xllama's defaults in generate and chat, and flags
// replace both. `do_sample` is not read (vLLM doesn't either): a file with a temperature means it for sampling.
import { showValue, UserError } from '../../errors.js';
import { DEFAULT_SAMPLING, checkSampling, type SamplingParams } from '../sampler.js';
import type { JsonObject } from './json-file.js';

export type SamplingDefaults = Partial<Pick<SamplingParams, 'temperature' | 'topK' | 'topP' | 'minP' | 'typicalP' | 'repeatPenalty'>>;

/** generation_config.json's key for each setting, and the flag name checkSampling reports it by. */
const FIELDS: { key: string; param: keyof SamplingDefaults; flag: string }[] = [
  { key: 'temperature', param: 'temperature', flag: 'temperature' },
  { key: 'top_k', param: 'topK', flag: 'top-k' },
  { key: 'top_p', param: 'topP', flag: 'top-p' },
  { key: 'min_p', param: 'minP', flag: 'min-p' },
  { key: 'typical_p', param: 'typicalP', flag: 'typical-p' },
  { key: 'repetition_penalty', param: 'repeatPenalty', flag: 'repeat-penalty' },
];

/** The sampling settings `generation` gives (null fields are absent), each range-checked as its flag is. */
export function samplingDefaults(generation: JsonObject | null, file: string): SamplingDefaults {
  const out: SamplingDefaults = {};
  if (!generation) return out;
  for (const { key, param, flag } of FIELDS) {
    const v = generation[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number') throw new UserError(`${file}: ${key} is ${showValue(v)}, expected a number`);
    const problem = checkSampling({ ...DEFAULT_SAMPLING, [param]: v });
    // "top-p must be in (0, 1] (got 0)" → "top_p must be …": the file's own name for it.
    if (problem) throw new UserError(`${file}: ${key}${problem.slice(flag.length)}`);
    out[param] = v;
  }
  return out;
}

/** "temperature 0.6, top-p 0.9": the settings a model's file gave, for headers and `info`. */
export function describeSamplingDefaults(d: SamplingDefaults): string {
  return FIELDS.filter((f) => d[f.param] !== undefined).map((f) => `${f.flag} ${d[f.param]}`).join(', ');
}

// What the chat header says about the model and the settings, as plain strings (the Ink header draws them).
import type { SamplingParams } from '../engine/sampler.js';
import type { ModelSpec } from '../engine/model-spec.js';
import { describeSamplingDefaults, type SamplingDefaults } from '../engine/loader/generation-config.js';

export interface ChatHeaderInfo {
  model: string;
  quantization: string;
  backend: string;
  /** Names of the GPUs the model runs on (empty on the CPU). */
  gpus: string[];
  contextSize: number;
  template: string;
  sampling: string;
  seed: number;
  maxTokens: number | null;
  system: string | null;
}

/** "GPTQ 4-bit g128 act-order", or the checkpoint's float type. */
export function describeQuantization(spec: ModelSpec): string {
  const q = spec.quant;
  if (!q) return spec.arch.torchDtype ?? 'float';
  const group = q.groupSize > 0 ? `g${q.groupSize}` : 'no groups';
  return `GPTQ 4-bit ${group}${q.descAct ? ' act-order' : ''}${q.sym ? '' : ' asym'}`;
}

/** The settings, then those the model's generation_config.json gave: "temperature 0.6, … (temperature 0.6 from …)". */
export function describeSampling(p: SamplingParams, fromModel: SamplingDefaults = {}): string {
  const source = Object.keys(fromModel).length > 0 ? ` (${describeSamplingDefaults(fromModel)} from generation_config.json)` : '';
  return describeSettings(p) + source;
}

/** "greedy", or the sampling steps that are on: "temperature 0.8, top-k 40, top-p 0.95, min-p 0.05". */
function describeSettings(p: SamplingParams): string {
  if (p.temperature <= 0 && p.repeatPenalty === 1 && p.frequencyPenalty === 0 && p.presencePenalty === 0) return 'greedy';
  const parts = p.temperature <= 0 ? ['greedy'] : [`temperature ${p.temperature}`];
  if (p.temperature > 0) {
    if (p.topK > 0) parts.push(`top-k ${p.topK}`);
    if (p.topP < 1) parts.push(`top-p ${p.topP}`);
    if (p.minP > 0) parts.push(`min-p ${p.minP}`);
    if (p.typicalP < 1) parts.push(`typical-p ${p.typicalP}`);
  }
  if (p.repeatPenalty !== 1) parts.push(`repeat penalty ${p.repeatPenalty}`);
  if (p.frequencyPenalty !== 0) parts.push(`frequency penalty ${p.frequencyPenalty}`);
  if (p.presencePenalty !== 0) parts.push(`presence penalty ${p.presencePenalty}`);
  return parts.join(', ');
}

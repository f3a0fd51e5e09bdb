// The sampling flags, defined once for every command that generates text (generate, chat): the options
// themselves, their help text, and their strict parsing into SamplingParams and a seed.
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { DEFAULT_SAMPLING, checkSampling, type SamplingParams } from '../engine/sampler.js';
import { randomSeed } from '../engine/rng.js';
import { addAlias, parseInteger, parseNumber } from './flags.js';
import { INT32_MAX } from '../engine/native-limits.js';

export interface SamplingFlags {
  temperature?: string;
  topK?: string;
  topP?: string;
  minP?: string;
  typicalP?: string;
  repeatPenalty?: string;
  frequencyPenalty?: string;
  presencePenalty?: string;
  seed?: string;
}

export function addSamplingOptions(cmd: Command): Command {
  const d = DEFAULT_SAMPLING;
  cmd
    .option('--temperature <t>', `0 = greedy, also --temp (default ${d.temperature})`)
    .option('--top-k <k>', `keep the k most likely tokens, 0 = off (default ${d.topK})`)
    .option('--top-p <p>', `nucleus sampling, in (0, 1], 1 = off (default ${d.topP})`)
    .option('--min-p <p>', `drop tokens below p × the top probability, 0 = off (default ${d.minP})`)
    .option('--typical-p <p>', 'locally typical sampling, in (0, 1], 1 = off (default 1)')
    .option('--repeat-penalty <r>', 'divide positive / multiply negative logits of seen tokens, 1 = off (default 1)')
    .option('--frequency-penalty <f>', 'subtract f × count of each generated token, in [-2, 2] (default 0)')
    .option('--presence-penalty <f>', 'subtract f once for each generated token, in [-2, 2] (default 0)')
    .option('--seed <n>', 'random seed (default: random; --json reports it)');
  return addAlias(cmd, '--temp <t>', 'temperature');
}

export function samplingFrom(flags: SamplingFlags): SamplingParams {
  const d = DEFAULT_SAMPLING;
  const p: SamplingParams = {
    temperature: parseNumber(flags.temperature, '--temperature') ?? d.temperature,
    topK: parseInteger(flags.topK, '--top-k', 0, INT32_MAX) ?? d.topK,
    topP: parseNumber(flags.topP, '--top-p') ?? d.topP,
    minP: parseNumber(flags.minP, '--min-p') ?? d.minP,
    typicalP: parseNumber(flags.typicalP, '--typical-p') ?? d.typicalP,
    repeatPenalty: parseNumber(flags.repeatPenalty, '--repeat-penalty') ?? d.repeatPenalty,
    frequencyPenalty: parseNumber(flags.frequencyPenalty, '--frequency-penalty') ?? d.frequencyPenalty,
    presencePenalty: parseNumber(flags.presencePenalty, '--presence-penalty') ?? d.presencePenalty,
  };
  const problem = checkSampling(p);
  if (problem) throw new UserError(`--${problem}`);
  return p;
}

export function seedFrom(flags: SamplingFlags): number {
  return parseInteger(flags.seed, '--seed', 0) ?? randomSeed();
}

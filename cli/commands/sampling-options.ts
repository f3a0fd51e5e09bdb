// The sampling flags, defined once for every command that generates text (generate, chat): the options
// themselves, their help text, and their strict parsing into SamplingParams and a seed.
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { DEFAULT_SAMPLING, checkSampling, type SamplingParams } from '../engine/sampler.js';
import { randomSeed } from '../engine/rng.js';
import { addAlias, parseInteger, parseNumber } from './flags.js';
import { INT32_MAX } from '../engine/native-limits.js';
import type { SamplingDefaults } from '../engine/loader/generation-config.js';

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

/** For the commands' help: where the defaults in the flags' help can be replaced. */
export const SAMPLING_DEFAULTS_HELP = "A sampling flag not given takes the value the model's generation_config.json recommends, if it\n" +
  'gives one (`xllama info MODEL` shows them), else the default above.';

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

/** The sampling flags given, parsed and range-checked; those not given are absent. */
export function givenSampling(flags: SamplingFlags): Partial<SamplingParams> {
  const given: Partial<SamplingParams> = {
    temperature: parseNumber(flags.temperature, '--temperature'),
    topK: parseInteger(flags.topK, '--top-k', 0, INT32_MAX),
    topP: parseNumber(flags.topP, '--top-p'),
    minP: parseNumber(flags.minP, '--min-p'),
    typicalP: parseNumber(flags.typicalP, '--typical-p'),
    repeatPenalty: parseNumber(flags.repeatPenalty, '--repeat-penalty'),
    frequencyPenalty: parseNumber(flags.frequencyPenalty, '--frequency-penalty'),
    presencePenalty: parseNumber(flags.presencePenalty, '--presence-penalty'),
  };
  for (const key of Object.keys(given) as (keyof SamplingParams)[]) if (given[key] === undefined) delete given[key];
  const problem = checkSampling({ ...DEFAULT_SAMPLING, ...given });
  if (problem) throw new UserError(`--${problem}`);
  return given;
}

export interface ResolvedSampling {
  params: SamplingParams;
  /** The model's generation_config.json settings that the run uses (those no flag replaced). */
  fromModel: SamplingDefaults;
}

/** What a run samples with: the flags given, else the model's generation_config.json, else xllama's defaults. */
export function resolveSampling(given: Partial<SamplingParams>, fromModel: SamplingDefaults = {}): ResolvedSampling {
  const used = Object.fromEntries(Object.entries(fromModel).filter(([key]) => !(key in given))) as SamplingDefaults;
  return { params: { ...DEFAULT_SAMPLING, ...used, ...given }, fromModel: used };
}

export function seedFrom(flags: SamplingFlags): number {
  return parseInteger(flags.seed, '--seed', 0) ?? randomSeed();
}

// Building an @huggingface/tokenizers Tokenizer from tokenizer.json and checking that it works: shared by the
// main thread and the worker that runs tokenizers whose files carry their own regular expressions.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import { PIPELINE_STEPS } from './tokenizer-json.js';

export const firstLine = (err: unknown): string => String((err as Error)?.message ?? err).split('\n')[0]!;

/** A text every working tokenizer encodes and decodes: letters, digits, punctuation, spaces and a newline. */
const PROBE_TEXT = 'Hello, world! 123\n  The end.';

/** Hugging Face's tokenizers treat missing pipeline steps and added_tokens as none; the library needs them spelled out. */
export function withDefaults(json: Record<string, unknown>): Record<string, unknown> {
  return { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json };
}

/** Encodes and decodes PROBE_TEXT with and without special tokens; throws what the library throws. */
function probe(hf: HfTokenizer): void {
  for (const addSpecial of [false, true]) {
    const ids = hf.encode(PROBE_TEXT, { add_special_tokens: addSpecial }).ids;
    if (!ids.every((id: number) => Number.isInteger(id))) throw new Error('no token for part of a plain English text, and no model.unk_token');
    if (ids.length > 0) hf.decode(ids, { skip_special_tokens: addSpecial });
  }
}

/**
 * The library builds most of a tokenizer lazily, so a broken step shows only when text goes through it:
 * build, run the probe, and when it fails find the step to blame (the one whose removal makes it work).
 */
export function buildChecked(json: Record<string, unknown>, config: Record<string, unknown>, source: string): HfTokenizer {
  const attempt = (j: Record<string, unknown>): HfTokenizer => {
    const hf = new HfTokenizer(j, config);
    probe(hf);
    return hf;
  };
  try {
    return attempt(json);
  } catch (err) {
    const works = (j: Record<string, unknown>): boolean => {
      try {
        attempt(j);
        return true;
      } catch {
        return false;
      }
    };
    const step = PIPELINE_STEPS.find((k) => json[k] !== null && works({ ...json, [k]: null }));
    throw new UserError(`${source}: ${step ?? 'the tokenizer'} does not work (${firstLine(err)})`);
  }
}

/** The pipeline steps of tokenizer.json that carry a regular expression of their own ({"Regex": "..."}). */
export function stepsWithFileRegex(json: Record<string, unknown>): Set<(typeof PIPELINE_STEPS)[number]> {
  // Not an object at all: none (checkTokenizerJson says what is wrong with it).
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return new Set();
  const visit = (v: unknown): boolean => {
    if (Array.isArray(v)) return v.some(visit);
    if (v === null || typeof v !== 'object') return false;
    return Object.entries(v).some(([key, value]) => key === 'Regex' || visit(value));
  };
  return new Set(PIPELINE_STEPS.filter((step) => visit(json[step])));
}

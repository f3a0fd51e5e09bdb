// The part of a tokenizer that turns text into ids and back, built from tokenizer.json: the library's tokenizer on
// this thread, or, where the file carries regular expressions of its own, those steps on a worker with a deadline
// (isolated-tokenizer.ts), this thread keeping the rest.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import { buildChecked, firstLine, stepsWithFileRegex, withDefaults } from './hf-tokenizer-build.js';
import { IsolatedTokenizer } from './isolated-tokenizer.js';
import { checkStepNesting } from './tokenizer-json.js';

export interface TokenizerCore {
  encode(text: string, addSpecial: boolean): number[];
  decode(ids: number[], skipSpecial: boolean): string;
}

export interface BuiltTokenizer {
  /** Vocabulary and added-token look-ups (nothing here runs a regular expression of the file). */
  lookups: HfTokenizer;
  core: TokenizerCore;
}

export interface TokenizerBuild {
  /** Builds what runs on this thread and waits for the worker, if any; a failure is a one-line UserError. */
  finish(): BuiltTokenizer;
  /** The caller gave up (a check of its own failed): stops the worker, if any. */
  abandon(): void;
}

function directCore(hf: HfTokenizer): TokenizerCore {
  return {
    encode: (text, addSpecial) => hf.encode(text, { add_special_tokens: addSpecial }).ids,
    decode: (ids, skipSpecial) => hf.decode(ids, { skip_special_tokens: skipSpecial }),
  };
}

/**
 * A worker started on tokenizer.json's text before this thread has parsed and checked it, when the text may carry
 * patterns of its own: it parses and builds meanwhile (Llama 3's tokenizer is ready ~0.2 s sooner). Give it to
 * startTokenizerBuild, which stops it if no step has a pattern after all; stop it if the caller gives up first.
 */
export function startWorkerEarly(jsonText: string, config: Record<string, unknown>, source: string): IsolatedTokenizer | null {
  return jsonText.includes('"Regex"') ? new IsolatedTokenizer(jsonText, config, source) : null;
}

/**
 * Starts building. A worker, where one is needed, starts at once and parses and builds its tokenizer while this
 * thread goes on with its own checks until finish(). `jsonText`, tokenizer.json's text when the caller has it,
 * spares serializing the parsed file again for the worker; `early`, a worker startWorkerEarly started, is used
 * (or stopped) instead of starting another.
 */
export function startTokenizerBuild(json: Record<string, unknown>, config: Record<string, unknown>, source: string,
                                    jsonText?: string, early: IsolatedTokenizer | null = null): TokenizerBuild {
  // Before anything walks the steps: finding their patterns, and the library's build, recurse through them.
  try {
    checkStepNesting(json, source);
  } catch (err) {
    early?.stop();
    throw err;
  }
  const withRegex = stepsWithFileRegex(json);
  if (withRegex.size === 0) {
    early?.stop();
    return {
      finish: () => {
        const hf = buildChecked(withDefaults(json), config, source);
        return { lookups: hf, core: directCore(hf) };
      },
      abandon: () => undefined,
    };
  }
  const isolated = early ?? new IsolatedTokenizer(jsonText ?? JSON.stringify(json), config, source);
  // Encoding goes to the worker when the normalizer or the pre-tokenizer has a pattern; decoding when the decoder
  // has one (else streamed text costs no round trip).
  const encodeThere = withRegex.has('normalizer') || withRegex.has('pre_tokenizer');
  const finish = (): BuiltTokenizer => {
    const here: Record<string, unknown> = Object.fromEntries([...withRegex].map((step) => [step, null]));
    // Look-ups and decoding need no BPE merges (building their ranks is most of a build's time).
    const model = json.model;
    if (encodeThere && model && typeof model === 'object' && 'merges' in model) here.model = { ...model, merges: [] };
    let lookups: HfTokenizer;
    try {
      lookups = new HfTokenizer(withDefaults({ ...json, ...here }), config);
    } catch (err) {
      isolated.waitUntilBuilt();  // the worker's error names the step to blame
      isolated.stop();
      throw new UserError(`${source}: the tokenizer does not work (${firstLine(err)})`);
    }
    isolated.waitUntilBuilt();
    const direct = directCore(lookups);
    return {
      lookups,
      core: {
        encode: encodeThere ? (text, addSpecial) => isolated.encode(text, addSpecial) : direct.encode,
        decode: withRegex.has('decoder') ? (ids, skipSpecial) => isolated.decode(ids, skipSpecial) : direct.decode,
      },
    };
  };
  return { finish, abandon: () => isolated.stop() };
}

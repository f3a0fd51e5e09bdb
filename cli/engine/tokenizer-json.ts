// Checks of a parsed tokenizer.json that the tokenizer library leaves to the first encode, or never makes:
// the vocabulary's ids, added_tokens, BPE merges and the post-processor's template. Each failure is a
// UserError naming the file and the field; a tokenizer that passes gives only integer ids.
import { showValue as show, UserError } from '../errors.js';
import { isIntIn } from './native-limits.js';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The largest token id the tokenizer can produce, and the field that holds it. */
export interface LargestId {
  id: number;
  token: string;
  field: string;
}

/** The longest string a normalizer, pre-tokenizer or decoder may put in (at every space or match); real ones put in 1. */
const MAX_INSERTED_CHARS = 64;

/** The longest word a WordPiece model may be asked to split (a word of 1,000 takes it about two seconds). */
const MAX_WORDPIECE_CHARS = 1000;

class Checker {
  constructor(private readonly file: string) {}

  fail(field: string, what: string): never {
    throw new UserError(`${this.file}: ${field} ${what}`);
  }

  /** The vocabulary: {token: id} (BPE, WordPiece) or [[piece, score], ...] (Unigram, ids are the indices). */
  vocab(model: Json, largest: LargestId): void {
    const vocab = model.vocab;
    if (Array.isArray(vocab)) {
      vocab.forEach((e, i) => {
        if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number') {
          this.fail(`model.vocab[${i}]`, `is ${show(e)}, expected a [piece, score] pair`);
        }
      });
      if (vocab.length > 0 && vocab.length - 1 > largest.id) {
        Object.assign(largest, { id: vocab.length - 1, token: vocab[vocab.length - 1][0], field: 'model.vocab' });
      }
      return;
    }
    if (!isObject(vocab)) this.fail('model.vocab', `is ${show(vocab)}, expected an object of token → id`);
    for (const [token, id] of Object.entries(vocab)) {
      if (!isId(id)) this.fail(`model.vocab[${show(token)}]`, `is ${show(id)}, expected a token id (an integer >= 0)`);
      if (id > largest.id) Object.assign(largest, { id, token, field: 'model.vocab' });
    }
  }

  /** BPE merges: "a b" strings or ["a", "b"] pairs, one form throughout (the library looks at the first). */
  merges(model: Json): void {
    const merges = model.merges;
    if (!Array.isArray(merges)) this.fail('model.merges', `is ${show(merges)}, expected a list of merges`);
    const pairs = Array.isArray(merges[0]);
    merges.forEach((m, i) => {
      const ok = pairs
        ? Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string'
        : typeof m === 'string';
      if (!ok) this.fail(`model.merges[${i}]`, `is ${show(m)}, expected ${pairs ? 'a ["a", "b"] pair like the first' : 'a "a b" string like the first'}`);
    });
  }

  model(json: Json, largest: LargestId): void {
    const model = json.model;
    if (!isObject(model)) this.fail('model', `is ${show(model)}, expected an object`);
    if (model.type !== undefined && typeof model.type !== 'string') this.fail('model.type', `is ${show(model.type)}, expected a string`);
    this.vocab(model, largest);
    if (model.type === 'BPE' || (model.type === undefined && model.merges !== undefined)) this.merges(model);
    for (const key of ['unk_token', 'continuing_subword_prefix', 'end_of_word_suffix']) {
      const v = model[key];
      if (v !== undefined && v !== null && typeof v !== 'string') this.fail(`model.${key}`, `is ${show(v)}, expected a string or null`);
    }
    // WordPiece tries every end of a word from each of its starts, each try a copy: time grows with the cube of
    // the longest word it takes on (BERT's files say 100).
    const maxWord = model.max_input_chars_per_word;
    if (maxWord !== undefined && maxWord !== null && !isIntIn(maxWord, 0, MAX_WORDPIECE_CHARS)) {
      this.fail('model.max_input_chars_per_word', `is ${show(maxWord)}, expected an integer from 0 to ${MAX_WORDPIECE_CHARS}`);
    }
  }

  addedTokens(json: Json, largest: LargestId): void {
    const list = json.added_tokens;
    if (list === undefined || list === null) return; // none (TextTokenizer passes an empty list on)
    if (!Array.isArray(list)) this.fail('added_tokens', `is ${show(list)}, expected a list`);
    list.forEach((t, i) => {
      const field = `added_tokens[${i}]`;
      if (!isObject(t)) this.fail(field, `is ${show(t)}, expected an object`);
      if (!isId(t.id)) this.fail(`${field}.id`, `is ${show(t.id)}, expected a token id (an integer >= 0)`);
      if (typeof t.content !== 'string' || t.content === '') this.fail(`${field}.content`, `is ${show(t.content)}, expected the token's text`);
      for (const flag of ['special', 'lstrip', 'rstrip', 'normalized', 'single_word']) {
        if (t[flag] !== undefined && typeof t[flag] !== 'boolean') this.fail(`${field}.${flag}`, `is ${show(t[flag])}, expected true or false`);
      }
      if (t.id > largest.id) Object.assign(largest, { id: t.id, token: t.content, field: `${field}.id` });
    });
  }

  /** A pipeline step: null, or an object with a string type (the library picks the class by it). */
  step(value: unknown, field: string): value is Json {
    if (value === undefined || value === null) return false;
    if (!isObject(value)) this.fail(field, `is ${show(value)}, expected an object or null`);
    if (typeof value.type !== 'string') this.fail(`${field}.type`, `is ${show(value.type)}, expected a string`);
    return true;
  }

  /**
   * The numbers and strings of a normalizer, pre-tokenizer or decoder (and of those in its Sequence) that size the
   * library's loops and output: a FixedLength of 0 loops until memory runs out, and a long replacement string
   * multiplies the text's size by its own.
   */
  stepParameters(value: unknown, field: string): void {
    if (!isObject(value)) return;
    for (const key of ['normalizers', 'pretokenizers', 'decoders']) {
      const list = value[key];
      if (Array.isArray(list)) list.forEach((v, i) => this.stepParameters(v, `${field}.${key}[${i}]`));
    }
    if (value.type === 'FixedLength' && !isIntIn(value.length, 1, Number.MAX_SAFE_INTEGER)) {
      this.fail(`${field}.length`, `is ${show(value.length)}, expected an integer >= 1`);
    }
    for (const key of ['content', 'replacement', 'str_rep', 'prepend']) {
      const v = value[key];
      if (typeof v === 'string' && v.length > MAX_INSERTED_CHARS) {
        this.fail(`${field}.${key}`, `is ${v.length} characters long, more than the ${MAX_INSERTED_CHARS} a step may insert`);
      }
    }
  }

  /** TemplateProcessing's single/pair are read only at encode time, so they are checked here. */
  postProcessor(value: unknown, field: string): void {
    if (!this.step(value, field)) return;
    if (value.type === 'Sequence') {
      const list = value.processors;
      if (list !== undefined && !Array.isArray(list)) this.fail(`${field}.processors`, `is ${show(list)}, expected a list`);
      (list ?? []).forEach((p: unknown, i: number) => this.postProcessor(p, `${field}.processors[${i}]`));
      return;
    }
    if (value.type !== 'TemplateProcessing') return;
    for (const key of ['single', 'pair']) {
      const template = value[key];
      if (template === undefined && key === 'pair') continue;
      if (!Array.isArray(template)) this.fail(`${field}.${key}`, `is ${show(template)}, expected a list of template pieces`);
      template.forEach((piece, i) => {
        const ok = isObject(piece) && (
          (isObject(piece.SpecialToken) && typeof piece.SpecialToken.id === 'string') ||
          (isObject(piece.Sequence) && (piece.Sequence.id === 'A' || piece.Sequence.id === 'B')));
        if (!ok) this.fail(`${field}.${key}[${i}]`, `is ${show(piece)}, expected {"SpecialToken": {"id": ...}} or {"Sequence": {"id": "A"}}`);
      });
    }
  }
}

/** The pipeline steps of tokenizer.json besides the model; a failing trial encode is blamed on one of them. */
export const PIPELINE_STEPS = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const;

/** Real pipeline steps nest objects and lists 4 levels deep, 6 for a Sequence holding a TemplateProcessing (Llama 3). */
const MAX_STEP_NESTING = 32;

/** How deeply `value` nests objects and lists, counted without recursion and only up to `limit + 1`. */
function nesting(value: unknown, limit: number): number {
  let deepest = 0;
  const pending: [unknown, number][] = [[value, 1]];
  while (pending.length > 0) {
    const [v, depth] = pending.pop()!;
    if (v === null || typeof v !== 'object') continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) break;
    for (const child of Array.isArray(v) ? v : Object.values(v)) pending.push([child, depth + 1]);
  }
  return deepest;
}

/**
 * Refuses pipeline steps nested deeper than real ones: the tokenizer library builds (and xllama walks) a nested
 * Sequence by recursion, which a few thousand levels take past the call stack. Runs before anything else reads them.
 */
export function checkStepNesting(json: unknown, file: string): void {
  if (!isObject(json)) return;
  for (const step of PIPELINE_STEPS) {
    if (nesting(json[step], MAX_STEP_NESTING) > MAX_STEP_NESTING) {
      throw new UserError(`${file}: ${step} nests objects and lists more than ${MAX_STEP_NESTING} levels deep`);
    }
  }
}

/** Checks the structure of a parsed tokenizer.json; returns the largest id it can produce. */
export function checkTokenizerJson(json: unknown, file: string): LargestId {
  const c = new Checker(file);
  if (!isObject(json)) throw new UserError(`${file}: expected a JSON object at the top level`);
  const largest: LargestId = { id: -1, token: '', field: '' };
  c.model(json, largest);
  c.addedTokens(json, largest);
  for (const step of ['normalizer', 'pre_tokenizer', 'decoder'] as const) {
    if (c.step(json[step], step)) c.stepParameters(json[step], step);
  }
  c.postProcessor(json.post_processor, 'post_processor');
  if (largest.id < 0) throw new UserError(`${file}: model.vocab and added_tokens are empty`);
  return largest;
}

/**
 * tokenizer_config.json fields that xllama or the tokenizer library read, with the types they must have
 * (`__type: AddedToken` objects are flattened to their content before this).
 */
export function checkTokenizerConfig(config: Json, file: string): void {
  const c = new Checker(file);
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const v = config[key];
    if (v !== undefined && v !== null && typeof v !== 'string' && !(isObject(v) && typeof v.content === 'string')) {
      c.fail(key, `is ${show(v)}, expected a token (a string) or null`);
    }
  }
  for (const key of ['add_bos_token', 'add_eos_token', 'clean_up_tokenization_spaces', 'remove_space', 'do_lowercase_and_remove_accent']) {
    const v = config[key];
    if (v !== undefined && v !== null && typeof v !== 'boolean') c.fail(key, `is ${show(v)}, expected true or false`);
  }
  const extra = config.additional_special_tokens;
  if (extra !== undefined && extra !== null && !(Array.isArray(extra) && extra.every((t) => typeof t === 'string'))) {
    c.fail('additional_special_tokens', `is ${show(extra)}, expected a list of tokens`);
  }
  const tpl = config.chat_template;
  if (tpl !== undefined && tpl !== null && typeof tpl !== 'string' &&
      !(Array.isArray(tpl) && tpl.every((e) => isObject(e) && typeof e.name === 'string' && typeof e.template === 'string'))) {
    c.fail('chat_template', `is ${show(tpl)}, expected a template (a string) or a list of {"name", "template"}`);
  }
}

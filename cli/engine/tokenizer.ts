// Text ⇄ token ids for a model folder: tokenizer.json through @huggingface/tokenizers (its own regular expressions
// on a worker with a deadline, tokenizer-core.ts), with the special tokens and BOS/EOS policy taken from
// tokenizer_config.json, config.json and generation_config.json.
import { basename, dirname, join } from 'node:path';
import type { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { showValue, UserError } from '../errors.js';
import type { ChatTemplateFile, SpecialTokenSources, TokenizerFiles } from './model-spec.js';
import { flattenAddedTokens, namedOrClassDefaultToken } from './loader/tokenizer-config.js';
import { readModelJsonText } from './loader/json-file.js';
import { pickTemplate } from './chat-template.js';
import { PiecewiseEncoder } from './piecewise-encoding.js';
import { checkTokenizerConfig, checkTokenizerJson } from './tokenizer-json.js';
import { firstLine } from './hf-tokenizer-build.js';
import { TokenizerTimeout, type IsolatedTokenizer } from './isolated-tokenizer.js';
import { startTokenizerBuild, startWorkerEarly, type TokenizerCore } from './tokenizer-core.js';

export interface EncodeOptions {
  /** Add BOS/EOS the way the model's tokenizer does (add_bos_token / add_eos_token, else its post-processor). */
  addSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, pad…) from the text; default true. */
  skipSpecial?: boolean;
}

/** Special token ids that config.json / generation_config.json give (ModelSpec carries them). */
export interface SpecialIds {
  bosTokenId: number | null;
  eosTokenIds: number[];
}

/** A token named in tokenizer_config.json: a string, or an object with `content` (either form). */
function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

function idList(value: unknown): number[] {
  if (typeof value === 'number' && Number.isInteger(value)) return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number' && Number.isInteger(v));
  return [];
}

/** Texts shorter than this are encoded in one call (a prompt); longer ones word by word where exact. */
const PIECEWISE_MIN_CHARS = 4096;

/** What TextTokenizer checks besides tokenizer.json itself. */
export interface TokenizerChecks {
  /** config.json's vocab_size: every id the tokenizer can produce must be below it. */
  vocabSize?: number;
  /** tokenizer_config.json's path, for messages. */
  configSource?: string;
  /** Special tokens that another file (special_tokens_map.json) named, for messages. */
  specialTokenSources?: SpecialTokenSources;
  /** tokenizer.json's text, when the caller read it (a worker, if one is needed, parses it itself). */
  jsonText?: string;
  /** The folder's chat_template.jinja, which replaces tokenizer_config.json's chat_template. */
  chatTemplateFile?: ChatTemplateFile | null;
  /** A worker already building from jsonText (startWorkerEarly); the tokenizer takes it over or stops it. */
  earlyWorker?: IsolatedTokenizer | null;
}

export class TextTokenizer {
  readonly bosId: number | null;
  /** Every id that ends generation: the tokenizer's eos_token and config/generation_config eos ids. */
  readonly eosIds: readonly number[];
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** From tokenizer_config.json; null when absent (then the post-processor decides). */
  readonly addBos: boolean | null;
  readonly addEos: boolean | null;
  /** chat_template.jinja's text, else tokenizer_config.json's chat_template (the 'default' one of a named list), if any. */
  readonly chatTemplate: string | null;
  /** The file chatTemplate came from, for messages. */
  readonly chatTemplateSource: string;
  /** Vocabulary and added-token look-ups (nothing here runs a regular expression of the file). */
  private readonly hf: HfTokenizer;
  private readonly core: TokenizerCore;
  private readonly specialIds: Set<number>;
  /** Long texts in words, for tokenizers whose BPE otherwise runs over the whole text as one word. */
  private readonly piecewise: PiecewiseEncoder | null;
  /** tokenizer.json's path, for messages. */
  private readonly source: string;
  /** The tokenizer's largest id + 1 (the model's vocab_size may be larger: padded embeddings). */
  readonly vocabSize: number;

  /**
   * Builds the tokenizer and checks it: tokenizer.json's structure, a trial encode and decode, and with
   * `checks.vocabSize` that every id it can produce is in the model's vocabulary. Problems are one-line
   * UserErrors naming the file and field.
   */
  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>, ids: SpecialIds,
              source = 'tokenizer.json', checks: TokenizerChecks = {}) {
    this.source = source;
    const configSource = checks.configSource ?? 'tokenizer_config.json';
    // The loader has flattened `__type: AddedToken` objects already; configs given directly may not be.
    const config = flattenAddedTokens(tokenizerConfig) as Record<string, unknown>;
    // A worker, where the file's own regular expressions need one, builds meanwhile.
    const build = startTokenizerBuild(tokenizerJson, config, source, checks.jsonText, checks.earlyWorker);
    try {
      checkTokenizerConfig(config, configSource);
      const largest = checkTokenizerJson(tokenizerJson, source);
      if (checks.vocabSize !== undefined && largest.id >= checks.vocabSize) {
        throw new UserError(`${source}: ${largest.field} gives ${showValue(largest.token)} the id ${largest.id}, ` +
          `outside the model's vocabulary (config.json vocab_size is ${checks.vocabSize})`);
      }
      this.vocabSize = largest.id + 1;
    } catch (err) {
      build.abandon();
      throw err;
    }
    ({ lookups: this.hf, core: this.core } = build.finish());
    const lookup = (t: string | null): number | null => (t === null ? null : this.hf.token_to_id(t) ?? null);
    // A class default missing from the vocabulary is no token (transformers would add it; xllama adds none).
    const named = (key: 'bos_token' | 'eos_token'): string | null => {
      const token = tokenContent(namedOrClassDefaultToken(config, key));
      return key in config || lookup(token) !== null ? token : null;
    };
    this.bosToken = named('bos_token');
    this.eosToken = named('eos_token');
    for (const [key, token] of [['bos_token', this.bosToken], ['eos_token', this.eosToken]] as const) {
      if (token !== null && lookup(token) === null) {
        const from = checks.specialTokenSources?.[key] ?? configSource;
        throw new UserError(`${from}: ${key} ${showValue(token)} is not a token of ${basename(source)}`);
      }
    }
    this.bosId = lookup(this.bosToken) ?? ids.bosTokenId;
    // The tokenizer's own eos_token first: it is the one add_eos_token appends.
    const eosFromConfig = lookup(this.eosToken);
    this.eosIds = [...new Set<number>([...(eosFromConfig === null ? [] : [eosFromConfig]), ...ids.eosTokenIds])];
    this.addBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : null;
    this.addEos = typeof config.add_eos_token === 'boolean' ? config.add_eos_token : null;
    const templateFile = checks.chatTemplateFile ?? null;
    this.chatTemplate = templateFile ? templateFile.text : pickTemplate(config.chat_template);
    this.chatTemplateSource = templateFile ? templateFile.path : configSource;
    this.piecewise = PiecewiseEncoder.forTokenizer(tokenizerJson);

    this.specialIds = new Set<number>();
    for (const [id, tok] of this.hf.get_added_tokens_decoder()) if (tok.special) this.specialIds.add(id);
    if (this.bosId !== null) this.specialIds.add(this.bosId);
    for (const id of this.eosIds) this.specialIds.add(id);
  }

  /**
   * Reads tokenizer.json named by the loader's TokenizerFiles. Given a ModelSpec (with `arch`), also
   * checks the tokenizer against config.json's vocab_size.
   */
  static fromFiles(files: TokenizerFiles, ids: SpecialIds & { arch?: { vocabSize: number } }): TextTokenizer {
    const text = readModelJsonText(files.tokenizerJsonPath, 'tokenizer');
    // The loader has flattened the config's AddedToken objects already.
    const earlyWorker = startWorkerEarly(text, files.tokenizerConfig, files.tokenizerJsonPath);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      earlyWorker?.stop();
      throw new UserError(`${files.tokenizerJsonPath}: not valid JSON (${firstLine(err)})`);
    }
    const genIds = files.generationConfig ? idList(files.generationConfig.eos_token_id) : [];
    const bosFromGen = files.generationConfig?.bos_token_id;
    return new TextTokenizer(json, files.tokenizerConfig, {
      bosTokenId: ids.bosTokenId ?? (typeof bosFromGen === 'number' ? bosFromGen : null),
      eosTokenIds: [...ids.eosTokenIds, ...genIds],
    }, files.tokenizerJsonPath, {
      vocabSize: ids.arch?.vocabSize,
      configSource: join(dirname(files.tokenizerJsonPath), 'tokenizer_config.json'),
      specialTokenSources: files.specialTokenSources,
      jsonText: text,
      chatTemplateFile: files.chatTemplateFile,
      earlyWorker,
    });
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecial ?? false;
    const explicitPolicy = this.addBos !== null || this.addEos !== null;
    let ids: number[];
    try {
      // No add_bos/add_eos in tokenizer_config.json: the tokenizer's own post-processor decides (Llama 3, Qwen2).
      ids = addSpecial && !explicitPolicy ? this.core.encode(text, true) : this.encodePlain(text);
    } catch (err) {
      throw this.failure(err, 'the tokenizer fails on this text');
    }
    if (!ids.every((id) => Number.isInteger(id))) {
      throw new UserError(`${this.source}: the vocabulary has no token for part of the text, and model.unk_token is not set`);
    }
    if (!addSpecial || !explicitPolicy) return ids;
    if (this.addBos && this.bosId !== null) ids.unshift(this.bosId);
    if (this.addEos && this.eosIds.length > 0) ids.push(this.eosIds[0]!);
    return ids;
  }

  /** Ids without special tokens; long texts word by word where that gives the same ids (piecewise-encoding.ts). */
  private encodePlain(text: string): number[] {
    const whole = (t: string) => this.core.encode(t, false);
    if (this.piecewise && text.length >= PIECEWISE_MIN_CHARS) return this.piecewise.encode(text, whole) ?? whole(text);
    return whole(text);
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecial ?? true;
    // Ids the tokenizer has no token for (a vocabulary padded past the tokenizer's) decode to nothing.
    const list = Array.from(ids).filter((id) => !(skip && this.specialIds.has(id)) && this.hf.id_to_token(id) !== undefined);
    if (list.length === 0) return '';
    try {
      return this.core.decode(list, skip);
    } catch (err) {
      throw this.failure(err, 'decoder fails');
    }
  }

  /** A call that went past its deadline says so itself; any other failure is `what`, with the library's words. */
  private failure(err: unknown, what: string): UserError {
    return new UserError(`${this.source}: ${err instanceof TokenizerTimeout ? err.message : `${what} (${firstLine(err)})`}`);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }
}

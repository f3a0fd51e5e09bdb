// tokenizer.json / tokenizer_config.json / generation_config.json of a model folder.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { showValue, UserError } from '../../errors.js';
import { readBoundedFile } from '../bounded-file.js';
import type { ChatTemplateFile, SpecialTokenSources, TokenizerFiles } from '../model-spec.js';
import { isJsonObject, readJsonObject, type JsonObject } from './json-file.js';

/**
 * Old tokenizer_config.json files write special tokens as `{"__type": "AddedToken", "content": ...}`, at the top
 * level (bos_token) or one level down (additional_special_tokens' items, added_tokens_decoder's entries). Deeper
 * values are left as they are, so that a hostile file's nesting can't exhaust the call stack.
 */
export function flattenAddedTokens(value: unknown, levels = 2): unknown {
  if (isJsonObject(value) && value.__type === 'AddedToken' && typeof value.content === 'string') return value.content;
  if (levels === 0) return value;
  if (Array.isArray(value)) return value.map((v) => flattenAddedTokens(v, levels - 1));
  if (!isJsonObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, flattenAddedTokens(v, levels - 1)]));
}

/** Real chat templates take at most tens of KB; this bounds what a hostile one can make the parser hold. */
export const MAX_CHAT_TEMPLATE_BYTES = 1024 * 1024;

/**
 * chat_template.jinja, which transformers (4.47 on) writes on save and reads in preference to
 * tokenizer_config.json's chat_template; null when the folder has none, or an empty one (which transformers
 * would take as no template at all). Its text is parsed where it is used: a command without chat ignores it.
 */
function readChatTemplateFile(dir: string): ChatTemplateFile | null {
  const path = join(dir, 'chat_template.jinja');
  if (!existsSync(path)) return null;
  const bytes = readBoundedFile(path, { maxBytes: MAX_CHAT_TEMPLATE_BYTES, noun: 'template file', limitPhrase: 'a chat template may have' });
  const text = bytes.toString('utf8');
  return text.trim() === '' ? null : { path, text };
}

/** The special tokens xllama reads by name: BOS for the chat template and add_bos_token, EOS to stop. */
const NAMED_SPECIAL_TOKENS = ['bos_token', 'eos_token'] as const;
type NamedSpecialToken = (typeof NAMED_SPECIAL_TOKENS)[number];

/**
 * The special tokens a tokenizer class gives itself when neither tokenizer_config.json nor special_tokens_map.json
 * names them (transformers' class defaults: LlamaTokenizer's `<s>` / `</s>`, Qwen2Tokenizer's `<|endoftext|>`
 * and no BOS). A generic class (PreTrainedTokenizerFast) or none has no defaults.
 */
const CLASS_DEFAULT_TOKENS: Record<string, Partial<Record<NamedSpecialToken, string>>> = {
  LlamaTokenizer: { bos_token: '<s>', eos_token: '</s>' },
  LlamaTokenizerFast: { bos_token: '<s>', eos_token: '</s>' },
  CodeLlamaTokenizer: { bos_token: '<s>', eos_token: '</s>' },
  CodeLlamaTokenizerFast: { bos_token: '<s>', eos_token: '</s>' },
  Qwen2Tokenizer: { eos_token: '<|endoftext|>' },
  Qwen2TokenizerFast: { eos_token: '<|endoftext|>' },
};

/**
 * The token `key` names in a (merged) tokenizer config, or, where the config leaves it out, its tokenizer class's
 * default (CLASS_DEFAULT_TOKENS). An explicit null stays null: transformers then has no such token.
 */
export function namedOrClassDefaultToken(config: Record<string, unknown>, key: NamedSpecialToken): unknown {
  if (key in config) return config[key];
  const tokenizerClass = config.tokenizer_class;
  return typeof tokenizerClass === 'string' && Object.hasOwn(CLASS_DEFAULT_TOKENS, tokenizerClass)
    ? CLASS_DEFAULT_TOKENS[tokenizerClass][key] ?? null
    : null;
}

/**
 * transformers' legacy path: a tokenizer_config.json without added_tokens_decoder (saved before transformers 4.34,
 * as many GPTQ folders were, or absent) takes its special tokens from special_tokens_map.json where that file names
 * them. Returns the config with those tokens in place, and which file each came from (for error messages).
 */
function withSpecialTokensMap(dir: string, config: JsonObject): { config: JsonObject; sources: SpecialTokenSources } {
  const path = join(dir, 'special_tokens_map.json');
  if ('added_tokens_decoder' in config || !existsSync(path)) return { config, sources: {} };
  const map = flattenAddedTokens(readJsonObject(path, true)) as JsonObject;
  const merged = { ...config };
  const sources: SpecialTokenSources = {};
  for (const key of NAMED_SPECIAL_TOKENS) {
    if (!(key in map)) continue;
    let value = map[key];
    if (isJsonObject(value) && typeof value.content === 'string') value = value.content;
    // null too replaces the config's token: transformers then has none.
    if (value !== null && typeof value !== 'string') {
      throw new UserError(`${path}: ${key} is ${showValue(value)}, expected a token (a string) or null`);
    }
    merged[key] = value;
    sources[key] = path;
  }
  return { config: merged, sources };
}

export function readTokenizerFiles(dir: string): TokenizerFiles {
  const tokenizerJsonPath = join(dir, 'tokenizer.json');
  if (!existsSync(tokenizerJsonPath)) {
    throw new UserError(`${dir}: missing tokenizer.json (xllama needs the fast-tokenizer file)`);
  }
  const rawConfig = flattenAddedTokens(readJsonObject(join(dir, 'tokenizer_config.json'), false) ?? {}) as JsonObject;
  const { config: tokenizerConfig, sources: specialTokenSources } = withSpecialTokensMap(dir, rawConfig);
  return {
    tokenizerJsonPath,
    tokenizerConfig,
    specialTokenSources,
    generationConfig: readJsonObject(join(dir, 'generation_config.json'), false),
    chatTemplateFile: readChatTemplateFile(dir),
  };
}

/** A token id field that may be a number or a list of numbers (eos_token_id); every id must be below vocabSize. */
export function tokenIdList(value: unknown, file: string, key: string, vocabSize: number): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const v of list) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new UserError(`${file}: ${key} is ${showValue(value)}, expected a token id or a list of them`);
    }
    if (v >= vocabSize) {
      throw new UserError(`${file}: ${key} ${v} is outside the vocabulary (config.json vocab_size is ${vocabSize})`);
    }
  }
  return list as number[];
}

/** BOS and EOS ids: generation_config.json first, then config.json's (EOS ids from both, deduplicated). */
export function specialTokenIds(config: JsonObject, configFile: string, generation: JsonObject | null, generationFile: string,
    vocabSize: number): { bosTokenId: number | null; eosTokenIds: number[] } {
  const ids = (obj: JsonObject | null, file: string, key: string) => (obj ? tokenIdList(obj[key], file, key, vocabSize) : []);
  const genBos = ids(generation, generationFile, 'bos_token_id');
  const cfgBos = ids(config, configFile, 'bos_token_id');
  const genEos = ids(generation, generationFile, 'eos_token_id');
  const cfgEos = ids(config, configFile, 'eos_token_id');
  return {
    bosTokenId: genBos[0] ?? cfgBos[0] ?? null,
    eosTokenIds: [...new Set([...genEos, ...cfgEos])],
  };
}

// Text ⇄ token ids for a model folder: tokenizer.json through @huggingface/tokenizers, with the special
// tokens and BOS/EOS policy taken from tokenizer_config.json, config.json and generation_config.json.
import { readFileSync } from 'node:fs';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import type { TokenizerFiles } from './model-spec.js';
import { flattenAddedTokens } from './loader/tokenizer-config.js';
import { pickTemplate } from './chat-template.js';

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

export class TextTokenizer {
  readonly bosId: number | null;
  /** Every id that ends generation: the tokenizer's eos_token and config/generation_config eos ids. */
  readonly eosIds: readonly number[];
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** From tokenizer_config.json; null when absent (then the post-processor decides). */
  readonly addBos: boolean | null;
  readonly addEos: boolean | null;
  /** chat_template from tokenizer_config.json (the 'default' one of a named list), if any. */
  readonly chatTemplate: string | null;
  private readonly hf: HfTokenizer;
  private readonly specialIds: Set<number>;

  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>, ids: SpecialIds,
              source = 'tokenizer.json') {
    // The loader has flattened `__type: AddedToken` objects already; configs given directly may not be.
    const config = flattenAddedTokens(tokenizerConfig) as Record<string, unknown>;
    try {
      this.hf = new HfTokenizer(tokenizerJson, config);
    } catch (err) {
      throw new UserError(`${source}: unsupported or invalid tokenizer (${(err as Error).message})`);
    }
    this.bosToken = tokenContent(config.bos_token);
    this.eosToken = tokenContent(config.eos_token);
    const lookup = (t: string | null): number | null => (t === null ? null : this.hf.token_to_id(t) ?? null);
    this.bosId = lookup(this.bosToken) ?? ids.bosTokenId;
    // The tokenizer's own eos_token first: it is the one add_eos_token appends.
    const eosFromConfig = lookup(this.eosToken);
    this.eosIds = [...new Set<number>([...(eosFromConfig === null ? [] : [eosFromConfig]), ...ids.eosTokenIds])];
    this.addBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : null;
    this.addEos = typeof config.add_eos_token === 'boolean' ? config.add_eos_token : null;
    this.chatTemplate = pickTemplate(config.chat_template);

    this.specialIds = new Set<number>();
    for (const [id, tok] of this.hf.get_added_tokens_decoder()) if (tok.special) this.specialIds.add(id);
    if (this.bosId !== null) this.specialIds.add(this.bosId);
    for (const id of this.eosIds) this.specialIds.add(id);
  }

  /** Reads tokenizer.json named by the loader's TokenizerFiles. */
  static fromFiles(files: TokenizerFiles, ids: SpecialIds): TextTokenizer {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(files.tokenizerJsonPath, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new UserError(`${files.tokenizerJsonPath}: cannot read tokenizer (${(err as Error).message})`);
    }
    const genIds = files.generationConfig ? idList(files.generationConfig.eos_token_id) : [];
    const bosFromGen = files.generationConfig?.bos_token_id;
    return new TextTokenizer(json, files.tokenizerConfig, {
      bosTokenId: ids.bosTokenId ?? (typeof bosFromGen === 'number' ? bosFromGen : null),
      eosTokenIds: [...ids.eosTokenIds, ...genIds],
    }, files.tokenizerJsonPath);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecial ?? false;
    const explicitPolicy = this.addBos !== null || this.addEos !== null;
    if (addSpecial && !explicitPolicy) {
      // No add_bos/add_eos in tokenizer_config.json: the tokenizer's own post-processor decides (Llama 3, Qwen2).
      return this.hf.encode(text, { add_special_tokens: true }).ids;
    }
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    if (!addSpecial) return ids;
    if (this.addBos && this.bosId !== null) ids.unshift(this.bosId);
    if (this.addEos && this.eosIds.length > 0) ids.push(this.eosIds[0]!);
    return ids;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecial ?? true;
    const list = Array.from(ids).filter((id) => !(skip && this.specialIds.has(id)));
    if (list.length === 0) return '';
    return this.hf.decode(list, { skip_special_tokens: skip });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }
}

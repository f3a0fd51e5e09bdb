// The generation loop: prefill the prompt in chunks, then one token per forward, streaming text that is
// safe to show. Stops at EOS, a stop string, the token limit, the end of the KV cache, or an abort.
import { DEFAULT_CHUNK_TOKENS, type ModelHandle } from './model-handle.js';
import { hasPenalties, hostSamplingForced, Sampler, type SamplingParams } from './sampler.js';
import { StreamingDetokenizer, type Decoder } from './detokenizer.js';
import { StopStringFilter } from './stop-strings.js';

export interface GenerateOptions {
  /** Most tokens to generate. */
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  /** Strings that end generation; they are not part of the output text. */
  stop?: readonly string[];
  /** Ids that end generation besides the tokenizer's EOS ids. */
  stopTokenIds?: readonly number[];
  signal?: AbortSignal;
  /** Prompt tokens per forward during prefill (an abort is noticed between chunks); default: the backends' chunk. */
  prefillChunk?: number;
  /**
   * Keep the longest prefix of the prompt that the model's KV cache already holds and prefill only the rest
   * (multi-turn chat). Without it the prompt is prefilled from position 0.
   */
  reuseCache?: boolean;
}

export type StopReason = 'eos' | 'stop-string' | 'length' | 'context' | 'abort';

export interface GenerationStats {
  promptTokens: number;
  /** Prompt tokens found in the KV cache and not prefilled again (reuseCache). */
  cachedPromptTokens: number;
  generatedTokens: number;
  /** Prefill, up to and including the pick of the first token (with maxTokens 0: the prompt's forwards alone). */
  promptMs: number;
  /** From the first token to the last. */
  generateMs: number;
  timeToFirstTokenMs: number;
  promptTokensPerSec: number;
  /** Tokens after the first, per second of generateMs. */
  generatedTokensPerSec: number;
  stopReason: StopReason | null;
}

export interface GeneratedToken {
  id: number;
  /** Text that became safe to show with this token (may be ''). */
  text: string;
}

/** What the loop needs from the tokenizer. */
export interface GenerationTokenizer extends Decoder {
  readonly eosIds: readonly number[];
}

/** Tokens of the prompt's tail given to the detokenizer so the first piece gets its spacing right. */
const DETOKENIZER_CONTEXT = 8;

export class Generation implements AsyncIterable<GeneratedToken> {
  readonly stats: GenerationStats;
  readonly generatedIds: number[] = [];
  private started = false;

  constructor(private readonly model: ModelHandle, private readonly tokenizer: GenerationTokenizer,
              readonly promptIds: readonly number[], private readonly options: GenerateOptions) {
    if (promptIds.length === 0) throw new RangeError('the prompt has no tokens');
    if (promptIds.length >= model.maxSeqLen) {
      throw new RangeError(`the prompt has ${promptIds.length} tokens; the context holds ${model.maxSeqLen}`);
    }
    if (!Number.isInteger(options.maxTokens) || options.maxTokens < 0) throw new RangeError('maxTokens must be >= 0');
    this.stats = {
      promptTokens: promptIds.length, cachedPromptTokens: 0, generatedTokens: 0, promptMs: 0, generateMs: 0, timeToFirstTokenMs: 0,
      promptTokensPerSec: 0, generatedTokensPerSec: 0, stopReason: null,
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<GeneratedToken> {
    if (this.started) throw new Error('a Generation can be iterated once');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<GeneratedToken> {
    const { model, options, promptIds, stats } = this;
    const sampler = new Sampler(options.sampling, options.seed);
    sampler.observePrompt(promptIds);
    const hostOnly = hostSamplingForced();
    // Penalties go to a backend that keeps the token history (its picks then stay pipelined like the rest).
    if (!hostOnly && hasPenalties(options.sampling) && model.setTokenHistory) {
      await model.setTokenHistory(promptIds, []);
      sampler.penaltiesOnBackend();
    }
    const endIds = new Set([...this.tokenizer.eosIds, ...(options.stopTokenIds ?? [])]);
    const detok = new StreamingDetokenizer(this.tokenizer, promptIds.slice(-DETOKENIZER_CONTEXT));
    const stops = new StopStringFilter(options.stop ?? []);
    const aborted = () => options.signal?.aborted ?? false;

    // A backend pick also names the next step's sampling when there may be a next step (this pick is not the last
    // that maxTokens allows): the backend may start that step, feeding this pick, while the pick comes back here
    // (decode pipelining). If generation ends instead, the model's next call drops it.
    const pick = async (tokens: ArrayLike<number>, pos: number): Promise<number> => {
      const onBackend = hostOnly ? null : sampler.backendSampling();
      if (!onBackend) return sampler.sample(await model.forward(tokens, pos));
      const last = this.generatedIds.length + 1 >= options.maxTokens;
      return model.forwardSample(tokens, pos, onBackend, last ? undefined : sampler.peekBackendSampling() ?? undefined);
    };

    const start = performance.now();
    if (aborted()) {
      stats.stopReason = 'abort';
      return;
    }
    // Prefill: every chunk but the last only fills the KV cache; the last one also gives the first token.
    const chunk = Math.max(1, options.prefillChunk ?? model.chunkTokens ?? DEFAULT_CHUNK_TOKENS);
    // At least the last prompt token is always run: its logits give the first pick.
    let pos = options.reuseCache ? Math.min(cachedPrefixLength(model.cachedTokens, promptIds), promptIds.length - 1) : 0;
    stats.cachedPromptTokens = pos;
    while (promptIds.length - pos > chunk) {
      await model.forward(promptIds.slice(pos, pos + chunk), pos);
      pos += chunk;
      if (aborted()) {
        stats.stopReason = 'abort';
        stats.promptMs = performance.now() - start;
        return;
      }
    }
    const promptDone = (): number => {
      const now = performance.now();
      stats.promptMs = now - start;
      stats.promptTokensPerSec = (promptIds.length - stats.cachedPromptTokens) / (stats.promptMs / 1000);
      return now;
    };
    if (options.maxTokens === 0) {
      // The prompt alone is read into the cache and timed (llama.cpp's `-n 0` does the same); nothing is picked.
      await model.forward(promptIds.slice(pos), pos);
      promptDone();
      stats.stopReason = 'length';
      return;
    }
    let next = await pick(promptIds.slice(pos), pos);
    pos = promptIds.length;
    const firstAt = promptDone();
    stats.timeToFirstTokenMs = stats.promptMs;

    // Look-ahead: the next step is queued as soon as nothing cheap says this token ends generation, before the
    // token's text work and the consumer's handling of it (detokenizing, stop strings, rendering), which then
    // overlap the step instead of adding to it. When the token does end generation after all (a stop string, an
    // abort noticed meanwhile), the step is awaited and the cache trimmed back to what a loop without look-ahead
    // would have left.
    let ahead: Promise<number> | null = null;
    const dropAhead = async (): Promise<void> => {
      if (!ahead) return;
      const step = ahead;
      ahead = null;
      await step.catch(() => undefined);
      await model.trimCache(pos);
    };
    try {
      for (;;) {
        sampler.accept(next);
        this.generatedIds.push(next);
        stats.generatedTokens = this.generatedIds.length;
        // `next` would be fed at position `pos`; the cache holds positions [0, maxSeqLen).
        const eos = endIds.has(next);
        const atLength = this.generatedIds.length >= options.maxTokens, atContext = pos >= model.maxSeqLen;
        if (!eos && !atLength && !atContext && !aborted()) ahead = pick([next], pos);
        let text = '';
        let reason: StopReason | null = null;
        if (eos) {
          reason = 'eos';
        } else {
          const checked = stops.push(detok.push(next));
          text = checked.text;
          if (checked.stopped) reason = 'stop-string';
        }
        if (!reason && atLength) reason = 'length';
        if (!reason && atContext) reason = 'context';
        if (!reason && aborted()) reason = 'abort';
        if (reason && reason !== 'stop-string') {
          // Held-back bytes and stop-string prefixes turned out to be plain output.
          const tail = stops.push(detok.flush());
          text += tail.text + (tail.stopped ? '' : stops.flush());
        }

        const now = performance.now();
        stats.generateMs = now - firstAt;
        stats.generatedTokensPerSec = stats.generatedTokens > 1 ? (stats.generatedTokens - 1) / (stats.generateMs / 1000) : 0;
        if (reason) {
          stats.stopReason = reason;
          await dropAhead();
        }
        yield { id: next, text };
        if (reason || !ahead) return;
        const step: Promise<number> = ahead;
        ahead = null;
        next = await step;
        pos += 1;
      }
    } finally {
      await dropAhead();  // the consumer stopped iterating while a step was queued
    }
  }
}

/** How many leading tokens of `ids` the cache already holds. */
export function cachedPrefixLength(cached: readonly number[], ids: readonly number[]): number {
  const n = Math.min(cached.length, ids.length);
  let i = 0;
  while (i < n && cached[i] === ids[i]) i++;
  return i;
}

/** Runs generation; iterate the result for {id, text}, then read `stats` and `generatedIds`. */
export function generate(model: ModelHandle, tokenizer: GenerationTokenizer, promptIds: readonly number[],
                         options: GenerateOptions): Generation {
  return new Generation(model, tokenizer, promptIds, options);
}

// A multi-turn conversation with one loaded model, with no UI: the history, its rendering through the chat
// format, replies that prefill only what the KV cache does not already hold, and the context window — when
// the conversation outgrows the cache the oldest turns leave it (the system prompt stays) and the rest is
// prefilled again. The transcript keeps every turn.
import { UserError } from '../errors.js';
import type { ChatMessage } from './chat-template.js';
import { chatPromptIds, type ChatFormat } from './chat-templates.js';
import { generate, type StopReason } from './generate.js';
import type { ModelHandle } from './model-handle.js';
import type { SamplingParams } from './sampler.js';
import type { TextTokenizer } from './tokenizer.js';

export interface ChatTurn {
  user: string;
  assistant: string;
}

export interface ChatSessionOptions {
  format: ChatFormat;
  sampling: SamplingParams;
  /** Each generation in the session uses the next seed: seed, seed + 1, ... (a reply's first one is seed + n). */
  seed: number;
  /** Most tokens per reply; null: until the end of the turn or of the context. */
  maxTokens: number | null;
  system?: string | null;
  /** Prompt tokens per forward while prefilling (default: the backends' chunk). */
  prefillChunk?: number;
}

export type ChatEvent =
  /** One generated token and the text it made safe to show (may be ''). */
  | { kind: 'text'; text: string }
  /** The context filled during the reply: the oldest turns left it and the reply goes on. */
  | { kind: 'context-shift'; droppedTurns: number };

export interface ReplyStats {
  /** Tokens of the rendered conversation the reply answers. */
  promptTokens: number;
  /** Of those, tokens the KV cache already held (not prefilled again). */
  cachedPromptTokens: number;
  generatedTokens: number;
  timeToFirstTokenMs: number;
  /** Tokens after the first, per second, from the first token to the last. */
  tokensPerSec: number;
  stopReason: StopReason | null;
  /** Oldest turns that left the context for this reply (before it, and during it). */
  droppedTurns: number;
  /** Conversation tokens in the context after the reply. */
  contextUsed: number;
}

/** A reply being generated: iterate it for events; `text` and `stats` are final once iteration ends. */
export class ChatReply implements AsyncIterable<ChatEvent> {
  readonly stats: ReplyStats;
  text = '';
  /** True when the reply was stopped before it produced any text (the turn was not kept). */
  discarded = false;
  private started = false;

  constructor(private readonly run: (reply: ChatReply) => AsyncGenerator<ChatEvent>, promptTokens: number, droppedTurns: number) {
    this.stats = {
      promptTokens, cachedPromptTokens: 0, generatedTokens: 0, timeToFirstTokenMs: 0, tokensPerSec: 0,
      stopReason: null, droppedTurns, contextUsed: 0,
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<ChatEvent> {
    if (this.started) throw new Error('a ChatReply can be iterated once');
    this.started = true;
    return this.run(this);
  }
}

/** Room kept for a reply when older turns have to leave the context: a quarter of it, at most --max-tokens. */
function replyReserve(contextSize: number, maxTokens: number | null): number {
  return Math.min(maxTokens ?? Infinity, Math.max(16, Math.floor(contextSize / 4)));
}

export class ChatSession {
  private turns: ChatTurn[] = [];
  /** Index of the oldest turn still in the context. */
  private windowStart = 0;
  private systemPrompt: string | null = null;
  private generations = 0;
  private busy = false;
  private used = 0;

  constructor(readonly model: ModelHandle, readonly tokenizer: TextTokenizer, private readonly options: ChatSessionOptions) {
    if (options.system) this.setSystem(options.system);
  }

  get format(): ChatFormat {
    return this.options.format;
  }

  get system(): string | null {
    return this.systemPrompt;
  }

  /** The settings replies are generated with (a transcript records them). */
  get generationSettings(): { sampling: SamplingParams; seed: number; maxTokens: number | null } {
    return { sampling: { ...this.options.sampling }, seed: this.options.seed, maxTokens: this.options.maxTokens };
  }

  /** Every message of the conversation (the system prompt first), including turns that left the context. */
  get messages(): ChatMessage[] {
    return this.window(0, this.turns);
  }

  get turnCount(): number {
    return this.turns.length;
  }

  /** Turns still in the context. */
  get turnsInContext(): number {
    return this.turns.length - this.windowStart;
  }

  get contextSize(): number {
    return this.model.maxSeqLen;
  }

  /** Tokens the conversation takes in the context: after a reply its prompt and reply, else the rendered turns. */
  get contextUsed(): number {
    return this.used;
  }

  /** Sets (or with null or blank text, removes) the system prompt; refused if the template takes none. */
  setSystem(text: string | null): void {
    this.idle();
    const system = text !== null && text.trim() !== '' ? text : null;
    if (system !== null) {
      try {
        this.format.template.render([{ role: 'system', content: system }, { role: 'user', content: 'Hi' }]);
      } catch (err) {
        throw new UserError(`the chat template refuses a system prompt: ${(err as Error).message}`);
      }
    }
    this.systemPrompt = system;
    this.measure();
  }

  /** Forgets every turn (the system prompt stays). */
  reset(): void {
    this.idle();
    this.turns = [];
    this.windowStart = 0;
    this.measure();
  }

  /** Replaces the conversation (a loaded transcript); the newest turns that fit are in the context. */
  load(system: string | null, turns: readonly ChatTurn[]): void {
    this.idle();
    const previous = { system: this.systemPrompt, turns: this.turns };
    this.turns = turns.map((t) => ({ ...t }));
    this.windowStart = 0;
    try {
      this.setSystem(system);
      this.format.template.render(this.messages, { addGenerationPrompt: false });
    } catch (err) {
      this.turns = previous.turns;
      this.systemPrompt = previous.system;
      this.measure();
      throw err;
    }
    const limit = this.contextSize - replyReserve(this.contextSize, this.options.maxTokens);
    while (this.windowStart < this.turns.length && this.used > limit) {
      this.windowStart++;
      this.measure();
    }
  }

  /** Sends a user message; iterate the reply to generate it. Refused (UserError) if it can't fit the context. */
  send(text: string, signal?: AbortSignal): ChatReply {
    this.idle();
    if (text.trim() === '') throw new UserError('the message is empty');
    const fit = this.fit(text, this.turns.length, 0);
    if (!fit) throw this.tooLong(text);
    const dropped = fit.start - this.windowStart;
    this.windowStart = fit.start;
    this.turns.push({ user: text, assistant: '' });
    return this.reply(this.turns.length - 1, fit.ids, dropped, null, signal);
  }

  /** Generates the last reply again (with the next seed). */
  regenerate(signal?: AbortSignal): ChatReply {
    this.idle();
    const index = this.turns.length - 1;
    const turn = this.turns[index];
    if (!turn) throw new UserError('there is no reply to regenerate yet');
    const fit = this.fit(turn.user, index, 0);
    if (!fit) throw this.tooLong(turn.user);
    const dropped = fit.start - this.windowStart;
    this.windowStart = fit.start;
    const previous = turn.assistant;
    turn.assistant = '';
    return this.reply(index, fit.ids, dropped, previous, signal);
  }

  // The reply loop: generate with cache reuse; when the context fills and older turns can leave it, drop them,
  // prefill the shortened conversation plus what the reply has so far, and go on.
  private reply(index: number, promptIds: number[], dropped: number, previous: string | null, signal?: AbortSignal): ChatReply {
    const { model, tokenizer, options } = this;
    this.busy = true;
    const run = async function* (this: ChatSession, reply: ChatReply): AsyncGenerator<ChatEvent> {
      const turn = this.turns[index]!;
      const stats = reply.stats;
      const generated: number[] = [];
      let prompt = promptIds;
      let firstAt = 0;
      let lastAt = 0;
      let inContext = 0;
      try {
        for (let pass = 0; ; pass++) {
          const budget = Math.min((options.maxTokens ?? Infinity) - generated.length, model.maxSeqLen);
          const run = generate(model, tokenizer, prompt, {
            maxTokens: budget, sampling: options.sampling, seed: options.seed + this.generations++,
            stop: options.format.stopStrings, stopTokenIds: options.format.stopTokenIds, signal,
            prefillChunk: options.prefillChunk, reuseCache: true,
          });
          for await (const token of run) {
            lastAt = performance.now();
            if (generated.length === 0 && firstAt === 0) firstAt = lastAt;
            reply.text += token.text;
            yield { kind: 'text', text: token.text };
          }
          generated.push(...run.generatedIds);
          inContext = Math.min(model.maxSeqLen, prompt.length + run.generatedIds.length);
          if (pass === 0) {
            stats.cachedPromptTokens = run.stats.cachedPromptTokens;
            stats.timeToFirstTokenMs = run.stats.timeToFirstTokenMs;
          }
          stats.generatedTokens = generated.length;
          stats.tokensPerSec = generated.length > 1 ? (generated.length - 1) / ((lastAt - firstAt) / 1000) : 0;
          stats.stopReason = run.stats.stopReason;
          if (stats.stopReason !== 'context' || generated.length >= (options.maxTokens ?? Infinity)) break;
          const fit = this.windowStart < index ? this.fit(turn.user, index, generated.length) : null;
          if (!fit || fit.start === this.windowStart) break;
          const shifted = fit.start - this.windowStart;
          this.windowStart = fit.start;
          stats.droppedTurns += shifted;
          yield { kind: 'context-shift', droppedTurns: shifted };
          prompt = fit.ids.concat(generated);
        }
      } finally {
        const kept = reply.text.trim();
        if (kept === '' && (stats.stopReason === 'abort' || stats.stopReason === null)) {
          // Stopped (or failed) before it said anything: the turn is not kept, or the old reply comes back.
          if (previous === null) this.turns.splice(index, 1);
          else turn.assistant = previous;
          reply.discarded = true;
        } else {
          turn.assistant = kept;
        }
        this.busy = false;
        // The context now holds the prompt and the reply as generated (the next turn re-renders it).
        if (reply.discarded) this.measure();
        else this.used = inContext;
        stats.contextUsed = this.used;
      }
    };
    return new ChatReply((reply) => run.call(this, reply), promptIds.length, dropped);
  }

  /**
   * The context window for a reply to `user` after turns [.., completed): the first start (from the current
   * one on) whose prompt leaves `reserved` tokens plus room for the reply, else the one that drops every older
   * turn; null if even that leaves no position to generate in.
   */
  private fit(user: string, completed: number, reserved: number): { start: number; ids: number[] } | null {
    const limit = this.contextSize;
    const reserve = replyReserve(limit, this.options.maxTokens);
    for (let start = Math.min(this.windowStart, completed); ; start++) {
      const messages = this.window(start, this.turns.slice(0, completed));
      messages.push({ role: 'user', content: user });
      const ids = this.encode(messages, true);
      const need = ids.length + reserved;
      if (need + reserve <= limit || start >= completed) return need < limit ? { start, ids } : null;
    }
  }

  private tooLong(user: string): UserError {
    const limit = this.contextSize;
    const own = this.tokenizer.encode(user).length;
    if (own >= limit) return new UserError(`the message is ${own} tokens, longer than the whole context (${limit} tokens); it was not sent`);
    return new UserError(`the message is ${own} tokens; with the system prompt and chat template it leaves no room ` +
      `for a reply in the ${limit}-token context; it was not sent`);
  }

  /** Messages of turns [start, ..) of `turns`, the system prompt first. */
  private window(start: number, turns: readonly ChatTurn[]): ChatMessage[] {
    const messages: ChatMessage[] = this.systemPrompt !== null ? [{ role: 'system', content: this.systemPrompt }] : [];
    for (const t of turns.slice(start)) messages.push({ role: 'user', content: t.user }, { role: 'assistant', content: t.assistant });
    return messages;
  }

  private encode(messages: ChatMessage[], addGenerationPrompt: boolean): number[] {
    return chatPromptIds(this.tokenizer, this.format.template.render(messages, { addGenerationPrompt }));
  }

  private measure(): void {
    const messages = this.window(this.windowStart, this.turns);
    this.used = this.turns.length > this.windowStart ? this.encode(messages, false).length : 0;
  }

  private idle(): void {
    if (this.busy) throw new Error('the chat session is generating a reply');
  }
}

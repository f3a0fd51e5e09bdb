// Perplexity of a model on a text, in the field's two conventions. UI-free: commands/ppl.ts renders it.
//
// gptq (GPTQ/AWQ papers, ExLlama, transformers): the text tokenized once with one BOS at the start, cut into
// non-overlapping windows of ctx tokens (a partial last one is dropped), every prediction inside a window
// scored (ctx - 1 of them).
// llama.cpp (llama-perplexity): the same windows, the first token of each replaced by BOS, only the second
// half scored (rows floor(ctx/2) .. ctx-2, ctx - floor(ctx/2) - 1 predictions).
// --stride S: windows of ctx tokens every S tokens, each scoring its last S predictions. In gptq mode the first
// window scores all of its predictions (Hugging Face's sliding-window recipe: every token after the first is
// scored once); in llama.cpp mode every window starts with BOS and scores only its last S (llama-perplexity's
// --ppl-stride). Windows always lie wholly inside the text.
//
// PPL = exp(mean NLL); its error is llama-perplexity's: the standard error of the mean NLL, carried to PPL
// (sqrt(var / (n - 1)) · PPL).
import { performance } from 'node:perf_hooks';
import { UserError } from '../errors.js';
import type { ModelHandle } from './model-handle.js';

export type PplMode = 'gptq' | 'llama.cpp';
export const PPL_MODES: readonly PplMode[] = ['gptq', 'llama.cpp'];

export interface PplOptions {
  mode: PplMode;
  /** Tokens per window. */
  ctx: number;
  /** Sliding-window step; undefined: non-overlapping windows. */
  stride?: number;
  /** Most windows to score; undefined: all that fit. */
  maxChunks?: number;
}

/** Tokens [start, start + ctx) of the text; row r (r >= firstScored) predicts token start + r + 1. */
export interface PplWindow {
  start: number;
  firstScored: number;
  /** The window's first token is replaced by BOS (llama.cpp mode). */
  bos: boolean;
}

export interface PplPlan {
  mode: PplMode;
  ctx: number;
  stride: number | null;
  windows: PplWindow[];
  /** Predictions scored over all windows. */
  predictions: number;
}

/** Tokens per window unless told otherwise (the papers' 2048), capped by the model's context. */
export const DEFAULT_PPL_CTX = 2048;

/** --ctx and --stride must leave each window at least one prediction to score. */
export function checkWindowShape(mode: PplMode, ctx: number, stride?: number): void {
  const least = mode === 'llama.cpp' ? 3 : 2;  // llama.cpp mode scores rows floor(ctx/2) .. ctx-2
  if (!Number.isInteger(ctx) || ctx < least) {
    throw new UserError(`--ctx: ${mode} mode needs chunks of at least ${least} tokens, got ${ctx}`);
  }
  if (stride !== undefined && (!Number.isInteger(stride) || stride < 1 || stride >= ctx)) {
    throw new UserError(`--stride: must be from 1 to ${ctx - 1} (below --ctx ${ctx}), got ${stride}`);
  }
}

/** --ctx, or the default capped by the model's context; more than the model's context is refused. */
export function resolveCtx(ctx: number | undefined, modelContext: number): number {
  if (ctx === undefined) return Math.min(DEFAULT_PPL_CTX, modelContext);
  if (ctx > modelContext) {
    throw new UserError(`--ctx: ${ctx} is more than the model's context (max_position_embeddings ${modelContext})`);
  }
  return ctx;
}

/**
 * The windows for a text of `textTokens` tokens. `bosId`: the BOS that llama.cpp mode puts at the start of each
 * window (null when the tokenizer adds none). Throws a UserError, naming `source`, when the text is shorter
 * than one window.
 */
export function planWindows(textTokens: number, opts: PplOptions, bosId: number | null, source = 'the text'): PplPlan {
  const { mode, ctx, stride } = opts;
  checkWindowShape(mode, ctx, stride);
  if (textTokens < ctx) {
    throw new UserError(`${source}: the text is ${textTokens} tokens; one chunk of --ctx ${ctx} needs ${ctx} tokens`);
  }
  const step = stride ?? ctx;
  const fit = Math.floor((textTokens - ctx) / step) + 1;
  const count = Math.min(fit, opts.maxChunks ?? fit);
  const bos = mode === 'llama.cpp' && bosId !== null;
  const windows: PplWindow[] = [];
  for (let w = 0; w < count; w++) {
    let firstScored: number;
    if (stride === undefined) firstScored = mode === 'llama.cpp' ? Math.floor(ctx / 2) : 0;
    else firstScored = mode === 'gptq' && w === 0 ? 0 : ctx - 1 - stride;
    windows.push({ start: w * step, firstScored, bos });
  }
  const predictions = windows.reduce((n, w) => n + ctx - 1 - w.firstScored, 0);
  return { mode, ctx, stride: stride ?? null, windows, predictions };
}

/** Running sums of per-token NLLs (float64). */
export class NllStats {
  count = 0;
  private sum = 0;
  private sumSq = 0;

  add(nll: number): void {
    this.count += 1;
    this.sum += nll;
    this.sumSq += nll * nll;
  }

  get mean(): number {
    return this.sum / this.count;
  }

  get ppl(): number {
    return Math.exp(this.mean);
  }

  /** Standard error of the mean NLL carried to PPL; null below two predictions or with no spread. */
  get pplError(): number | null {
    if (this.count < 2) return null;
    const variance = this.sumSq / this.count - this.mean * this.mean;
    return variance > 0 ? Math.sqrt(variance / (this.count - 1)) * this.ppl : null;
  }
}

export interface PplProgress {
  /** Windows done, of `total`. */
  done: number;
  total: number;
  /** PPL over everything scored so far. */
  ppl: number;
  elapsedMs: number;
  /** Tokens run through the model so far. */
  evaluatedTokens: number;
  /** Time left at the mean pace so far. */
  etaMs: number;
}

export interface PplResult {
  ppl: number;
  /** Standard error carried to PPL (see NllStats.pplError). */
  stderr: number | null;
  /** Mean NLL per scored token (nats). */
  nll: number;
  /** Predictions scored. */
  tokens: number;
  chunks: number;
  /** Tokens run through the model (ctx - 1 per window: the last token is only ever a target). */
  evaluatedTokens: number;
  scoreMs: number;
  tokensPerSec: number;
  /** The running PPL after each window (llama-perplexity's [1]…,[2]… values). */
  runningPpl: number[];
}

/** The inputs and targets of one window: ctx - 1 tokens in, each row's next token as its target (-1: not scored). */
export function windowInputs(ids: ArrayLike<number>, ctx: number, w: PplWindow, bosId: number | null):
    { tokens: Int32Array; targets: Int32Array } {
  const tokens = new Int32Array(ctx - 1);
  const targets = new Int32Array(ctx - 1);
  for (let r = 0; r < ctx - 1; r++) {
    tokens[r] = ids[w.start + r];
    targets[r] = r >= w.firstScored ? ids[w.start + r + 1] : -1;
  }
  if (w.bos && bosId !== null) tokens[0] = bosId;
  return { tokens, targets };
}

/** Scores every window of the plan, one prompt pass each from an empty cache. */
export async function runPerplexity(model: ModelHandle, ids: ArrayLike<number>, plan: PplPlan, bosId: number | null,
                                    onProgress?: (p: PplProgress) => void): Promise<PplResult> {
  const stats = new NllStats();
  const runningPpl: number[] = [];
  let evaluatedTokens = 0;
  const t0 = performance.now();
  for (const [i, w] of plan.windows.entries()) {
    const { tokens, targets } = windowInputs(ids, plan.ctx, w, bosId);
    const nll = await model.score(tokens, 0, targets);
    for (let r = w.firstScored; r < nll.length; r++) stats.add(nll[r]);
    evaluatedTokens += tokens.length;
    runningPpl.push(stats.ppl);
    const elapsedMs = performance.now() - t0;
    onProgress?.({
      done: i + 1, total: plan.windows.length, ppl: stats.ppl, elapsedMs, evaluatedTokens,
      etaMs: (elapsedMs / (i + 1)) * (plan.windows.length - i - 1),
    });
  }
  const scoreMs = performance.now() - t0;
  return {
    ppl: stats.ppl, stderr: stats.pplError, nll: stats.mean, tokens: stats.count, chunks: plan.windows.length,
    evaluatedTokens, scoreMs, tokensPerSec: evaluatedTokens / (scoreMs / 1000), runningPpl,
  };
}

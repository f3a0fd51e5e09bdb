// Picks the next token from a row of logits: penalties, then greedy or temperature sampling with
// top-k → top-p → min-p → typical filtering (the order of Hugging Face transformers' logits warpers).
import type { TokenSampling } from './model-handle.js';
import { Rng } from './rng.js';
import { UserError } from '../errors.js';
import { FLOAT32_MAX, INT32_MAX, isIntIn } from './native-limits.js';

export interface SamplingParams {
  /** 0: greedy (argmax, first index on ties). */
  temperature: number;
  /** 0: off. */
  topK: number;
  /** 1: off. Keeps the most likely tokens until their mass reaches topP. */
  topP: number;
  /** 0: off. Drops tokens whose probability is below minP × the top probability. */
  minP: number;
  /** 1: off. Locally typical sampling (Meister et al.), as HF's TypicalLogitsWarper. */
  typicalP: number;
  /** 1: off. HF's: positive logits of every token seen (prompt and output) are divided, negative multiplied. */
  repeatPenalty: number;
  /** 0: off. OpenAI's: subtract count × penalty for each token generated so far. */
  frequencyPenalty: number;
  /** 0: off. OpenAI's: subtract the penalty once for each token generated so far. */
  presencePenalty: number;
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  typicalP: 1,
  repeatPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
};

/** Returns what is wrong with the parameters (named as the CLI flags are, with the value given), or null. */
export function checkSampling(p: SamplingParams): string | null {
  const finite = (v: number) => Number.isFinite(v);
  const problem = (name: string, rule: string, value: number, note = '') =>
    `${name} must be ${rule} (got ${value}${note && `; ${note}`})`;
  if (!finite(p.temperature) || p.temperature < 0) return problem('temperature', '>= 0', p.temperature);
  if (p.temperature > FLOAT32_MAX) return problem('temperature', `at most ${FLOAT32_MAX.toPrecision(3)}`, p.temperature);
  if (!isIntIn(p.topK, 0)) return problem('top-k', `an integer from 0 to ${INT32_MAX}`, p.topK, '0: off');
  if (!finite(p.topP) || p.topP <= 0 || p.topP > 1) return problem('top-p', 'in (0, 1]', p.topP);
  if (!finite(p.minP) || p.minP < 0 || p.minP > 1) return problem('min-p', 'in [0, 1]', p.minP);
  if (!finite(p.typicalP) || p.typicalP <= 0 || p.typicalP > 1) return problem('typical-p', 'in (0, 1]', p.typicalP);
  if (!finite(p.repeatPenalty) || p.repeatPenalty <= 0) return problem('repeat-penalty', '> 0', p.repeatPenalty, '1: off');
  if (!finite(p.frequencyPenalty) || Math.abs(p.frequencyPenalty) > 2) {
    return problem('frequency-penalty', 'in [-2, 2]', p.frequencyPenalty);
  }
  if (!finite(p.presencePenalty) || Math.abs(p.presencePenalty) > 2) {
    return problem('presence-penalty', 'in [-2, 2]', p.presencePenalty);
  }
  return null;
}

export function hasPenalties(p: Pick<SamplingParams, 'repeatPenalty' | 'frequencyPenalty' | 'presencePenalty'>): boolean {
  return p.repeatPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0;
}

/** Index of the largest value; the first one on ties (as torch.argmax and HF greedy). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i]! > bestValue) {
      bestValue = logits[i]!;
      best = i;
    }
  }
  return best;
}

/**
 * Applies the penalties in place. `seen`: every distinct id of prompt and output (repetition penalty);
 * `generatedCounts`: how often each id was generated (frequency and presence penalties).
 */
export function applyPenalties(logits: Float32Array, p: SamplingParams, seen: Iterable<number>,
                               generatedCounts: ReadonlyMap<number, number>): void {
  if (p.repeatPenalty !== 1) {
    for (const id of seen) {
      if (id < 0 || id >= logits.length) continue;
      const v = logits[id]!;
      logits[id] = v < 0 ? v * p.repeatPenalty : v / p.repeatPenalty;
    }
  }
  if (p.frequencyPenalty !== 0 || p.presencePenalty !== 0) {
    for (const [id, count] of generatedCounts) {
      if (id < 0 || id >= logits.length || count <= 0) continue;
      logits[id] = logits[id]! - count * p.frequencyPenalty - p.presencePenalty;
    }
  }
}

/** Candidate tokens, most likely first, with their (temperature-scaled) logits. */
export interface Candidates {
  ids: number[];
  logits: number[];
  /**
   * Weight, relative to exp(top logit), of tokens left out only to save sorting (not filtered out): top-p
   * must count them in the total mass. 0 or absent when the candidates are the whole distribution.
   */
  rest?: number;
}

/** The k largest logits, largest first; on ties the lower id wins (stable). */
export function topKCandidates(logits: ArrayLike<number>, k: number): Candidates {
  const ids: number[] = [];
  const vals: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (ids.length === k && !(v > vals[k - 1]!)) continue;
    let pos = ids.length === k ? k - 1 : ids.length;
    while (pos > 0 && v > vals[pos - 1]!) pos--;
    if (ids.length === k) {
      ids.pop();
      vals.pop();
    }
    ids.splice(pos, 0, i);
    vals.splice(pos, 0, v);
  }
  return { ids, logits: vals };
}

/** Every token, sorted by logit, largest first (stable). */
export function allCandidates(logits: ArrayLike<number>): Candidates {
  const ids = sortByLogit(Array.from({ length: logits.length }, (_, i) => i), logits);
  return { ids, logits: ids.map((i) => logits[i]!) };
}

const ID_SPAN = 2 ** 21;  // ids below it pack beside a 32-bit float order into a double's 53 exact bits
const floatBits = new Float32Array(1);
const floatWord = new Uint32Array(floatBits.buffer);

/**
 * `ids` sorted by their logits, largest first, the lower id first on ties. The backend's rows are float32: each
 * (logit, id) packs into one double whose numeric order is that order, and a typed sort without a comparator
 * runs ~10x faster than Array.sort with one (thousands of candidates a token for top-p without top-k).
 */
export function sortByLogit(ids: number[], logits: ArrayLike<number>): number[] {
  if (!(logits instanceof Float32Array) || logits.length > ID_SPAN) {
    return ids.sort((a, b) => logits[b]! - logits[a]! || a - b);
  }
  const keys = new Float64Array(ids.length);
  for (let j = 0; j < ids.length; j++) {
    floatBits[0] = logits[ids[j]!]! + 0;  // -0 as +0: they compare equal
    const u = floatWord[0]!;
    const order = u & 0x80000000 ? ~u >>> 0 : (u | 0x80000000) >>> 0;  // grows with the value
    keys[j] = (0xffffffff - order) * ID_SPAN + ids[j]!;
  }
  keys.sort();
  for (let j = 0; j < ids.length; j++) ids[j] = keys[j]! % ID_SPAN;
  return ids;
}

/**
 * The tokens whose temperature-scaled probability is at least `cut` × the top one's, sorted, with the
 * weight of the others in `rest`. Without a cut that reaches far enough (`mass`), widens it: top-p over
 * a large vocabulary then sorts a few hundred tokens instead of all of them, with the same result.
 */
export function likelyCandidates(logits: ArrayLike<number>, invT: number, cut: number, mass = 0): Candidates {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  const w = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += (w[i] = Math.exp((logits[i]! - max) * invT));
  let kept = 0;
  for (;;) {
    kept = 0;
    for (let i = 0; i < w.length; i++) if (w[i]! >= cut) kept += w[i]!;
    // A margin so that rounding in topPFilter's own sum can't leave the nucleus short.
    if (kept >= (mass + 1e-9) * total || cut === 0) break;
    cut = cut > 1e-300 ? cut * 1e-4 : 0;
  }
  const ids: number[] = [];
  for (let i = 0; i < w.length; i++) if (w[i]! >= cut) ids.push(i);
  sortByLogit(ids, logits);
  return { ids, logits: ids.map((i) => logits[i]! * invT), rest: total - kept };
}

/** Softmax of the candidates' logits (float64); `rest` adds weight outside them (relative to the top). */
export function softmax(logits: readonly number[], rest = 0): number[] {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const out = logits.map((v) => Math.exp(v - max));
  const sum = out.reduce((a, b) => a + b, 0) + rest;
  return out.map((v) => v / sum);
}

/** The first n candidates, as a filtered (complete) distribution. */
function keep(c: Candidates, n: number): Candidates {
  return { ids: c.ids.slice(0, n), logits: c.logits.slice(0, n) };
}

/** Keeps the smallest prefix (most likely first) whose probability mass reaches topP; at least one token. */
export function topPFilter(c: Candidates, topP: number): Candidates {
  if (topP >= 1) return c;
  const probs = softmax(c.logits, c.rest ?? 0);
  let cum = 0;
  let n = 0;
  // A token is kept while the mass of the tokens before it is still below topP (HF's rule).
  while (n < probs.length && cum < topP) cum += probs[n++]!;
  return keep(c, Math.max(1, n));
}

/**
 * XLLAMA_HOST_SAMPLING=1: every pick made here (Sampler.sample on the step's logits), none by the backend: the
 * reference the backend's picks are checked against (the same seed gives the same tokens either way).
 */
export function hostSamplingForced(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.XLLAMA_HOST_SAMPLING === '1';
}

/** Drops tokens whose probability is below minP × the most likely token's. */
export function minPFilter(c: Candidates, minP: number): Candidates {
  if (minP <= 0) return c;
  const probs = softmax(c.logits);
  const threshold = minP * probs[0]!;
  let n = 0;
  while (n < probs.length && probs[n]! >= threshold) n++;
  return keep(c, Math.max(1, n));
}

/**
 * Locally typical sampling: order tokens by how far their surprisal is from the entropy, keep the closest
 * until their mass reaches typicalP (the token that crosses is kept), as HF's TypicalLogitsWarper.
 */
export function typicalFilter(c: Candidates, typicalP: number): Candidates {
  if (typicalP >= 1) return c;
  const probs = softmax(c.logits);
  let entropy = 0;
  for (const p of probs) if (p > 0) entropy -= p * Math.log(p);
  const order = probs.map((p, i) => ({ i, d: Math.abs(-Math.log(p) - entropy) }));
  order.sort((a, b) => a.d - b.d || a.i - b.i);
  let cum = 0;
  const kept: number[] = [];
  for (const { i } of order) {
    kept.push(i);
    cum += probs[i]!;
    if (cum >= typicalP) break;
  }
  kept.sort((a, b) => a - b); // back to most-likely-first
  return { ids: kept.map((i) => c.ids[i]!), logits: kept.map((i) => c.logits[i]!) };
}

/** Picks from probabilities (not necessarily normalized) with one uniform number in [0, 1). */
export function pickIndex(probs: ArrayLike<number>, uniform: number): number {
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i]!;
  const target = uniform * total;
  let cum = 0;
  for (let i = 0; i < probs.length; i++) {
    cum += probs[i]!;
    if (target < cum) return i;
  }
  // Rounding left target at the very top: the last token with any mass.
  for (let i = probs.length - 1; i > 0; i--) if (probs[i]! > 0) return i;
  return 0;
}

/**
 * Damaged weights give NaN or infinite logits, which no sampling step can rank. The generation loop
 * stops with this error (a one-line message) rather than pick an id out of nothing.
 */
export class NonFiniteLogitsError extends UserError {
  constructor(what: string) {
    super(`the model's logits are not finite (${what}); its weights may be damaged`);
  }
}

/** Why a row of logits can't be sampled (a NaN, +∞, or every logit -∞), or null when it can. */
export function nonFiniteLogits(logits: ArrayLike<number>): string | null {
  const i = firstUnrankable(logits);
  if (i === -1) return null;
  if (i === -2) return `all ${logits.length} are -infinity`;
  return `${Number.isNaN(logits[i]!) ? 'NaN' : '+infinity'} at token ${i} of ${logits.length}`;
}

/**
 * The first index holding NaN or +∞; -2 when every value is -∞; -1 when the row can be sampled. Kept apart from
 * the messages: with them in its loop V8 ran this scan ~15x slower (430 µs per 32k row on Node 20), every token.
 */
function firstUnrankable(logits: ArrayLike<number>): number {
  let anyAboveMinusInf = false;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (!(v < Infinity)) return i;
    anyAboveMinusInf ||= v !== -Infinity;
  }
  return anyAboveMinusInf ? -1 : -2;
}

/** Samples token ids with one set of parameters and one seeded generator; remembers what it has seen. */
export class Sampler {
  readonly params: SamplingParams;
  private readonly rng: Rng;
  private readonly seen = new Set<number>();
  private readonly generatedCounts = new Map<number, number>();

  constructor(params: SamplingParams, seed: number) {
    const problem = checkSampling(params);
    if (problem) throw new RangeError(problem);
    this.params = params;
    this.rng = new Rng(seed);
  }

  /** The prompt's ids count for the repetition penalty. */
  observePrompt(ids: Iterable<number>): void {
    for (const id of ids) this.seen.add(id);
  }

  /** Records a generated id (for the penalties). */
  accept(id: number): void {
    this.seen.add(id);
    this.generatedCounts.set(id, (this.generatedCounts.get(id) ?? 0) + 1);
  }

  /**
   * Penalties may go to the backend from now on: the caller has given it this sampler's token history
   * (ModelHandle.setTokenHistory with the prompt), and the backend records each token it picks there as accept()
   * does here.
   */
  penaltiesOnBackend(): void {
    this.backendHistory = true;
  }

  private backendHistory = false;

  /**
   * When the backend can make the pick itself (greedy, or temperature with any top-k, top-p, min-p and typical-p;
   * penalties only once penaltiesOnBackend() was called), its settings with a uniform number from our
   * generator; else null (sample on the host). The backend applies the same rules
   * (addon/backend/sampled_rank.h, token_penalties.h), so a seed gives the same tokens either way, up to float
   * rounding at a boundary.
   */
  backendSampling(): TokenSampling | null {
    const ahead = this.drawnAhead;
    this.drawnAhead = null;
    return ahead ?? this.drawBackendSampling();
  }

  /**
   * What the next backendSampling() call will return, drawn now (for decode pipelining: the backend can start the
   * step after this one with it). The same numbers come out in the same order either way.
   */
  peekBackendSampling(): TokenSampling | null {
    this.drawnAhead ??= this.drawBackendSampling();
    return this.drawnAhead;
  }

  private drawnAhead: TokenSampling | null = null;

  private drawBackendSampling(): TokenSampling | null {
    const p = this.params;
    if (!hasPenalties(p)) return p.temperature <= 0 ? { temperature: 0, topK: 0, uniform: 0 } : this.drawSampled();
    if (!this.backendHistory) return null;
    const penalties = { repeatPenalty: p.repeatPenalty, frequencyPenalty: p.frequencyPenalty, presencePenalty: p.presencePenalty };
    // Greedy after penalties: the one most likely token of the penalized logits (no random number drawn).
    if (p.temperature <= 0) return { temperature: 1, topK: 1, uniform: 0, ...penalties };
    return { ...this.drawSampled(), ...penalties };
  }

  private drawSampled(): TokenSampling {
    const p = this.params;
    const draw: TokenSampling = { temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP, uniform: this.rng.uniform() };
    if (p.typicalP < 1) draw.typicalP = p.typicalP;
    return draw;
  }

  /** Picks the next id from one row of logits (the row may be modified). */
  sample(logits: Float32Array): number {
    const p = this.params;
    const bad = nonFiniteLogits(logits);
    if (bad) throw new NonFiniteLogitsError(bad);
    if (hasPenalties(p)) applyPenalties(logits, p, this.seen, this.generatedCounts);
    if (p.temperature <= 0) return argmax(logits);
    const invT = 1 / p.temperature;
    const needSorted = p.topP < 1 || p.minP > 0 || p.typicalP < 1;
    if (p.topK === 0 && !needSorted) {
      // Plain temperature sampling over the whole vocabulary, in id order.
      let max = -Infinity;
      for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
      const probs = new Float64Array(logits.length);
      for (let i = 0; i < logits.length; i++) probs[i] = Math.exp((logits[i]! - max) * invT);
      return pickIndex(probs, this.rng.uniform());
    }
    let c: Candidates;
    if (p.topK > 0 && p.topK < logits.length) {
      const top = topKCandidates(logits, p.topK);
      c = { ids: top.ids, logits: top.logits.map((v) => v * invT) };
    } else if (p.typicalP < 1) {
      const all = allCandidates(logits);
      c = { ids: all.ids, logits: all.logits.map((v) => v * invT) };
    } else {
      // Only top-p and/or min-p: tokens below min-p's cut never survive, and top-p needs only its nucleus.
      c = likelyCandidates(logits, invT, p.minP > 0 ? p.minP : 1e-4, p.topP < 1 ? p.topP : 0);
    }
    c = topPFilter(c, p.topP);
    c = minPFilter(c, p.minP);
    c = typicalFilter(c, p.typicalP);
    return c.ids[pickIndex(softmax(c.logits), this.rng.uniform())]!;
  }
}

// Benchmark tests in llama-bench's manner: ppN (a prompt of N tokens in one forward) and tgN (N tokens
// generated one per step, the pick made on the backend), each at a depth D (after D cached positions:
// tg128@d2048). A test runs untimed first (warm-up: CUDA graphs, caches), then `repetitions` timed runs.
// UI-free: `xllama bench` runs these in a child process per configuration and renders the results.
import { performance } from 'node:perf_hooks';
import { cachedPrefixLength } from './generate.js';
import type { MemoryUse, ModelHandle, TokenSampling } from './model-handle.js';

export type TestKind = 'pp' | 'tg';

export interface BenchTest {
  kind: TestKind;
  /** Prompt tokens (pp) or generated tokens (tg). */
  tokens: number;
  /** Cached positions before the test starts. */
  depth: number;
}

/** pp512, tg128, tg128@d2048: llama-bench's names. */
export function testName(t: BenchTest): string {
  return `${t.kind}${t.tokens}${t.depth > 0 ? `@d${t.depth}` : ''}`;
}

/** The inverse of testName; null for anything else. */
export function parseTestName(name: string): BenchTest | null {
  const m = /^(pp|tg)([1-9]\d*)(?:@d([1-9]\d*))?$/.exec(name);
  if (!m) return null;
  return { kind: m[1] as TestKind, tokens: Number(m[2]), depth: m[3] ? Number(m[3]) : 0 };
}

/** Every prompt size, then every generation size, each at every depth. */
export function planTests(promptSizes: number[], genSizes: number[], depths: number[]): BenchTest[] {
  const tests: BenchTest[] = [];
  for (const tokens of promptSizes) for (const depth of depths) tests.push({ kind: 'pp', tokens, depth });
  for (const tokens of genSizes) for (const depth of depths) tests.push({ kind: 'tg', tokens, depth });
  return tests;
}

/** KV-cache positions a test fills. */
export function positionsNeeded(t: BenchTest): number {
  return t.depth + t.tokens;
}

/** Mean and sample standard deviation (n - 1; 0 for a single value), as llama-bench reports t/s. */
export function meanSd(xs: readonly number[]): { mean: number; sd: number } {
  if (xs.length === 0) return { mean: NaN, sd: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length === 1) return { mean, sd: 0 };
  const sq = xs.reduce((a, x) => a + (x - mean) ** 2, 0);
  return { mean, sd: Math.sqrt(sq / (xs.length - 1)) };
}

/**
 * Deterministic ids spread over the vocabulary, avoiding the usual special ids 0-2. Id i depends on i
 * alone, so the ids of a shorter run are a prefix of a longer one's and a cached depth can be reused.
 */
export function syntheticTokens(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => ((i * 7919 + 13) % Math.max(1, vocab - 3)) + 3);
}

export interface TestTiming {
  /** Tokens per second of each timed run, in order. */
  tokensPerSec: number[];
  /** Wall-clock span of the timed runs (Unix epoch, ms): the window engine utilization is averaged over. */
  startMs: number;
  endMs: number;
}

const GREEDY: TokenSampling = { temperature: 0, topK: 0, uniform: 0 };

const epochMs = () => performance.timeOrigin + performance.now();

/** Leaves exactly `depth` synthetic positions in the cache, prefilling only what it does not hold yet. */
async function fillToDepth(model: ModelHandle, ids: number[], depth: number): Promise<void> {
  const kept = Math.min(depth, cachedPrefixLength(model.cachedTokens, ids));
  await model.trimCache(kept);
  if (kept < depth) await model.forward(ids.slice(kept, depth), kept);
}

/**
 * Warm-up runs a prompt test takes: the CUDA backend runs a prompt length's GEMMs on every SM the first time it
 * comes, times their SM count targets the second and (up to 512 tokens) captures its graph right after (a
 * perplexity run's chunks replay it from the third on).
 */
const PROMPT_WARMUPS = 2;

/**
 * Warm-up runs (PROMPT_WARMUPS for pp, one for tg), then `repetitions` timed runs; `onRun(i)` is told before
 * each (0: a warm-up).
 */
export async function runTest(model: ModelHandle, test: BenchTest, repetitions: number,
    onRun: (run: number) => void = () => {}): Promise<TestTiming> {
  const ids = syntheticTokens(test.depth + (test.kind === 'pp' ? test.tokens : 1), model.vocabSize);
  await fillToDepth(model, ids, test.depth);
  const prompt = Int32Array.from(ids.slice(test.depth));  // converted once, outside the timed part
  const tokensPerSec: number[] = [];
  let startMs = 0;
  const warmups = test.kind === 'pp' ? PROMPT_WARMUPS : 1;
  for (let run = 1 - warmups; run <= repetitions; run++) {
    onRun(Math.max(0, run));
    await model.trimCache(test.depth);
    if (run === 1) startMs = epochMs();
    const t0 = performance.now();
    if (test.kind === 'pp') {
      await model.forward(prompt, test.depth, false);
    } else {
      // Each step names the next (decode pipelining, as generation does), but the last: nothing runs past the timing.
      let id = prompt[0];
      for (let i = 0; i < test.tokens; i++) {
        id = await model.forwardSample([id], test.depth + i, GREEDY, i + 1 < test.tokens ? GREEDY : undefined);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    if (run > 0) tokensPerSec.push(test.tokens / seconds);
  }
  return { tokensPerSec, startMs, endMs: epochMs() };
}

/** The bytes one stage reads per generated token: its weights once, plus K and V of `context` positions. */
export interface StageBytes {
  device: number;
  bytes: number;
}

/**
 * Bytes a generated token reads on each stage at a cache of `context` positions. The KV cache's bytes per
 * position come from the backend's own report (its size over its capacity), whatever its element type.
 */
export function decodeBytesPerToken(memory: MemoryUse, maxSeqLen: number, context: number): StageBytes[] {
  return memory.devices.map((d) => ({ device: d.device, bytes: d.weightsBytes + (context * d.kvCacheBytes) / maxSeqLen }));
}

/** Positions a tgN test reads on average: the depth plus half of what it generates. */
export function meanDecodeContext(t: BenchTest): number {
  return t.depth + t.tokens / 2;
}

/**
 * The share of the copy bandwidth a decode speed uses: the time reading every stage's bytes would take at
 * its GPU's measured copy bandwidth, against the time a token took (for one GPU: bytes × t/s ÷ bandwidth).
 * Null when a stage's GPU has no measured bandwidth (the CPU backend).
 */
export function bandwidthUse(stages: StageBytes[], copyBytesPerSec: ReadonlyMap<number, number>,
    tokensPerSec: number): number | null {
  let floorSeconds = 0;
  for (const s of stages) {
    const bw = copyBytesPerSec.get(s.device);
    if (bw === undefined || !(bw > 0)) return null;
    floorSeconds += s.bytes / bw;
  }
  return stages.length === 0 ? null : floorSeconds * tokensPerSec;
}

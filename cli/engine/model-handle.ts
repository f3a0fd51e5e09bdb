// The TypeScript face of a loaded model on one backend. The native implementation lives in
// native-model.ts; the generation loop, perplexity and benchmarks are written against this interface.

export type BackendName = 'cpu' | 'cuda';

/** Prompt tokens the backends process per forward chunk unless told otherwise (bounds their scratch memory). */
export const DEFAULT_CHUNK_TOKENS = 512;
/**
 * The chunk a CUDA load takes instead when the GPU has room for its scratch at no cost to the context length:
 * each chunk dequantizes every weight once, so 4x fewer of them for long prompts (7B 2048-token prompt on the
 * H200: 39.8k t/s against 27.8k in chunks of 512; docs/PERF-NOTES.md, session 7).
 */
export const LARGE_CHUNK_TOKENS = 2048;

/** --gpus and --gpu-split as given (gpu-placement.ts checks and plans them). */
export interface GpuSplitRequest {
  /** --gpus: the GPUs, in order; a GPU may repeat (that is how a split is tried on one GPU). */
  gpus?: number[];
  /** --gpu-split: 'auto', or GB (2^30 bytes) per GPU in --gpus order. */
  split?: 'auto' | number[];
}

export interface OpenOptions {
  /** 'auto' picks CUDA when a GPU is present, else the CPU. */
  backend?: 'auto' | BackendName;
  /** KV-cache capacity in positions (default: the model's max_position_embeddings, capped by free memory). */
  maxSeqLen?: number;
  /** CPU threads (default: all cores). */
  threads?: number;
  /** CUDA device ordinal. */
  device?: number;
  /**
   * Prompt tokens per forward chunk (default: LARGE_CHUNK_TOKENS on CUDA when it fits without shortening the
   * context, else DEFAULT_CHUNK_TOKENS).
   */
  maxChunkTokens?: number;
  /** CUDA layer split, in order, covering every layer (cli/engine/gpu-split.ts plans it); default: one GPU. */
  stages?: StagePlan[];
  /**
   * --gpus / --gpu-split as given (cli/commands/model-options.ts): the CUDA load plans them into `stages`
   * (or one device) for the model, refusing what can't fit. Not with `stages`.
   */
  gpuSplit?: GpuSplitRequest;
  /** Called with the GPU plan, as text, before the weights load (--verbose prints it). */
  onPlan?: (text: string) => void;
}

/** One GPU's share of a layer split: layers [firstLayer, endLayer) on CUDA device `device`. */
export interface StagePlan {
  device: number;
  firstLayer: number;
  endLayer: number;
}

/** What one device holds (device -1: host memory, the CPU backend). */
export interface DeviceMemoryUse {
  device: number;
  weightsBytes: number;
  kvCacheBytes: number;
  scratchBytes: number;
}

export interface MemoryUse {
  /** Totals over `devices`. */
  weightsBytes: number;
  kvCacheBytes: number;
  scratchBytes: number;
  /** One entry per stage of a split (one for an unsplit model). */
  devices: DeviceMemoryUse[];
}

/** How to pick the next token on the backend itself (only the token id comes back). */
export interface TokenSampling {
  /** <= 0: greedy. */
  temperature: number;
  /** 0: whole vocabulary. */
  topK: number;
  /** After top-k: keeps the most likely tokens until their mass reaches it. 1 (the default): off. */
  topP?: number;
  /** Then drops tokens less likely than minP × the most likely one. 0 (the default): off. */
  minP?: number;
  /** Then locally typical sampling over what is left (the host sampler's typicalFilter). 1 (the default): off. */
  typicalP?: number;
  /** A uniform random number in [0, 1) from the caller's seeded generator. */
  uniform: number;
  /**
   * Penalties (the host sampler's, applied to the logits first) from the token history the backend keeps
   * (setTokenHistory); a pick with any of them records its token there. Sampled picks only: greedy with
   * penalties is temperature 1, top-k 1. Off when left out (1, 0, 0).
   */
  repeatPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
}

export interface ModelHandle {
  readonly backend: BackendName;
  readonly vocabSize: number;
  readonly maxSeqLen: number;
  /** Prompt tokens the backend runs per chunk (generation feeds long prompts in slices of this size). */
  readonly chunkTokens?: number;
  /**
   * The tokens whose keys and values the KV cache holds, in order, as of the last queued call (a host-side
   * mirror: callers reuse a cached prefix by comparing against it).
   */
  readonly cachedTokens: readonly number[];
  /** cachedTokens.length. */
  readonly cacheLength: number;
  /**
   * Runs tokens at positions [pos, pos + n); pos may be below cacheLength (the cache is cut to pos first),
   * never above. Resolves to float32 logits: n × vocab when allLogits, else the last row only. Calls on one
   * model run in the order they were made, off the JS thread.
   */
  forward(tokens: ArrayLike<number>, pos: number, allLogits?: boolean): Promise<Float32Array>;
  /**
   * forward() of the last row, then picks the token on the backend. `next`, when the caller will feed the picked
   * token at pos + tokens.length with that sampling unless generation ends: the backend may start that step before
   * this call resolves (decode pipelining: the GPU works while the token comes back to JS). Asking for exactly that
   * step next returns its pick; any other call waits for it first and drops it.
   */
  forwardSample(tokens: ArrayLike<number>, pos: number, sampling: TokenSampling, next?: TokenSampling): Promise<number>;
  /**
   * Perplexity scoring: forward() of the tokens, then one negative log-likelihood per row, of targets[i]
   * under row i's logits (targets[i] < 0: not scored, 0). The logits stay on the backend.
   */
  score(tokens: ArrayLike<number>, pos: number, targets: ArrayLike<number>): Promise<Float32Array>;
  /**
   * Sets the token history forwardSample's penalties read: the ids seen so far (prompt and earlier output) and
   * those generated, in order. Each pick with penalties then adds its own token. Queued in order with forward
   * calls. Absent: the backend can't apply penalties (the caller samples those on the host).
   */
  setTokenHistory?(seen: ArrayLike<number>, generated: ArrayLike<number>): Promise<void>;
  /** Keeps the first `length` cached positions; queued in order with forward calls. */
  trimCache(length: number): Promise<void>;
  memory(): MemoryUse;
  /** Frees native memory; the handle can't be used afterwards. */
  close(): void;
}

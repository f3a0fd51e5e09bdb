// The TypeScript face of a loaded model on one backend. The native implementation lives in
// native-model.ts; the generation loop, perplexity and benchmarks are written against this interface.

export type BackendName = 'cpu' | 'cuda';

/** Prompt tokens the backends process per forward chunk unless told otherwise (bounds their scratch memory). */
export const DEFAULT_CHUNK_TOKENS = 512;

export interface OpenOptions {
  /** 'auto' picks CUDA when a GPU is present, else the CPU. */
  backend?: 'auto' | BackendName;
  /** KV-cache capacity in positions (default: the model's max_position_embeddings, capped by free memory). */
  maxSeqLen?: number;
  /** CPU threads (default: all cores). */
  threads?: number;
  /** CUDA device ordinal. */
  device?: number;
  /** Prompt tokens per forward chunk (default DEFAULT_CHUNK_TOKENS). */
  maxChunkTokens?: number;
}

export interface MemoryUse {
  weightsBytes: number;
  kvCacheBytes: number;
  scratchBytes: number;
}

/** How to pick the next token on the backend itself (only the token id comes back). */
export interface TokenSampling {
  /** <= 0: greedy. */
  temperature: number;
  /** 0: whole vocabulary. */
  topK: number;
  /** A uniform random number in [0, 1) from the caller's seeded generator. */
  uniform: number;
}

export interface ModelHandle {
  readonly backend: BackendName;
  readonly vocabSize: number;
  readonly maxSeqLen: number;
  /** Positions currently held in the KV cache. */
  readonly cacheLength: number;
  /**
   * Runs tokens at positions [pos, pos + n) (pos must equal cacheLength or be lower, which trims first).
   * Resolves to float32 logits: n × vocab when allLogits, else the last row only. Runs off the JS thread.
   */
  forward(tokens: ArrayLike<number>, pos: number, allLogits?: boolean): Promise<Float32Array>;
  /** forward() of the last row, then picks the token on the backend. */
  forwardSample(tokens: ArrayLike<number>, pos: number, sampling: TokenSampling): Promise<number>;
  trimCache(length: number): void;
  memory(): MemoryUse;
  /** Frees native memory; the handle can't be used afterwards. */
  close(): void;
}

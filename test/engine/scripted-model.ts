// A ModelHandle whose logits make a fixed script of tokens the most likely ones, for testing the
// generation loop's control flow (chunking, stopping, aborts) independently of any real model.
import type { BackendName, MemoryUse, ModelHandle, TokenSampling } from '../../cli/engine/model-handle.js';
import { argmax } from '../../cli/engine/sampler.js';

export interface ForwardCall {
  kind: 'forward' | 'forwardSample';
  pos: number;
  tokens: number[];
  /** forwardSample's `next` (the sampling of the step the caller names as coming next), if given. */
  next?: TokenSampling;
}

export class ScriptedModel implements ModelHandle {
  readonly backend: BackendName = 'cpu';
  cachedTokens: number[] = [];
  get cacheLength(): number {
    return this.cachedTokens.length;
  }
  readonly calls: ForwardCall[] = [];

  /** After the prompt, the model "predicts" script[0], script[1], …; the last entry repeats. */
  constructor(readonly vocabSize: number, readonly maxSeqLen: number, private readonly promptLength: number,
              private readonly script: readonly number[]) {}

  private logitsAfter(pos: number, n: number): Float32Array {
    const step = pos + n - this.promptLength;
    const id = this.script[Math.min(step, this.script.length - 1)]!;
    const logits = new Float32Array(this.vocabSize).fill(-10);
    logits[id] = 10;
    return logits;
  }

  private advance(tokens: ArrayLike<number>, pos: number): void {
    if (pos > this.cacheLength) throw new Error(`forward at ${pos} with ${this.cacheLength} cached`);
    if (pos + tokens.length > this.maxSeqLen) throw new Error(`forward past the cache: ${pos} + ${tokens.length}`);
    this.cachedTokens = this.cachedTokens.slice(0, pos).concat(Array.from(tokens));
  }

  async forward(tokens: ArrayLike<number>, pos: number): Promise<Float32Array> {
    this.calls.push({ kind: 'forward', pos, tokens: Array.from(tokens) });
    this.advance(tokens, pos);
    return this.logitsAfter(pos, tokens.length);
  }

  async forwardSample(tokens: ArrayLike<number>, pos: number, sampling: TokenSampling, next?: TokenSampling): Promise<number> {
    this.calls.push({ kind: 'forwardSample', pos, tokens: Array.from(tokens), ...(next ? { next } : {}) });
    this.advance(tokens, pos);
    if (sampling.temperature > 0) throw new Error('the scripted model only picks greedily');
    return argmax(this.logitsAfter(pos, tokens.length));
  }

  async score(): Promise<Float32Array> {
    throw new Error('the scripted model does not score');
  }

  async trimCache(length: number): Promise<void> {
    this.cachedTokens = this.cachedTokens.slice(0, length);
  }

  memory(): MemoryUse {
    return { weightsBytes: 0, kvCacheBytes: 0, scratchBytes: 0, devices: [] };
  }

  close(): void {}
}

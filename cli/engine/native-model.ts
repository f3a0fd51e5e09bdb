// ModelHandle backed by the native addon (CPU or CUDA backend). Calls on one model are queued so only
// one runs at a time; native errors that carry a code (bad input, a full context, out of memory, ...)
// become one-line UserErrors.
import { UserError } from '../errors.js';
import { loadAddon } from '../native/addon.js';
import { performance } from 'node:perf_hooks';
import type { ModelShape, NativeAddon, NativeError, NativeModelHandle, NativeOpenOptions, NativeReadAheadHandle,
  SystemInfo } from '../native/types.js';
import { modelFootprint } from './gpu-footprint.js';
import { describeRequest, placeOnGpus, placeWithChunk } from './gpu-placement.js';
import { formatPlan, type SplitPlan } from './gpu-split.js';
import { DEFAULT_CHUNK_TOKENS, type BackendName, type MemoryUse, type ModelHandle, type OpenOptions,
  type TokenSampling } from './model-handle.js';
import type { GptqSettings, ModelSpec } from './model-spec.js';
import { DUMMY_GROUP_SIZE, dummyArch } from './dummy-models.js';
import { INT32_MAX, MAX_THREADS, isIntIn } from './native-limits.js';
import { NonFiniteLogitsError, checkSampling, hasPenalties } from './sampler.js';

/** Codes the native side uses for internal faults; every other code is a problem the user can act on. */
const INTERNAL_CODES = new Set(['internal']);

function toUserError(err: unknown, context?: string): unknown {
  const e = err as NativeError;
  // A pick on the backend met logits no sampling can rank: the same error the host sampler raises.
  if (e && e.code === 'non_finite_logits') return new NonFiniteLogitsError(e.message.split('\n')[0]!);
  if (e && typeof e.code === 'string' && !INTERNAL_CODES.has(e.code)) {
    const message = e.message.split('\n')[0];
    return new UserError(context ? `${context}: ${message}` : message);
  }
  return err;
}

/** Where NativeModel.open's time went, in seconds, in order (`bench --verbose` prints it). */
export interface OpenTimings {
  /** Finding and loading the native addon (only a process's first open pays for it). */
  addon: number;
  /** Starting the checkpoint read-ahead (0 for a dummy model). */
  readAhead: number;
  /** addon.systemInfo(): its first call in a process starts the CUDA driver and a context on each GPU. */
  gpuQuery: number;
  /** Checking the options and planning the placement on the GPUs. */
  placement: number;
  /** The native load: the request parsed, the checkpoint mapped and checked, the backend built. */
  native: number;
}

/** addon.systemInfo(), asked at most once per open (each call queries every GPU); `seconds`: what it took. */
interface SystemQuery {
  (): SystemInfo;
  seconds: number;
}

function systemQuery(addon: NativeAddon): SystemQuery {
  let info: SystemInfo | undefined;
  const query = (() => {
    if (!info) {
      const t0 = performance.now();
      info = addon.systemInfo();
      query.seconds = (performance.now() - t0) / 1000;
    }
    return info;
  }) as SystemQuery;
  query.seconds = 0;
  return query;
}

/** An open's timings; `planning` is the lap that held the GPU query (told apart by `system.seconds`) and the placement. */
function openTimings(addon: number, readAhead: number, system: SystemQuery, planning: number, native: number): OpenTimings {
  return { addon, readAhead, gpuQuery: system.seconds, placement: Math.max(0, planning - system.seconds), native };
}

/** Seconds since the last lap (or since the timer was made). */
function lapTimer(): () => number {
  let last = performance.now();
  return () => {
    const now = performance.now();
    const s = (now - last) / 1000;
    last = now;
    return s;
  };
}

/** 'auto' → CUDA when this build has it and a GPU is visible, else the CPU; a GPU request (--gpus) means CUDA. */
export function resolveBackend(system: () => SystemInfo, requested: OpenOptions['backend'], wantsGpus = false): BackendName {
  if (requested === 'cpu' || requested === 'cuda') return requested;
  if (wantsGpus) return 'cuda';
  const info = system();
  return info.cudaCompiled && info.gpus.length > 0 ? 'cuda' : 'cpu';
}

/** A one-line reason when the CUDA backend can't run here (no CUDA build, no GPU, no driver). */
function requireGpu(system: () => SystemInfo, what: string): void {
  const info = system();
  if (!info.cudaCompiled || info.gpus.length === 0) {
    throw new UserError(`${what} needs a CUDA GPU: ${info.gpuUnavailableReason ?? 'none found'}`);
  }
}

/** Each numeric open option, the name the user knows it by, and its range on the native side. */
const OPTION_RANGES = [
  { key: 'maxSeqLen', name: '--max-seq-len', min: 0, max: INT32_MAX },
  { key: 'threads', name: '--threads', min: 0, max: MAX_THREADS },
  { key: 'device', name: 'device', min: 0, max: INT32_MAX },
  { key: 'maxChunkTokens', name: 'maxChunkTokens', min: 1, max: INT32_MAX },
] as const;

function nativeOptions(system: () => SystemInfo, opts: OpenOptions): NativeOpenOptions {
  for (const { key, name, min, max } of OPTION_RANGES) {
    const v = opts[key];
    if (v !== undefined && !isIntIn(v, min, max)) throw new UserError(`${name}: expected an integer from ${min} to ${max}, got ${v}`);
  }
  if (opts.gpuSplit && opts.stages) throw new UserError('give either a GPU split request or stages, not both');
  if (opts.gpuSplit && opts.backend === 'cpu') {
    throw new UserError(`${describeRequest(opts.gpuSplit)}: GPU placement is for the cuda backend (--backend cpu was given)`);
  }
  opts.stages?.forEach((s, i) => {
    for (const key of ['device', 'firstLayer', 'endLayer'] as const) {
      if (!isIntIn(s[key], 0)) throw new UserError(`stages[${i}].${key}: expected an integer from 0 to ${INT32_MAX}, got ${s[key]}`);
    }
  });
  return {
    backend: resolveBackend(system, opts.backend, Boolean(opts.gpuSplit)),
    maxSeqLen: opts.maxSeqLen ?? 0,
    threads: opts.threads ?? 0,
    device: opts.device ?? 0,
    maxChunkTokens: opts.maxChunkTokens ?? DEFAULT_CHUNK_TOKENS,
    ...(opts.stages ? { stages: opts.stages.map((s) => ({ ...s })) } : {}),
  };
}

type FootprintShape = Parameters<typeof modelFootprint>[0];

/**
 * A CUDA load's placement: --gpus/--gpu-split (or the default device) planned against the GPUs' free memory,
 * written into the native options; the plan goes to onPlan. Explicit `stages` pass as they are (the backend
 * checks them).
 */
function placeModel(system: () => SystemInfo, options: NativeOpenOptions, opts: OpenOptions, shape: FootprintShape,
    modelMaxSeqLen: number): SplitPlan | null {
  if (options.backend !== 'cuda' || options.stages) return null;
  const gpus = system().gpus;
  const { placed, chunkTokens } = placeWithChunk((chunk) => placeOnGpus(modelFootprint(shape, chunk), opts.gpuSplit, {
    gpus, device: opts.device, maxSeqLen: options.maxSeqLen, modelMaxSeqLen,
  }), opts.maxChunkTokens);
  options.maxChunkTokens = chunkTokens;
  if (placed.stages) {
    options.stages = placed.stages;
    options.maxSeqLen = placed.maxSeqLen;
  } else {
    options.device = placed.device;
  }
  opts.onPlan?.(formatPlan(placed.plan, (d) => gpus.find((g) => g.index === d)?.name));
  return placed.plan;
}

/** A dummy preset's shapes as the loader names them (random GPTQ 4-bit weights, group size 128, symmetric). */
function dummyShape(name: string): { spec: FootprintShape; maxSeqLen: number } {
  const arch = dummyArch(name);
  const quant: Pick<GptqSettings, 'groupSize' | 'descAct' | 'sym'> = { groupSize: DUMMY_GROUP_SIZE, descAct: false, sym: true };
  return { spec: { arch: { ...arch, attentionBias: false }, quant }, maxSeqLen: arch.maxPositionEmbeddings };
}

/**
 * The checkpoint's read-ahead (addon/loader/checkpoint_read_ahead.h), or undefined: it only saves time, so
 * anything wrong with it leaves the load as it would be without (the load itself reports a bad checkpoint).
 */
function startReadAhead(addon: NativeAddon, spec: ModelSpec, gpu: boolean): NativeReadAheadHandle | undefined {
  try {
    return addon.startReadAhead(spec, gpu);
  } catch {
    return undefined;
  }
}

function checkPos(pos: number): void {
  if (!isIntIn(pos, 0)) throw new UserError(`position must be an integer from 0 to ${INT32_MAX} (got ${pos})`);
}

/**
 * The backend reads temperature, topP, minP, typicalP and uniform as floats and topK as an int; the ranges are the
 * host sampler's (checkSampling), so a backend pick refuses what the host sampler would.
 */
function checkTokenSampling(s: TokenSampling): void {
  const { topP = 1, minP = 0, typicalP = 1, repeatPenalty = 1, frequencyPenalty = 0, presencePenalty = 0 } = s;
  const problem = checkSampling({
    temperature: s.temperature, topK: s.topK, topP, minP, typicalP, repeatPenalty, frequencyPenalty, presencePenalty,
  });
  if (problem) throw new UserError(problem);
  if (!(s.uniform >= 0 && s.uniform < 1)) throw new UserError(`uniform must be in [0, 1) (got ${s.uniform})`);
  if (hasPenalties({ repeatPenalty, frequencyPenalty, presencePenalty }) && !(s.temperature > 0)) {
    throw new UserError('penalties need a sampled pick (temperature > 0; greedy with penalties is top-k 1)');
  }
}

function toInt32Tokens(tokens: ArrayLike<number>): Int32Array {
  if (tokens instanceof Int32Array) return tokens;
  const out = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < -0x80000000 || t > 0x7fffffff) throw new UserError(`token at index ${i} is not an integer id (${t})`);
    out[i] = t;
  }
  return out;
}

export class NativeModel implements ModelHandle {
  readonly backend: BackendName;
  readonly vocabSize: number;
  readonly maxSeqLen: number;
  readonly chunkTokens: number;
  /** Where the model went on the GPUs (null on the CPU, or for an explicit `stages` plan). */
  readonly plan: SplitPlan | null;
  private handle: NativeModelHandle | null;
  private tail: Promise<unknown> = Promise.resolve();
  /** The cache's tokens as of the last queued call (see ModelHandle.cachedTokens). */
  private cached: number[] = [];
  /** Forward-like calls queued so far (tells a failed call whether a later one has moved the mirror). */
  private cacheCalls = 0;

  private constructor(private readonly addon: NativeAddon, handle: NativeModelHandle, plan: SplitPlan | null,
      chunkTokens: number, readonly openTimings: OpenTimings) {
    this.handle = handle;
    this.plan = plan;
    this.chunkTokens = chunkTokens;
    this.backend = addon.backendName(handle) as BackendName;
    this.vocabSize = addon.vocabSize(handle);
    this.maxSeqLen = addon.maxSeqLen(handle);
  }

  /**
   * Maps the checkpoint described by `spec` and builds the backend (off the JS thread). The checkpoint's
   * read-ahead starts first, so the disk works while the GPU is queried and the placement planned.
   */
  static async open(spec: ModelSpec, opts: OpenOptions = {}): Promise<NativeModel> {
    const lap = lapTimer();
    const addon = loadAddon();
    const addonSeconds = lap();
    // Any backend but the CPU's may start the CUDA driver (auto asks it for the GPUs).
    const readAhead = startReadAhead(addon, spec, opts.backend !== 'cpu');
    const readAheadSeconds = lap();
    try {
      const system = systemQuery(addon);
      const options = nativeOptions(system, opts);
      if (options.backend === 'cuda') requireGpu(system, opts.gpuSplit ? describeRequest(opts.gpuSplit) : `${spec.dir} on the cuda backend`);
      const plan = placeModel(system, options, opts, spec, spec.arch.maxPositionEmbeddings);
      const planning = lap();
      let handle: NativeModelHandle;
      try {
        handle = await addon.loadModel(spec, options, readAhead);
      } catch (err) {
        throw toUserError(err, spec.dir);
      }
      const timings = openTimings(addonSeconds, readAheadSeconds, system, planning, lap());
      return new NativeModel(addon, handle, plan, options.maxChunkTokens ?? DEFAULT_CHUNK_TOKENS, timings);
    } finally {
      if (readAhead) addon.stopReadAhead(readAhead);
    }
  }

  /** A random GPTQ model of a preset shape (cli/engine/dummy-models.ts), GPU only. */
  static async openDummy(name: string, opts: OpenOptions = {}): Promise<NativeModel> {
    const arch = dummyArch(name);
    if (opts.backend === 'cpu') throw new UserError(`dummy model ${name} runs on the GPU only (not with the cpu backend)`);
    const lap = lapTimer();
    const addon = loadAddon();
    const addonSeconds = lap();
    const system = systemQuery(addon);
    requireGpu(system, `dummy model ${name}`);
    const options = nativeOptions(system, { ...opts, backend: 'cuda' });
    const shape = dummyShape(name);
    const plan = placeModel(system, options, opts, shape.spec, shape.maxSeqLen);
    const planning = lap();
    try {
      const handle = await addon.loadDummyModel({ ...arch, groupSize: DUMMY_GROUP_SIZE }, options);
      const timings = openTimings(addonSeconds, 0, system, planning, lap());
      return new NativeModel(addon, handle, plan, options.maxChunkTokens ?? DEFAULT_CHUNK_TOKENS, timings);
    } catch (err) {
      throw toUserError(err);
    }
  }

  get cachedTokens(): readonly number[] {
    this.live();
    return this.cached;
  }

  get cacheLength(): number {
    this.live();
    return this.cached.length;
  }

  async forward(tokens: ArrayLike<number>, pos: number, allLogits = false): Promise<Float32Array> {
    const ids = this.checkedTokens(tokens, pos);
    return this.enqueueForward(ids, pos, (h) => this.addon.forward(h, ids, pos, allLogits));
  }

  async forwardSample(tokens: ArrayLike<number>, pos: number, sampling: TokenSampling, next?: TokenSampling): Promise<number> {
    checkTokenSampling(sampling);
    if (next) checkTokenSampling(next);
    const ids = this.checkedTokens(tokens, pos);
    return this.enqueueForward(ids, pos, (h) => this.addon.forwardSample(h, ids, pos, sampling, next));
  }

  async score(tokens: ArrayLike<number>, pos: number, targets: ArrayLike<number>): Promise<Float32Array> {
    const ids = this.checkedTokens(tokens, pos);
    const want = toInt32Tokens(targets);
    if (want.length !== ids.length) throw new UserError(`score needs one target per token (${ids.length} tokens, ${want.length} targets)`);
    return this.enqueueForward(ids, pos, (h) => this.addon.score(h, ids, pos, want));
  }

  async setTokenHistory(seen: ArrayLike<number>, generated: ArrayLike<number>): Promise<void> {
    const seenIds = toInt32Tokens(seen), generatedIds = toInt32Tokens(generated);
    return this.enqueue(async (h) => this.addon.setTokenHistory(h, seenIds, generatedIds));
  }

  async trimCache(length: number): Promise<void> {
    if (!isIntIn(length, 0)) throw new UserError(`cache length must be an integer from 0 to ${INT32_MAX} (got ${length})`);
    if (length < this.cached.length) this.cached = this.cached.slice(0, length);
    ++this.cacheCalls;
    return this.enqueue(async (h) => this.addon.trimCache(h, length));
  }

  memory(): MemoryUse {
    return this.sync((h) => this.addon.memory(h));
  }

  shape(): ModelShape {
    return this.sync((h) => this.addon.modelShape(h));
  }

  /** Frees the native model; a forward still running finishes first (the native side defers the free). */
  close(): void {
    if (!this.handle) return;
    this.addon.closeModel(this.handle);
    this.handle = null;
  }

  private live(): NativeModelHandle {
    if (!this.handle) throw new UserError('the model has been closed');
    return this.handle;
  }

  private checkedTokens(tokens: ArrayLike<number>, pos: number): Int32Array {
    checkPos(pos);
    if (pos > this.cached.length) {
      throw new UserError(`position ${pos} is past the ${this.cached.length} positions held in the KV cache`);
    }
    return toInt32Tokens(tokens);
  }

  // A forward-like call: the mirror shows its tokens at once (later calls are queued behind it); if it
  // fails, the mirror is cut back to what the native cache still holds.
  private enqueueForward<T>(ids: Int32Array, pos: number, fn: (h: NativeModelHandle) => Promise<T>): Promise<T> {
    // A decode step appends in place (no copy of the whole history per token); anything else cuts first.
    if (pos < this.cached.length) this.cached = this.cached.slice(0, pos);
    for (const id of ids) this.cached.push(id);
    const call = ++this.cacheCalls;
    return this.enqueue(fn).catch((err: unknown) => {
      if (this.handle && this.cacheCalls === call) {  // no later call has moved the mirror since
        const keep = Math.min(this.addon.cacheLength(this.handle), pos);
        this.addon.trimCache(this.handle, keep);  // a call that failed before it started leaves more behind
        this.cached = this.cached.slice(0, keep);
      }
      throw err;
    });
  }

  private sync<T>(fn: (h: NativeModelHandle) => T): T {
    const h = this.live();
    try {
      return fn(h);
    } catch (err) {
      throw toUserError(err);
    }
  }

  // Runs native calls one after another (each waits for the previous one, whatever its outcome).
  private enqueue<T>(fn: (h: NativeModelHandle) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      try {
        return await fn(this.live());
      } catch (err) {
        throw toUserError(err);
      }
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

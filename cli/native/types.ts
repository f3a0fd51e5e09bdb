// The shape of what the native addon exports. Each area of the addon adds its functions here.

export interface GpuDescription {
  index: number;
  name: string;
  totalMemory: number;
  freeMemory: number;
  computeCapability: string;
  multiprocessors: number;
  l2Bytes: number;
  pciBusId: string;
}

export interface SystemInfo {
  cudaCompiled: boolean;
  cudaRuntime?: string;
  gpus: GpuDescription[];
  gpuUnavailableReason?: string;
}

export interface NativeAddon extends NativeModelApi {
  systemInfo(): SystemInfo;
  [name: string]: unknown;
}

// ---- model handles (addon/glue/model_binding.cc) ----

/** An opaque native model; pass it back to the functions below. */
export type NativeModelHandle = { readonly __nativeModel: unique symbol };

export interface NativeOpenOptions {
  backend: 'cpu' | 'cuda';
  maxSeqLen?: number;
  threads?: number;
  device?: number;
  maxChunkTokens?: number;
}

export interface NativeMemory {
  weightsBytes: number;
  kvCacheBytes: number;
  scratchBytes: number;
}

/** Native model calls reject / throw an Error with one of these codes (BackendError codes, or 'internal'). */
export interface NativeError extends Error {
  code?: string;
}

export interface NativeModelApi {
  loadModel(spec: import('../engine/model-spec.js').ModelSpec, options: NativeOpenOptions): Promise<NativeModelHandle>;
  loadDummyModel(name: string, options: NativeOpenOptions): Promise<NativeModelHandle>;
  forward(handle: NativeModelHandle, tokens: Int32Array, pos: number, allLogits: boolean): Promise<Float32Array>;
  forwardSample(handle: NativeModelHandle, tokens: Int32Array, pos: number,
    sampling: { temperature: number; topK: number; uniform: number }): Promise<number>;
  trimCache(handle: NativeModelHandle, length: number): void;
  cacheLength(handle: NativeModelHandle): number;
  maxSeqLen(handle: NativeModelHandle): number;
  vocabSize(handle: NativeModelHandle): number;
  memory(handle: NativeModelHandle): NativeMemory;
  backendName(handle: NativeModelHandle): string;
  closeModel(handle: NativeModelHandle): void;
  /** Which CPU kernels this process uses: 'avx2' or 'scalar' (XLLAMA_CPU_KERNELS=scalar forces the latter). */
  cpuKernels(): string;
}

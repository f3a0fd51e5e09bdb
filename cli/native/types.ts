// The shape of what the native addon exports. Each area of the addon adds its functions here.
import type { TokenSampling } from '../engine/model-handle.js';

export interface GpuDescription {
  index: number;
  name: string;
  totalMemory: number;
  freeMemory: number;
  computeCapability: string;
  multiprocessors: number;
  l2Bytes: number;
  pciBusId: string;
  /** False when this build can't run on the GPU (compute capability below 8.0, or no code for it). */
  supported: boolean;
  /** One line: which GPU, why, and what to do (use --backend cpu, or rebuild for its architecture). */
  unsupportedReason?: string;
}

/** What the addon binary was built with (answers without a GPU or driver). */
export interface BuildInfo {
  backends: ('cpu' | 'cuda')[];
  /** CUDA builds: the runtime compiled against, e.g. "13.0". */
  cudaRuntime?: string;
  /** CUDA builds: machine code (sm_XX) and PTX (compute_XX) held, e.g. "sm_80 sm_86 sm_89 sm_90 compute_90". */
  cudaArchitectures?: string;
  /** CUDA builds: prompt GEMMs through cuBLAS (else xllama's own tensor-core kernel). */
  cublas?: boolean;
  /** CPU backend compiled with its AVX2 kernels (picked at run time where the processor has them). */
  avx2Kernels: boolean;
  /** ... and with its AVX-512 decode kernel (picked where the processor has AVX-512F). */
  avx512Kernels: boolean;
}

export interface SystemInfo {
  cudaCompiled: boolean;
  cudaRuntime?: string;
  gpus: GpuDescription[];
  gpuUnavailableReason?: string;
}

export interface NativeAddon extends NativeModelApi {
  systemInfo(): SystemInfo;
  buildInfo(): BuildInfo;
  /** Device-to-device copy bandwidth of a GPU in bytes/s (read + written); throws without CUDA. */
  measureCopyBandwidth(device: number): number;
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
  stages?: { device: number; firstLayer: number; endLayer: number }[];
}

export interface NativeMemory {
  weightsBytes: number;
  kvCacheBytes: number;
  scratchBytes: number;
  devices: { device: number; weightsBytes: number; kvCacheBytes: number; scratchBytes: number }[];
}

/** The shapes of a loaded model (from its backend's config), under the loader's names for the same fields. */
export interface ModelShape {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositionEmbeddings: number;
}

/** What loadModel reads of a model (cli/engine/model-spec.ts's ModelSpec is one). */
export interface NativeModelSpec {
  arch: ModelShape & {
    rmsNormEps: number;
    ropeTheta: number;
    tieWordEmbeddings: boolean;
    ropeScaling: { type: string; factor: number; lowFreqFactor?: number; highFreqFactor?: number;
      originalMaxPositionEmbeddings?: number; attentionFactor?: number; betaFast?: number; betaSlow?: number;
      truncate?: boolean } | null;
  };
  quant: { bits: number; groupSize: number; descAct: boolean; sym: boolean; checkpointFormat: string } | null;
  tensors: Record<string, { file: string; offset: number; byteLength: number; dtype: string; shape: number[] }>;
}

/** Native model calls reject / throw an Error with one of these codes (BackendError codes, or 'internal'). */
export interface NativeError extends Error {
  code?: string;
}

/** A checkpoint read-ahead started by startReadAhead (addon/loader/checkpoint_read_ahead.h). */
export type NativeReadAheadHandle = { readonly __nativeReadAhead: unique symbol };

/** A pick on the backend: the engine's TokenSampling as is (what is left out is off). */
export type NativeTokenSampling = TokenSampling;

export interface NativeModelApi {
  /**
   * Starts reading the checkpoint's tensors into the page cache on a native thread, in the order loadModel
   * reads them, a bounded window ahead of it; undefined when there is none (a window of 0: the default without
   * `gpu` or XLLAMA_READ_AHEAD_MIB=0; no fadvise; a spec loadModel would refuse). `gpu`: the load may start the
   * CUDA driver (a window is then on by default). Pass it to loadModel, and stop it once it has ended.
   */
  startReadAhead(spec: NativeModelSpec, gpu?: boolean): NativeReadAheadHandle | undefined;
  /** Ends the read-ahead's thread (at once; a load that took it has ended it already). */
  stopReadAhead(readAhead: NativeReadAheadHandle): void;
  loadModel(spec: NativeModelSpec, options: NativeOpenOptions, readAhead?: NativeReadAheadHandle): Promise<NativeModelHandle>;
  /** A random GPTQ 4-bit model of this shape and group size, built on the GPU (cli/engine/dummy-models.ts). */
  loadDummyModel(arch: NativeModelSpec['arch'] & { groupSize: number }, options: NativeOpenOptions): Promise<NativeModelHandle>;
  forward(handle: NativeModelHandle, tokens: Int32Array, pos: number, allLogits: boolean): Promise<Float32Array>;
  /** `next`: the sampling of the step that will feed the picked token next (see ModelHandle.forwardSample). */
  forwardSample(handle: NativeModelHandle, tokens: Int32Array, pos: number,
    sampling: NativeTokenSampling, next?: NativeTokenSampling): Promise<number>;
  /** One NLL per token: -log softmax(logits_i)[targets[i]]; 0 where targets[i] < 0. */
  score(handle: NativeModelHandle, tokens: Int32Array, pos: number, targets: Int32Array): Promise<Float32Array>;
  trimCache(handle: NativeModelHandle, length: number): void;
  /** The penalties' token history: ids seen (prompt and earlier output) and generated (in order, for the counts). */
  setTokenHistory(handle: NativeModelHandle, seen: Int32Array, generated: Int32Array): void;
  cacheLength(handle: NativeModelHandle): number;
  maxSeqLen(handle: NativeModelHandle): number;
  vocabSize(handle: NativeModelHandle): number;
  memory(handle: NativeModelHandle): NativeMemory;
  modelShape(handle: NativeModelHandle): ModelShape;
  backendName(handle: NativeModelHandle): string;
  closeModel(handle: NativeModelHandle): void;
  /** Which CPU kernels this process uses: 'avx2' or 'scalar' (XLLAMA_CPU_KERNELS=scalar forces the latter). */
  cpuKernels(): string;
}

// ---- gpu-monitor: the NVML collector (addon/glue/monitor_binding.cc) ----
// Every measurement is null when this GPU/driver can't give it; `unavailable` says why, by field group.

export interface MonitorProbe {
  available: boolean;
  reason: string | null;
  library: string;
  driverVersion: string | null;
  gpuCount: number;
  missingFunctions: string[];
}

/** GPM metrics (Hopper+), averaged over the interval between two samples; percentages 0-100. */
export interface GpmSnapshot {
  supported: boolean;
  ready: boolean;
  /** Share of SMs holding at least one warp: "something is resident", not what the SMs compute. */
  smActivity: number | null;
  /** Resident warps against the SMs' maximum. */
  smOccupancy: number | null;
  tensorActivity: number | null;
  dramBandwidth: number | null;
  /** SM pipe utilizations (non-tensor FP16/FP32/FP64 and integer), each against its peak issue rate. */
  fp16: number | null;
  fp32: number | null;
  fp64: number | null;
  /** Absent in traces recorded before the integer pipe was sampled. */
  integer?: number | null;
  pcieTxBytesPerSec: number | null;
  pcieRxBytesPerSec: number | null;
  nvdec: (number | null)[];
  nvjpg: (number | null)[];
  nvofa: (number | null)[];
}

export interface GpuProcessSnapshot {
  pid: number;
  name: string;
  usedMemory: number | null;
  smUtil: number | null;
  memUtil: number | null;
  encUtil: number | null;
  decUtil: number | null;
}

export interface GpuSnapshot {
  index: number;
  name: string;
  uuid: string;
  pciBusId: string;
  gpm: GpmSnapshot;
  utilGpu: number | null;
  utilMemory: number | null;
  encoder: number | null;
  decoder: number | null;
  jpeg: number | null;
  ofa: number | null;
  memoryUsed: number | null;
  memoryTotal: number | null;
  powerW: number | null;
  powerLimitW: number | null;
  /** The power at the sample (NVML's instantaneous field); absent from traces recorded before it existed. */
  powerInstantW?: number | null;
  smClockMHz: number | null;
  memClockMHz: number | null;
  temperatureC: number | null;
  pcie: {
    txBytesPerSec: number | null;
    rxBytesPerSec: number | null;
    maxGen: number | null;
    maxWidth: number | null;
    gen: number | null;
    width: number | null;
  };
  processes: GpuProcessSnapshot[] | null;
  unavailable: Record<string, string>;
}

export interface MonitorSnapshot {
  seq: number;
  /** Unix epoch, milliseconds. */
  time: number;
  intervalMs: number;
  sampleCostMs: number;
  driverVersion: string;
  error: string | null;
  gpus: GpuSnapshot[];
}

export interface MonitorAddon {
  monitorProbe(): MonitorProbe;
  monitorStart(intervalMs: number): { ok: true } | { ok: false; reason: string };
  /** The latest snapshot; null before the first, or when none is newer than `afterSeq`. */
  monitorSnapshot(afterSeq?: number): MonitorSnapshot | null;
  monitorStop(): void;
}
// ---- end gpu-monitor ----

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

export interface NativeAddon {
  systemInfo(): SystemInfo;
  [name: string]: unknown;
}

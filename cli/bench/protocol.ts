// What a bench child (`xllama bench-run`, one configuration) tells the parent: one JSON object per line
// on the results pipe, written synchronously so that a crash leaves only whole lines behind.
import { writeSync } from 'node:fs';
import type { BackendName, MemoryUse } from '../engine/model-handle.js';

/** The loaded configuration: what every row of it shows beside the speed. */
export interface ConfigMessage {
  type: 'config';
  model: string;
  /** The model folder; null for a dummy. */
  modelPath: string | null;
  params: number;
  backend: BackendName;
  maxSeqLen: number;
  loadSeconds: number;
  memory: MemoryUse;
  /** Measured device-to-device copy bandwidth of each GPU the model is on (none on the CPU). */
  copyBandwidth: { device: number; bytesPerSec: number }[];
  /** The CUDA devices the model is on, with the PCI bus id that pairs them with NVML's GPUs. */
  gpus: { device: number; name: string; pciBusId: string }[];
  /** The CUDA runtime xllama was built with; null without CUDA. */
  cudaRuntime: string | null;
  gpuUnavailableReason: string | null;
}

export interface ResultMessage {
  type: 'result';
  test: string;
  tokensPerSec: number[];
  /** Unix epoch ms span of the timed runs. */
  startMs: number;
  endMs: number;
  /** tg tests: bytes read per token at the mean context, and their share of the copy bandwidth. */
  bytesPerToken: number | null;
  bandwidthUse: number | null;
}

export type ChildMessage =
  | ConfigMessage
  | ResultMessage
  | { type: 'skipped'; test: string; message: string }
  | { type: 'start'; test: string }
  | { type: 'run'; test: string; run: number }
  | { type: 'test-failed'; test: string; message: string }
  | { type: 'error'; message: string }
  | { type: 'done' };

export function writeMessage(fd: number, message: ChildMessage): void {
  writeSync(fd, `${JSON.stringify(message)}\n`);
}

const TYPES = new Set(['config', 'result', 'skipped', 'start', 'run', 'test-failed', 'error', 'done']);

/** A line from the pipe; null for anything that is not one of our messages. */
export function parseMessage(line: string): ChildMessage | null {
  try {
    const v = JSON.parse(line) as { type?: unknown };
    return v && typeof v === 'object' && typeof v.type === 'string' && TYPES.has(v.type) ? (v as ChildMessage) : null;
  } catch {
    return null;
  }
}

// Where a model goes on this machine's GPUs: --gpus and --gpu-split (parsed by cli/commands/model-options.ts)
// checked against the GPUs that exist, then planned (gpu-split.ts) into the stages the CUDA backend runs.
// Every CUDA load goes through here, so a model that does not fit is refused with the numbers before any
// weight is read.
import { UserError } from '../errors.js';
import type { GpuDescription } from '../native/types.js';
import type { ModelFootprint } from './gpu-footprint.js';
import { GB, planSplit, type SplitInput, type SplitPlan } from './gpu-split.js';
import { DEFAULT_CHUNK_TOKENS, LARGE_CHUNK_TOKENS, type GpuSplitRequest, type StagePlan } from './model-handle.js';

export interface Placement {
  plan: SplitPlan;
  /** Unsplit: the one device (the backend sizes the KV cache itself). */
  device?: number;
  /** Split: the stages, and the KV-cache length every stage was planned with. */
  stages?: StagePlan[];
  maxSeqLen?: number;
}

/**
 * A load's placement and the prompt chunk it runs with: `requested` when given; else LARGE_CHUNK_TOKENS where
 * its scratch fits with the same GPUs, layer ranges and context length that DEFAULT_CHUNK_TOKENS would get, else
 * the default (whose refusal, if even that can't fit, is the error). `place` plans for a chunk size.
 */
export function placeWithChunk(place: (chunkTokens: number) => Placement, requested?: number):
    { placed: Placement; chunkTokens: number } {
  if (requested !== undefined) return { placed: place(requested), chunkTokens: requested };
  const placed = place(DEFAULT_CHUNK_TOKENS);
  try {
    const large = place(LARGE_CHUNK_TOKENS);
    if (large.plan.seqLen >= placed.plan.seqLen && sameLayout(large, placed)) return { placed: large, chunkTokens: LARGE_CHUNK_TOKENS };
  } catch {
    // the large chunk's scratch doesn't fit
  }
  return { placed, chunkTokens: DEFAULT_CHUNK_TOKENS };
}

/** Whether two placements put the layers on the same devices in the same ranges. */
function sameLayout(a: Placement, b: Placement): boolean {
  const stages = (p: Placement) => (p.stages ?? []).map((s) => `${s.device}:${s.firstLayer}-${s.endLayer}`).join(',');
  return a.device === b.device && stages(a) === stages(b);
}

/** "--gpus 0,0 --gpu-split 1.5,4": how a request was spelled, for messages. */
export function describeRequest(req: GpuSplitRequest): string {
  return [req.gpus ? `--gpus ${req.gpus.join(',')}` : '', req.split ? `--gpu-split ${req.split === 'auto' ? 'auto' : req.split.join(',')}` : '']
    .filter(Boolean).join(' ');
}

/**
 * The devices a request names: --gpus, else as many GPUs as --gpu-split has budgets (0, 1, ...), else every GPU
 * for 'auto', else `device` alone. Throws for GPUs that don't exist when `gpuCount` is known.
 */
export function requestedDevices(req: GpuSplitRequest | undefined, gpuCount: number | null, device = 0): number[] {
  const budgets = Array.isArray(req?.split) ? req.split.length : 0;
  if (req?.gpus && budgets && budgets !== req.gpus.length) {
    throw new UserError(`--gpu-split: ${budgets} budget${budgets === 1 ? '' : 's'} for the ${req.gpus.length} ` +
      `GPU${req.gpus.length === 1 ? '' : 's'} of --gpus (give one per GPU, in order)`);
  }
  if (gpuCount !== null && !req?.gpus && budgets > gpuCount) {
    throw new UserError(`--gpu-split: ${budgets} budgets, but this machine has ${gpuCount} GPU${gpuCount === 1 ? '' : 's'} ` +
      '(name them with --gpus; a GPU may repeat, e.g. --gpus 0,0)');
  }
  const all = (n: number) => Array.from({ length: n }, (_, i) => i);
  const devices = req?.gpus ?? (budgets ? all(budgets) : req?.split === 'auto' ? all(gpuCount ?? 0) : [device]);
  if (gpuCount !== null) {
    for (const d of devices) {
      if (d >= gpuCount) {
        throw new UserError(`${req?.gpus ? '--gpus' : 'GPU'}: GPU ${d} does not exist (this machine has ` +
          `${gpuCount === 0 ? 'none' : gpuCount === 1 ? 'GPU 0 only' : `GPUs 0-${gpuCount - 1}`})`);
      }
    }
  }
  return devices;
}

export interface PlaceOptions {
  /** The GPUs of this machine, or null where that is unknown (no GPU here: a plan against the budgets alone). */
  gpus: GpuDescription[] | null;
  /** The device when nothing is requested. */
  device?: number;
  /** A fixed KV-cache length (0 or undefined: the model's context, or what fits). */
  maxSeqLen?: number;
  modelMaxSeqLen: number;
}

/** Plans where the model goes; throws a one-line UserError when the request is wrong or the model can't fit. */
export function placeOnGpus(fp: ModelFootprint, req: GpuSplitRequest | undefined, o: PlaceOptions): Placement {
  const devices = requestedDevices(req, o.gpus ? o.gpus.length : null, o.device ?? 0);
  const free = new Map<number, number | null>();
  for (const d of devices) free.set(d, o.gpus?.find((g) => g.index === d)?.freeMemory ?? null);
  const mode: SplitInput['mode'] = req?.split === 'auto' || (!req?.split && devices.length > 1) ? 'auto'
    : req?.split ? 'manual' : 'single';
  const spelled = req && (req.gpus || req.split) ? describeRequest(req) : `GPU ${devices[0]}`;
  if (mode === 'auto' && (devices.length === 0 || [...free.values()].some((f) => f === null))) {
    throw new UserError(`${spelled}: 'auto' plans from the GPUs' free memory, and no GPU is visible here ` +
      '(give GB per GPU instead, e.g. --gpu-split 20,24)');
  }
  const budgets = mode === 'manual' ? (req!.split as number[]).map((gb) => Math.floor(gb * GB))
    : mode === 'single' ? [free.get(devices[0]) ?? null] : undefined;
  const plan = planSplit(fp, {
    mode, devices, budgets, free, flag: spelled,
    seqLen: o.maxSeqLen && o.maxSeqLen > 0 ? o.maxSeqLen : undefined, maxSeqLen: Math.max(1, o.modelMaxSeqLen),
  });
  if (mode === 'single') return { plan, device: devices[0] };
  return {
    plan,
    stages: plan.stages.map((s) => ({ device: s.device, firstLayer: s.firstLayer, endLayer: s.endLayer })),
    maxSeqLen: plan.seqLen,
  };
}

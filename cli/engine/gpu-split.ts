// The layer split planner: which layers each GPU holds, from budgets (GB per GPU, ExLlama's --gpu-split) or
// from the GPUs' free memory ('auto'). Plain arithmetic over a ModelFootprint (gpu-footprint.ts), no GPU
// needed. Unlike a split that counts weights only, a budget counts everything that GPU will hold: its layers'
// weights, their share of the KV cache at the chosen context, its scratch and reserve, and the embedding table
// (first GPU) or final norm and lm_head (last GPU).
//
// GPUs are filled in order, each with as many layers as fit; a GPU that can't take one layer holds none. The
// last GPU used also holds the final norm and lm_head. Without a fixed context the KV cache gets the model's
// context, or the longest that fits.
import { UserError } from '../errors.js';
import { formatBytes } from '../format.js';
import type { ModelFootprint } from './gpu-footprint.js';

/** One budget unit: 2^30 bytes, as ExLlama counts its --gpu-split GB. */
export const GB = 2 ** 30;
/** Free memory 'auto' leaves unplanned on each GPU (other processes, the CUDA context growing, fragmentation). */
export const AUTO_MARGIN_BYTES = GB;

export interface PlannedStage {
  device: number;
  firstLayer: number;
  endLayer: number;
  /** Holds the embedding table (a tied one on the GPU) / the final norm and lm_head. */
  first: boolean;
  last: boolean;
  weightsBytes: number;
  kvCacheBytes: number;
  scratchBytes: number;
  reserveBytes: number;
  totalBytes: number;
  /** What this stage could use: the given budget, or (auto) its GPU's free memory less the margin and earlier stages. */
  budgetBytes: number | null;
}

export interface SplitPlan {
  mode: 'auto' | 'manual' | 'single';
  /** KV-cache positions every stage holds. */
  seqLen: number;
  /** The context was cut from this many positions to fit (null when it wasn't). */
  cappedFrom: number | null;
  stages: PlannedStage[];
  /** Devices that were offered but hold no layers. */
  unused: number[];
  /** Pinned host memory (the untied embedding table). */
  hostBytes: number;
  /** Free memory of each device named, when known. */
  free: { device: number; freeBytes: number | null }[];
}

export interface SplitInput {
  mode: 'auto' | 'manual' | 'single';
  /** The GPUs in order (a device may repeat). */
  devices: number[];
  /** manual/single: bytes per GPU, in `devices` order (single: null, no budget). */
  budgets?: (number | null)[];
  /** Free bytes per device, when known (auto needs them). */
  free: Map<number, number | null>;
  /** A fixed KV-cache length, else (undefined) the longest up to maxSeqLen that fits. */
  seqLen?: number;
  maxSeqLen: number;
  /** How the request was spelled, for messages (e.g. "--gpu-split 20,24"). */
  flag: string;
}

/** The bytes a stage holding layers [a, b) needs at a context of seqLen positions. */
export function stageBytes(fp: ModelFootprint, first: boolean, last: boolean, a: number, b: number, seqLen: number):
    Omit<PlannedStage, 'device' | 'budgetBytes'> {
  let weights = 0;
  for (let l = a; l < b; l++) weights += fp.layerWeights[l];
  weights += first && last ? fp.soleWeights : (first ? fp.firstWeights : 0) + (last ? fp.lastWeights : 0);
  const kv = (b - a) * seqLen * fp.kvBytesPerLayerPosition;
  const scratch = fp.stageScratch + (last ? fp.lastScratch : 0);
  return {
    firstLayer: a, endLayer: b, first, last, weightsBytes: weights, kvCacheBytes: kv, scratchBytes: scratch,
    reserveBytes: fp.stageReserve, totalBytes: weights + kv + scratch + fp.stageReserve,
  };
}

interface Assignment {
  stages: PlannedStage[];
  /** The first layer no GPU could take (numLayers when all are placed). */
  next: number;
  /** Per GPU offered, in order: what it could use (null: no limit) and the stage it got. */
  budgets: (number | null)[];
  got: (PlannedStage | null)[];
}

/** Greedy fill of the GPUs in order at one context length. */
function assign(fp: ModelFootprint, input: SplitInput, seqLen: number): Assignment {
  const L = fp.layerWeights.length;
  const a: Assignment = { stages: [], next: 0, budgets: [], got: [] };
  const left = new Map<number, number>();  // auto: what each device has left to plan
  for (const [d, f] of input.free) left.set(d, Math.max(0, (f ?? 0) - AUTO_MARGIN_BYTES));
  for (let i = 0; i < input.devices.length && a.next < L; i++) {
    const device = input.devices[i];
    const budget = input.mode === 'auto' ? left.get(device) ?? 0 : input.budgets?.[i] ?? null;
    a.budgets.push(budget);
    a.got.push(null);
    const fits = (s: { totalBytes: number }) => budget === null || s.totalBytes <= budget;
    const first = a.stages.length === 0;
    let stage = stageBytes(fp, first, true, a.next, L, seqLen);
    if (!fits(stage)) {
      // Not everything that is left: as many layers as fit, leaving at least one for a later GPU.
      let end = a.next;
      while (end + 1 < L && fits(stageBytes(fp, first, false, a.next, end + 1, seqLen))) end++;
      if (end === a.next) continue;
      stage = stageBytes(fp, first, false, a.next, end, seqLen);
    }
    const planned = { device, ...stage, budgetBytes: budget };
    a.stages.push(planned);
    a.got[i] = planned;
    if (input.mode === 'auto') left.set(device, (left.get(device) ?? 0) - stage.totalBytes);
    a.next = stage.endLayer;
  }
  return a;
}

const layerRange = (a: number, b: number) => (b - a === 1 ? `layer ${a}` : `layers ${a}-${b - 1}`);
const gib = (bytes: number) => (bytes / GB).toFixed(2);
const positions = (n: number) => `${n} position${n === 1 ? '' : 's'}`;

/** One line: what each GPU got against what it had, what was left over, and what the whole model needs. */
function doesNotFit(fp: ModelFootprint, input: SplitInput, seqLen: number, a: Assignment): UserError {
  const L = fp.layerWeights.length;
  const whole = stageBytes(fp, true, true, 0, L, seqLen);
  if (input.mode === 'single') {
    const free = a.budgets[0];
    return new UserError(`${input.flag}: the model needs ${gib(whole.totalBytes)} GB (weights ${gib(whole.weightsBytes)}, ` +
      `KV cache ${gib(whole.kvCacheBytes)} for ${positions(seqLen)}, scratch and reserve ` +
      `${gib(whole.scratchBytes + whole.reserveBytes)}), ${free === null || free === undefined ? '?' : gib(free)} GB is free`);
  }
  const rest = stageBytes(fp, a.stages.length === 0, true, a.next, L, seqLen);
  const have = input.mode === 'auto' ? 'free after the margin' : 'budget';
  const perGpu = input.devices.map((d, i) => {
    const s = a.got[i];
    const budget = a.budgets[i];
    const got = s ? `${layerRange(s.firstLayer, s.endLayer)} in ${gib(s.totalBytes)}` : 'nothing';
    return `GPU ${d}: ${got} of ${budget === null || budget === undefined ? '?' : gib(budget)} GB ${have}`;
  });
  return new UserError(`${input.flag}: the model does not fit: it needs ${gib(whole.totalBytes)} GB on one GPU ` +
    `(KV cache for ${positions(seqLen)}); ${perGpu.join('; ')}; ${layerRange(a.next, L)} with the final norm and ` +
    `lm_head (${gib(rest.totalBytes)} GB) are left over`);
}

/** Free memory per device against what the plan puts there (manual budgets can promise more than is free). */
function checkFree(plan: PlannedStage[], input: SplitInput): void {
  const used = new Map<number, number>();
  for (const s of plan) used.set(s.device, (used.get(s.device) ?? 0) + s.totalBytes);
  for (const [device, bytes] of used) {
    const free = input.free.get(device);
    if (free !== null && free !== undefined && bytes > free) {
      const held = plan.filter((s) => s.device === device).map((s) => layerRange(s.firstLayer, s.endLayer)).join(' and ');
      throw new UserError(`${input.flag}: GPU ${device} would hold ${gib(bytes)} GB (${held}), but ${gib(free)} GB ` +
        'is free there');
    }
  }
}

/** Plans the split, or throws a one-line UserError saying what does not fit, with the numbers. */
export function planSplit(fp: ModelFootprint, input: SplitInput): SplitPlan {
  const L = fp.layerWeights.length;
  if (L === 0) throw new UserError(`${input.flag}: the model has no layers to split`);
  const done = (seqLen: number, a: Assignment, cappedFrom: number | null): SplitPlan => {
    checkFree(a.stages, input);
    const used = new Set(a.stages.map((s) => s.device));
    return {
      mode: input.mode, seqLen, cappedFrom, stages: a.stages,
      unused: [...new Set(input.devices.filter((d) => !used.has(d)))],
      hostBytes: fp.hostBytes,
      free: [...new Set(input.devices)].map((device) => ({ device, freeBytes: input.free.get(device) ?? null })),
    };
  };
  if (input.seqLen !== undefined) {
    const a = assign(fp, input, input.seqLen);
    if (a.next < L) throw doesNotFit(fp, input, input.seqLen, a);
    return done(input.seqLen, a, null);
  }
  const full = assign(fp, input, input.maxSeqLen);
  if (full.next === L) return done(input.maxSeqLen, full, null);
  // The longest context that fits: fitting only gets easier as the context shrinks.
  let lo = 0, hi = input.maxSeqLen;  // lo fits (0: nothing known to fit yet), hi does not
  let best: Assignment | null = null;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    const a = assign(fp, input, mid);
    if (a.next === L) {
      lo = mid;
      best = a;
    } else {
      hi = mid;
    }
  }
  if (!best) throw doesNotFit(fp, input, 1, assign(fp, input, 1));
  return done(lo, best, input.maxSeqLen);
}

/** The plan as [label, text] rows: a headline, then one row per stage, the host part and unused GPUs. */
export function planRows(plan: SplitPlan, gpuName?: (device: number) => string | undefined): [string, string][] {
  const n = plan.stages.length;
  const kind = plan.mode === 'single' ? 'one GPU' : `${plan.mode} split over ${n} GPU${n === 1 ? '' : 's'}`;
  const ctx = positions(plan.seqLen) + (plan.cappedFrom === null ? '' : ` (cut from ${plan.cappedFrom} to fit)`);
  const rows: [string, string][] = [['GPU plan', `${kind}, KV cache for ${ctx}`]];
  for (const s of plan.stages) {
    const name = gpuName?.(s.device);
    const free = plan.free.find((f) => f.device === s.device)?.freeBytes;
    const holds = [s.first ? (plan.hostBytes > 0 ? 'embeddings (in host memory)' : 'embeddings') : '',
      s.last ? 'final norm, lm_head' : ''].filter(Boolean);
    const limit = [s.budgetBytes !== null && plan.mode !== 'single' ? `budget ${formatBytes(s.budgetBytes)}` : '',
      free !== null && free !== undefined ? `${formatBytes(free)} free` : ''].filter(Boolean);
    rows.push([`GPU ${s.device}${name ? ` (${name})` : ''}`, `${layerRange(s.firstLayer, s.endLayer)}` +
      `${holds.length ? ` + ${holds.join(', ')}` : ''}: ${formatBytes(s.totalBytes)} = weights ` +
      `${formatBytes(s.weightsBytes)}, KV cache ${formatBytes(s.kvCacheBytes)}, scratch ${formatBytes(s.scratchBytes)}, ` +
      `reserve ${formatBytes(s.reserveBytes)}${limit.length ? ` (${limit.join(', ')})` : ''}`]);
  }
  if (plan.hostBytes > 0) rows.push(['host memory', `${formatBytes(plan.hostBytes)}: the embedding table, pinned, read by the first GPU`]);
  if (plan.unused.length) rows.push(['unused', `GPU ${plan.unused.join(', ')} (the model fits before reaching them)`]);
  return rows;
}

/** The plan as indented lines of text (--verbose at load). */
export function formatPlan(plan: SplitPlan, gpuName?: (device: number) => string | undefined): string {
  const [[, headline], ...rest] = planRows(plan, gpuName);
  return `GPU plan: ${headline}\n${rest.map(([k, v]) => `  ${k}: ${v}\n`).join('')}`;
}

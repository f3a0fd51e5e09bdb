// The layer split planner on footprints whose numbers are written out by hand: budgets → layer ranges,
// 'auto' on given free memory, the context cut to fit, and the one-line refusals with their numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GB, AUTO_MARGIN_BYTES, planSplit, stageBytes, type SplitInput } from '../../cli/engine/gpu-split.js';
import type { ModelFootprint } from '../../cli/engine/gpu-footprint.js';
import { UserError } from '../../cli/errors.js';
import { placeOnGpus, placeWithChunk, type Placement } from '../../cli/engine/gpu-placement.js';
import { DEFAULT_CHUNK_TOKENS, LARGE_CHUNK_TOKENS } from '../../cli/engine/model-handle.js';
import type { SplitPlan } from '../../cli/engine/gpu-split.js';
import type { GpuDescription } from '../../cli/native/types.js';

// 10 layers of 1 GiB; K and V 256 KiB per layer and position (0.25 GiB per layer at 1024 positions); the
// first GPU holds a 0.5 GiB table, the last 1 GiB of final norm + lm_head; 0.25 GiB scratch per GPU, 0.25 GiB
// more on the last (logits), 0.25 GiB reserve per GPU.
const fp: ModelFootprint = {
  layerWeights: Array(10).fill(GB),
  firstWeights: GB / 2,
  lastWeights: GB,
  soleWeights: GB,
  kvBytesPerLayerPosition: 256 * 1024,
  stageScratch: GB / 4,
  lastScratch: GB / 4,
  stageReserve: GB / 4,
  hostBytes: 0,
};

const input = (over: Partial<SplitInput>): SplitInput => ({
  mode: 'manual', devices: [0, 1], free: new Map([[0, null], [1, null]]), seqLen: 1024, maxSeqLen: 4096,
  flag: '--gpu-split test', ...over,
});
const ranges = (p: { stages: { device: number; firstLayer: number; endLayer: number }[] }) =>
  p.stages.map((s) => [s.device, s.firstLayer, s.endLayer]);

test('manual budgets: each GPU takes the layers that fit, the last takes the rest with lm_head', () => {
  // GPU 0 (first, not last): 0.5 table + 0.25 scratch + 0.25 reserve = 1 GiB, plus 1.25 GiB a layer:
  // 5 GB holds 3 layers (4.75). GPU 1 (last): 7 layers 8.75 + 1 head + 0.5 scratch + 0.25 reserve = 10.5.
  const plan = planSplit(fp, input({ budgets: [5 * GB, 11 * GB] }));
  assert.deepEqual(ranges(plan), [[0, 0, 3], [1, 3, 10]]);
  assert.equal(plan.stages[0].totalBytes, 4.75 * GB);
  assert.equal(plan.stages[1].totalBytes, 10.5 * GB);
  assert.equal(plan.stages[0].kvCacheBytes, 3 * 0.25 * GB);
  assert.equal(plan.stages[1].weightsBytes, 8 * GB);
  assert.deepEqual(plan.stages.map((s) => [s.first, s.last]), [[true, false], [false, true]]);
  assert.equal(plan.seqLen, 1024);
  assert.equal(plan.cappedFrom, null);
  // One byte less on GPU 0 moves a layer: 3.75 + 1 GiB no longer fits 4.75 GiB - 1.
  const tighter = planSplit(fp, input({ budgets: [4.75 * GB - 1, 12 * GB] }));
  assert.deepEqual(ranges(tighter), [[0, 0, 2], [1, 2, 10]]);
});

test('three GPUs, a GPU named twice, a zero budget and a model that fits early', () => {
  const three = planSplit(fp, input({ devices: [0, 0, 1], free: new Map([[0, null], [1, null]]),
    budgets: [3.5 * GB, 2.5 * GB, 20 * GB] }));
  // 3.5: 1 + 2 layers (3.5); 2.5 (neither first nor last): 0.5 fixed + 1 layer (1.75), not 2 (3.0).
  assert.deepEqual(ranges(three), [[0, 0, 2], [0, 2, 3], [1, 3, 10]]);
  assert.equal(three.stages[1].weightsBytes, GB);  // no table, no head
  const skip = planSplit(fp, input({ budgets: [0, 20 * GB] }));
  assert.deepEqual(ranges(skip), [[1, 0, 10]]);
  assert.deepEqual(skip.unused, [0]);
  // One GPU holding everything: the table serves both ends (soleWeights once, not first + last).
  assert.equal(skip.stages[0].weightsBytes, 10 * GB + GB);
  const early = planSplit(fp, input({ budgets: [30 * GB, 5 * GB] }));
  assert.deepEqual(ranges(early), [[0, 0, 10]]);
  assert.deepEqual(early.unused, [1]);
});

test('auto fills GPUs in order from their free memory less a margin', () => {
  assert.equal(AUTO_MARGIN_BYTES, GB);
  // GPU 0: 8 GiB free - 1 margin = 7: 1 + 4 layers (6.0), not 5 (7.25). GPU 1 takes the other 6 (9.25).
  const plan = planSplit(fp, input({ mode: 'auto', free: new Map([[0, 8 * GB], [1, 20 * GB]]) }));
  assert.deepEqual(ranges(plan), [[0, 0, 4], [1, 4, 10]]);
  assert.equal(plan.stages[0].budgetBytes, 7 * GB);
  // The same GPU twice: the second stage gets what the first left (a model that fits stays in one stage).
  const same = planSplit(fp, input({ mode: 'auto', devices: [0, 0], free: new Map([[0, 30 * GB]]) }));
  assert.deepEqual(ranges(same), [[0, 0, 10]]);
  assert.equal(same.stages[0].budgetBytes, 29 * GB);
});

test('auto: when the GPUs are too small the refusal names each GPU with what it got and had', () => {
  assert.throws(() => planSplit(fp, input({ mode: 'auto', devices: [0, 0, 1], free: new Map([[0, 8 * GB], [1, 5 * GB]]) })),
    (err: unknown) => {
      assert.ok(err instanceof UserError);
      const m = err.message;
      assert.ok(!m.includes('\n'));
      // The whole model on one GPU: 11 GiB weights + 2.5 KV + 0.5 scratch + 0.25 reserve. GPU 0 first: 7 GiB
      // after the margin, 4 layers (6.0); GPU 0 again: the 1 GiB left holds no layer (1.75); GPU 1: 4 GiB,
      // 2 layers (3.0); left: 4 layers (5.0) + head 1 + scratch 0.5 + reserve 0.25.
      assert.equal(m, '--gpu-split test: the model does not fit: it needs 14.25 GB on one GPU (KV cache for 1024 ' +
        'positions); GPU 0: layers 0-3 in 6.00 of 7.00 GB free after the margin; GPU 0: nothing of 1.00 GB free ' +
        'after the margin; GPU 1: layers 4-5 in 3.00 of 4.00 GB free after the margin; layers 6-9 with the final ' +
        'norm and lm_head (6.75 GB) are left over');
      return true;
    });
});

test('a fixed context that does not fit is refused with the numbers; without one the context is cut to fit', () => {
  assert.throws(() => planSplit(fp, input({ budgets: [5 * GB, 5 * GB] })),
    /^UserError: --gpu-split test: the model does not fit: it needs 14\.25 GB on one GPU \(KV cache for 1024 positions\); GPU 0: layers 0-2 in 4\.75 of 5\.00 GB budget; GPU 1: layers 3-5 in 4\.25 of 5\.00 GB budget; layers 6-9 with the final norm and lm_head \(6\.75 GB\) are left over$/);
  // Without a fixed context: 4096 positions need 1 GiB of KV per layer; 5 + 11 GB hold 10 layers only with
  // a shorter cache. The planner takes the longest that fits: one more position does not.
  const plan = planSplit(fp, input({ budgets: [5 * GB, 11 * GB], seqLen: undefined }));
  assert.equal(plan.cappedFrom, 4096);
  assert.ok(plan.seqLen >= 1024 && plan.seqLen < 4096, String(plan.seqLen));
  for (const s of plan.stages) assert.ok(s.totalBytes <= s.budgetBytes!);
  assert.throws(() => planSplit(fp, input({ budgets: [5 * GB, 11 * GB], seqLen: plan.seqLen + 1 })), /does not fit/);
  // Budgets too small for even one position: refused, at the smallest context.
  assert.throws(() => planSplit(fp, input({ budgets: [1 * GB, 1 * GB], seqLen: undefined })), /KV cache for 1 position\)/);
});

test('manual budgets that promise more than a GPU has free are refused', () => {
  const plan = planSplit(fp, input({ devices: [0, 0], free: new Map([[0, 16 * GB]]), budgets: [5 * GB, 11 * GB] }));
  assert.equal(plan.stages.length, 2);  // 4.75 + 10.5 = 15.25 of 16 free
  assert.throws(() => planSplit(fp, input({ devices: [0, 0], free: new Map([[0, 15 * GB]]), budgets: [5 * GB, 11 * GB] })),
    /^UserError: --gpu-split test: GPU 0 would hold 15\.25 GB \(layers 0-2 and layers 3-9\), but 15\.00 GB is free there$/);
});

test('stageBytes: a stage counts its layers, its KV share, scratch, reserve and what it holds at either end', () => {
  const mid = stageBytes(fp, false, false, 2, 5, 2048);
  assert.equal(mid.weightsBytes, 3 * GB);
  assert.equal(mid.kvCacheBytes, 3 * 2048 * 256 * 1024);
  assert.equal(mid.scratchBytes, GB / 4);
  assert.equal(mid.totalBytes, 3 * GB + 1.5 * GB + GB / 4 + GB / 4);
  assert.equal(stageBytes(fp, true, false, 0, 1, 0).weightsBytes, GB + GB / 2);
  assert.equal(stageBytes(fp, false, true, 9, 10, 0).scratchBytes, GB / 2);
  assert.equal(stageBytes(fp, true, true, 0, 10, 0).weightsBytes, 11 * GB);
});

// ---- placement on this machine's GPUs (given here as data) ----
const gpu = (index: number, freeGb: number): GpuDescription => ({
  index, name: `GPU ${index}`, totalMemory: 80 * GB, freeMemory: freeGb * GB, computeCapability: '9.0',
  multiprocessors: 132, l2Bytes: 50 * 2 ** 20, pciBusId: `0000:0${index}:00.0`, supported: true,
});
const twoGpus = [gpu(0, 8), gpu(1, 20)];

test('placement: GPUs that do not exist, and more budgets than GPUs, are refused', () => {
  assert.throws(() => placeOnGpus(fp, { gpus: [0, 2], split: [5, 11] }, { gpus: twoGpus, modelMaxSeqLen: 1024 }),
    /^UserError: --gpus: GPU 2 does not exist \(this machine has GPUs 0-1\)$/);
  assert.throws(() => placeOnGpus(fp, { split: [5, 5, 5] }, { gpus: twoGpus, modelMaxSeqLen: 1024 }),
    /^UserError: --gpu-split: 3 budgets, but this machine has 2 GPUs \(name them with --gpus; a GPU may repeat, e\.g\. --gpus 0,0\)$/);
  assert.throws(() => placeOnGpus(fp, { gpus: [0, 1], split: [5] }, { gpus: twoGpus, modelMaxSeqLen: 1024 }),
    /3 budgets|1 budget for the 2 GPUs of --gpus/);
  assert.throws(() => placeOnGpus(fp, undefined, { gpus: [], device: 0, modelMaxSeqLen: 1024 }),
    /^UserError: GPU: GPU 0 does not exist \(this machine has none\)$/);
});

test('placement: budgets name GPUs 0, 1, … in order; auto takes every GPU; one GPU stays unsplit', () => {
  const manual = placeOnGpus(fp, { split: [5, 11] }, { gpus: twoGpus, maxSeqLen: 1024, modelMaxSeqLen: 4096 });
  assert.deepEqual(manual.stages, [{ device: 0, firstLayer: 0, endLayer: 3 }, { device: 1, firstLayer: 3, endLayer: 10 }]);
  assert.equal(manual.maxSeqLen, 1024);
  const auto = placeOnGpus(fp, { split: 'auto' }, { gpus: twoGpus, maxSeqLen: 1024, modelMaxSeqLen: 4096 });
  assert.deepEqual(auto.stages, [{ device: 0, firstLayer: 0, endLayer: 4 }, { device: 1, firstLayer: 4, endLayer: 10 }]);
  // --gpus 1 alone: GPU 1, unsplit; the backend sizes the cache (no stages, no fixed context).
  const single = placeOnGpus(fp, { gpus: [1] }, { gpus: twoGpus, modelMaxSeqLen: 1024 });
  assert.equal(single.device, 1);
  assert.equal(single.stages, undefined);
  assert.equal(single.plan.mode, 'single');
  // Nothing asked: the default device, checked against its free memory (8 GiB can't hold 14.25).
  assert.throws(() => placeOnGpus(fp, undefined, { gpus: twoGpus, device: 0, maxSeqLen: 1024, modelMaxSeqLen: 4096 }),
    /^UserError: GPU 0: the model needs 14\.25 GB \(weights 11\.00, KV cache 2\.50 for 1024 positions, scratch and reserve 0\.75\), 8\.00 GB is free$/);
  // Several GPUs without budgets: auto over them.
  const listed = placeOnGpus(fp, { gpus: [1, 0] }, { gpus: twoGpus, maxSeqLen: 1024, modelMaxSeqLen: 4096 });
  assert.equal(listed.plan.mode, 'auto');
  assert.deepEqual(listed.stages, [{ device: 1, firstLayer: 0, endLayer: 10 }]);
  assert.deepEqual(listed.plan.unused, [0]);
});

// placeWithChunk against a fake planner: seqLen per chunk size, or a refusal.
function fakePlace(seqLen: Record<number, number | 'refused'>, stages?: Record<number, number>):
    { place: (chunk: number) => Placement; asked: number[] } {
  const asked: number[] = [];
  return {
    asked,
    place: (chunk) => {
      asked.push(chunk);
      const s = seqLen[chunk];
      if (s === undefined || s === 'refused') throw new UserError(`chunk ${chunk}: the model does not fit`);
      const plan = { seqLen: s } as SplitPlan;
      if (!stages) return { plan, device: 0 };
      // a 2-GPU split whose boundary (first layer of stage 1) depends on the chunk
      return { plan, stages: [{ device: 0, firstLayer: 0, endLayer: stages[chunk]! }, { device: 1, firstLayer: stages[chunk]!, endLayer: 32 }], maxSeqLen: s };
    },
  };
}

test('prompt chunk: the large chunk where it costs no context and moves no layer, else the default, else the refusal', () => {
  const roomy = fakePlace({ [DEFAULT_CHUNK_TOKENS]: 4096, [LARGE_CHUNK_TOKENS]: 4096 });
  const r1 = placeWithChunk(roomy.place);
  assert.equal(r1.chunkTokens, LARGE_CHUNK_TOKENS);
  assert.equal(r1.placed.plan.seqLen, 4096);

  const shorter = fakePlace({ [DEFAULT_CHUNK_TOKENS]: 4096, [LARGE_CHUNK_TOKENS]: 3900 });
  const r2 = placeWithChunk(shorter.place);
  assert.equal(r2.chunkTokens, DEFAULT_CHUNK_TOKENS);
  assert.equal(r2.placed.plan.seqLen, 4096);

  const tight = fakePlace({ [DEFAULT_CHUNK_TOKENS]: 1024, [LARGE_CHUNK_TOKENS]: 'refused' });
  assert.equal(placeWithChunk(tight.place).chunkTokens, DEFAULT_CHUNK_TOKENS);

  const none = fakePlace({ [DEFAULT_CHUNK_TOKENS]: 'refused', [LARGE_CHUNK_TOKENS]: 'refused' });
  assert.throws(() => placeWithChunk(none.place), /chunk 512: the model does not fit/);

  // a split whose layers would move to make room for the large chunk's scratch keeps the default chunk
  const moved = fakePlace({ [DEFAULT_CHUNK_TOKENS]: 4096, [LARGE_CHUNK_TOKENS]: 4096 }, { [DEFAULT_CHUNK_TOKENS]: 20, [LARGE_CHUNK_TOKENS]: 18 });
  assert.equal(placeWithChunk(moved.place).chunkTokens, DEFAULT_CHUNK_TOKENS);
  const kept = fakePlace({ [DEFAULT_CHUNK_TOKENS]: 4096, [LARGE_CHUNK_TOKENS]: 4096 }, { [DEFAULT_CHUNK_TOKENS]: 20, [LARGE_CHUNK_TOKENS]: 20 });
  assert.equal(placeWithChunk(kept.place).chunkTokens, LARGE_CHUNK_TOKENS);

  const asked = fakePlace({ 300: 2048 });
  const r5 = placeWithChunk(asked.place, 300);
  assert.equal(r5.chunkTokens, 300);
  assert.deepEqual(asked.asked, [300]);  // a requested chunk is planned as asked, nothing else tried
});

// Parameter counts and GPU weight bytes for real model configs, against published numbers and arithmetic
// written out per layer in the CUDA backend's layout (cuda/stage_load.cu, cuda/weight_repack.cu).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { parseModelConfig } from '../../cli/engine/loader/config.js';
import { parameterCount, weightBytes, weightsGpuBytes, weightsHostBytes } from '../../cli/engine/loader/index.js';
import type { GptqSettings } from '../../cli/engine/model-spec.js';
import { readJson } from './model-dir.js';

const arch = (repo: string, file: string) => {
  const path = join(fixtures, 'configs', repo, file);
  return parseModelConfig(readJson(path), path);
};
const llama13 = arch('TheBloke_Llama-2-13B-chat-GPTQ', 'config.json');
const llama70 = arch('TheBloke_Genz-70b-GPTQ', 'config.3bit_branch.json');
const g128 = (descAct: boolean): GptqSettings =>
  ({ bits: 4, groupSize: 128, descAct, sym: true, checkpointFormat: 'gptq', source: 'config.json' });

test('parameter counts match the published Llama 2 sizes (13,015,864,320 and 68,976,648,192)', () => {
  assert.equal(parameterCount({ arch: llama13 }), 13_015_864_320);
  assert.equal(parameterCount({ arch: llama70 }), 68_976_648_192);
});

test('Llama-2-13B GPTQ g128 on one GPU: packed nibbles, fp16 scales and norms, lm_head; the untied table on the host', () => {
  const h = 5120, ff = 13824, layers = 40, vocab = 32000;
  // Per layer, as the CUDA backend stores it: 7 linears of K/2 × N bytes of nibbles and K/128 × N fp16 scales
  // (symmetric: every zero is 8, none stored), two fp16 norms.
  const linear = (k: number, n: number) => (k * n) / 2 + (k / 128) * n * 2;
  const perLayer = 4 * linear(h, h) + 2 * linear(h, ff) + linear(ff, h) + 2 * h * 2;
  const dense = vocab * h * 2 + h * 2; // lm_head + final norm; embed_tokens stays in pinned host memory
  const expected = layers * perLayer + dense;
  assert.equal(weightsGpuBytes({ arch: llama13, quant: g128(false) }), expected);
  assert.equal(weightsHostBytes({ arch: llama13, quant: g128(false) }), vocab * h * 2);
  // About 6.87 GB: the 7.26 GB checkpoint less its int32 qzeros and g_idx and the 0.33 GB embedding table.
  assert.ok(Math.abs(expected - 6.87e9) < 0.01e9, String(expected));
  // Act-order keeps one int32 row permutation per linear as uploaded: q/k/v share one (input h), o one (h),
  // gate/up one (h), down one (ff); and q/k/v's and gate/up's norms in their row order (fp16, h each).
  const perm = layers * ((3 * h + ff) * 4 + 2 * h * 2);
  assert.equal(weightsGpuBytes({ arch: llama13, quant: g128(true) }), expected + perm);
  // Asymmetric zeros are unpacked to a byte each: groups × N per linear.
  const zeros = layers * ((h / 128) * (4 * h + 2 * ff) + (ff / 128) * h);
  assert.equal(weightsGpuBytes({ arch: llama13, quant: { ...g128(false), sym: false } }), expected + zeros);
});

test('unquantized weights take 2 bytes per parameter, the untied embedding table in host memory', () => {
  assert.equal(weightsGpuBytes({ arch: llama13, quant: null }), 2 * 13_015_864_320 - 2 * 32000 * 5120);
});

test('no grouping (-1) keeps one scale row per linear; a group size not a multiple of 8 is stored as fp16', () => {
  const noGroup: GptqSettings = { ...g128(false), groupSize: -1 };
  const grouped = weightsGpuBytes({ arch: llama70, quant: g128(false) });
  const ungrouped = weightsGpuBytes({ arch: llama70, quant: noGroup });
  const h = 8192, kv = 1024, ff = 28672, layers = 80;
  // Per layer, outputs N of the linears: q,o: h; k,v: kv; gate,up: ff; down: h. Inputs K: h except down (ff).
  const rows = (k: number) => k / 128 - 1; // extra rows of fp16 scales (2 B each)
  const extraPerLayer = (rows(h) * (h + kv + kv + h + ff + ff) + rows(ff) * h) * 2;
  assert.equal(grouped - ungrouped, layers * extraPerLayer);
  // Group size 4: the kernels read whole packed rows of one group, so the backend dequantizes to fp16.
  const dense = weightsGpuBytes({ arch: llama13, quant: { ...g128(false), groupSize: 4 } });
  assert.equal(dense, weightsGpuBytes({ arch: llama13, quant: null }));
});

test('the 70B dummy shapes (llama-70b, GPTQ g128, untied): per-layer bytes written out', () => {
  const w = weightBytes({ arch: llama70, quant: g128(false) });
  const h = 8192, kv = 1024, ff = 28672;
  const linear = (k: number, n: number) => (k * n) / 2 + (k / 128) * n * 2;
  const layer = linear(h, h + 2 * kv) + linear(h, h) + linear(h, 2 * ff) + linear(ff, h) + 2 * h * 2;
  assert.deepEqual(new Set(w.layers), new Set([layer]));
  assert.equal(w.layers.length, 80);
  assert.equal(w.tied, false);
  assert.equal(w.lmHead, 32000 * h * 2);
  assert.equal(w.embedding, 32000 * h * 2);
  assert.equal(w.finalNorm, h * 2);
});

// Parameter counts and GPU weight bytes for real model configs, against published numbers and
// arithmetic written out per layer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { parseModelConfig } from '../../cli/engine/loader/config.js';
import { parameterCount, weightsGpuBytes } from '../../cli/engine/loader/index.js';
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

test('Llama-2-13B GPTQ g128: packed 4-bit linears + fp16 scales + int32 zeros + fp16 dense tensors', () => {
  const h = 5120, ff = 13824, layers = 40, vocab = 32000;
  // Per layer: 4 attention linears h→h, 2 MLP h→ff, 1 MLP ff→h; groups of 128 along the input.
  const linear = (k: number, n: number) => (k * n) / 2 + (k / 128) * n * 2 + (k / 128) * (n / 8) * 4;
  const perLayer = 4 * linear(h, h) + 2 * linear(h, ff) + linear(ff, h) + 2 * h * 2;
  const dense = 2 * vocab * h * 2 + h * 2; // embed + lm_head + final norm, fp16
  const expected = layers * perLayer + dense;
  assert.equal(weightsGpuBytes({ arch: llama13, quant: g128(false) }), expected);
  // About 7.25 GB, as the 7.26 GB checkpoint (which also stores g_idx) suggests.
  assert.ok(Math.abs(expected - 7.25e9) < 0.01e9, String(expected));
  // Act-order keeps one int32 g_idx entry per input column of every linear.
  const gIdx = layers * (4 * h + 2 * h + ff) * 4;
  assert.equal(weightsGpuBytes({ arch: llama13, quant: g128(true) }), expected + gIdx);
});

test('unquantized weights take 2 bytes per parameter', () => {
  assert.equal(weightsGpuBytes({ arch: llama13, quant: null }), 2 * 13_015_864_320);
});

test('no grouping (-1) keeps one scale and zero row per linear', () => {
  const noGroup: GptqSettings = { ...g128(false), groupSize: -1 };
  const grouped = weightsGpuBytes({ arch: llama70, quant: g128(false) });
  const ungrouped = weightsGpuBytes({ arch: llama70, quant: noGroup });
  const h = 8192, kv = 1024, ff = 28672, layers = 80;
  // Per layer, outputs N of the linears: q,o: h; k,v: kv; gate,up: ff; down: h. Inputs K: h except down (ff).
  const rows = (k: number) => k / 128 - 1; // extra rows of scales (2 B) and qzeros (N/8 × 4 B = N/2 B)
  const extraPerLayer = (rows(h) * (h + kv + kv + h + ff + ff) + rows(ff) * h) * 2.5;
  assert.equal(grouped - ungrouped, layers * extraPerLayer);
});

// `xllama info MODEL` on the three real fixture models: every reported value checked against the
// fixture's README facts and, for sizes, against the safetensors files read independently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/run-cli.js';
import { readRaw } from '../helpers/safetensors-writer.js';
import { FP16, G32, G64_ACT, fixtureModel } from './model-dir.js';

function infoJson(dir: string): Record<string, any> {
  const r = runCli(['info', dir, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return JSON.parse(r.stdout);
}

/**
 * GPU bytes from the file itself, in the CUDA backend's layout: fixture dense tensors are fp16 already and
 * qweight/scales are kept as stored; symmetric zeros are not stored. With act-order, one int32 permutation per
 * uploaded linear (q/k/v share one, gate/up share one) whose input has more than one group: here only down_proj
 * (192 inputs, groups of 64); the others have one group, whose permutation is the identity.
 */
function independentGpuBytes(dir: string, actOrder: boolean): number {
  const { header } = readRaw(join(dir, 'model.safetensors'));
  let sum = 0;
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__' || name.endsWith('.qzeros')) continue;
    if (name.endsWith('.g_idx') && !(actOrder && name.includes('down_proj'))) continue;
    const [a, b] = (e as { data_offsets: [number, number] }).data_offsets;
    sum += b - a;
  }
  return sum;
}

function assertStoriesShape(info: Record<string, any>, intermediate: number): void {
  assert.equal(info.architecture, 'LlamaForCausalLM');
  assert.equal(info.layers, 5);
  assert.equal(info.hiddenSize, 64);
  assert.equal(info.intermediateSize, intermediate);
  assert.equal(info.heads, 8);
  assert.equal(info.kvHeads, 4);
  assert.equal(info.headDim, 8);
  assert.equal(info.vocabSize, 512);
  assert.equal(info.contextLength, 512);
  assert.equal(info.rmsNormEps, 1e-5);
  assert.equal(info.ropeTheta, 10000);
  assert.equal(info.ropeScaling, null);
  assert.equal(info.tiedEmbeddings, true);
  assert.equal(info.bosTokenId, 1);
  assert.deepEqual(info.eosTokenIds, [2]);
  // embed 512×64 + 5 × (2 norms of 64 + q 64×64 + k,v 32×64 + o 64×64 + 3 MLP 64×ff) + final norm 64.
  const perLayer = 2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * intermediate;
  assert.equal(info.parameters, 512 * 64 + 5 * perLayer + 64);
}

test('info --json on the fp16 fixture', () => {
  const dir = fixtureModel(FP16);
  const info = infoJson(dir);
  assertStoriesShape(info, 172);
  assert.equal(info.parameters, 260_032); // "260K" in the model's name
  assert.equal(info.quantization, null);
  assert.equal(info.torchDtype, 'float16');
  assert.equal(info.diskBytes, 524_912);
  assert.equal(info.gpuWeightBytes, independentGpuBytes(dir, false));
});

test('info --json on the GPTQ g32 fixture', () => {
  const dir = fixtureModel(G32);
  const info = infoJson(dir);
  assertStoriesShape(info, 192);
  assert.deepEqual(info.quantization, {
    bits: 4, groupSize: 32, descAct: false, sym: true, checkpointFormat: 'gptq', source: 'config.json',
  });
  assert.equal(info.diskBytes, 236_040);
  assert.equal(info.diskBytes, statSync(join(dir, 'model.safetensors')).size);
  assert.equal(info.files.length, 1);
  assert.equal(info.gpuWeightBytes, independentGpuBytes(dir, false));
});

test('info --json on the GPTQ g64 act-order fixture', () => {
  const dir = fixtureModel(G64_ACT);
  const info = infoJson(dir);
  assertStoriesShape(info, 192);
  assert.deepEqual(info.quantization, {
    bits: 4, groupSize: 64, descAct: true, sym: true, checkpointFormat: 'gptq', source: 'config.json',
  });
  assert.equal(info.diskBytes, 226_440);
  assert.equal(info.gpuWeightBytes, independentGpuBytes(dir, true));
});

test('info prints a readable aligned block', () => {
  const r = runCli(['info', fixtureModel(G64_ACT)]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  const valueColumn = (l: string) => l.search(/ {2}\S/);
  assert.ok(lines.length >= 10);
  assert.ok(lines.every((l) => valueColumn(l) === valueColumn(lines[0]!)), r.stdout);
  assert.match(r.stdout, /^layers +5$/m);
  assert.match(r.stdout, /^attention heads +8 query, 4 key\/value \(GQA\), head dim 8$/m);
  assert.match(r.stdout, /^parameters +279K \(279,232\)$/m);
  assert.match(r.stdout, /^quantization +GPTQ 4-bit, group size 64, act-order yes, symmetric, format gptq \(from config\.json\)$/m);
  assert.match(r.stdout, /^size on disk +221\.1 KiB in 1 file$/m);
  assert.match(r.stdout, /^embeddings +tied/m);
});

test('info -m DIR, the other commands\' spelling, is the same as info DIR; two different folders are refused', () => {
  const dir = fixtureModel(G32);
  const byFlag = runCli(['info', '-m', dir, '--json']);
  assert.equal(byFlag.status, 0, byFlag.stderr);
  assert.deepEqual(JSON.parse(byFlag.stdout), infoJson(dir));
  assert.equal(runCli(['info', dir, '--model', dir]).status, 0);
  const two = runCli(['info', '-m', dir, fixtureModel(FP16)]);
  assert.equal(two.status, 2);
  assert.equal(two.stdout, '');
  assert.match(two.stderr, /^xllama: info: two model folders \(.+ and .+\); give one\n$/);
});

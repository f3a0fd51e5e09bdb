// loadModelSpec on model folders laid out the ways real checkpoints are: shards with or without an
// index, GPTQ settings only in the tensors, gptq_v2, old tokenizer_config.json, eos lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';
import { readSafetensors, rewriteTensors, writeSafetensors } from '../helpers/safetensors-writer.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import type { ModelSpec } from '../../cli/engine/model-spec.js';
import { FP16, G32, G64_ACT, copyFixture, editJson, fixtureModel } from './model-dir.js';

function bytesAt(file: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, length, offset);
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** Every tensor's offset in the spec points at exactly the bytes the original fixture file holds. */
function assertSameTensors(spec: ModelSpec, fixture: string): void {
  const { tensors } = readSafetensors(join(fixtureModel(fixture), 'model.safetensors'));
  assert.equal(Object.keys(spec.tensors).length, tensors.length);
  for (const t of tensors) {
    const e = spec.tensors[t.name];
    assert.ok(e, `spec lacks ${t.name}`);
    assert.equal(e.dtype, t.dtype);
    assert.deepEqual(e.shape, t.shape);
    assert.equal(e.byteLength, t.data.length);
    assert.ok(bytesAt(e.file, e.offset, e.byteLength).equals(t.data), `${t.name} offset points at other bytes`);
  }
}

function removeQuantInfo(dir: string): void {
  editJson(join(dir, 'config.json'), (c) => { delete c.quantization_config; });
  rmSync(join(dir, 'quantize_config.json'));
}

test('tensor offsets of every fixture point at the tensor bytes', () => {
  for (const f of [FP16, G32, G64_ACT]) assertSameTensors(loadModelSpec(fixtureModel(f)), f);
});

test('shards listed by model.safetensors.index.json load like the single file', () => {
  const dir = copyFixture(G32);
  const { tensors, metadata } = readSafetensors(join(dir, 'model.safetensors'));
  const half = Math.floor(tensors.length / 2);
  const shards = { 'model-00001-of-00002.safetensors': tensors.slice(0, half), 'model-00002-of-00002.safetensors': tensors.slice(half) };
  const weightMap: Record<string, string> = {};
  for (const [file, part] of Object.entries(shards)) {
    writeSafetensors(join(dir, file), part, metadata);
    for (const t of part) weightMap[t.name] = file;
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  rmSync(join(dir, 'model.safetensors'));
  const spec = loadModelSpec(dir);
  assert.equal(spec.files.length, 2);
  assertSameTensors(spec, G32);
  const emb = spec.tensors['model.embed_tokens.weight']!;
  assert.equal(emb.file, join(dir, weightMap['model.embed_tokens.weight']!));
  assert.equal(spec.quant?.groupSize, 32);
});

test('several *.safetensors files without an index are all read', () => {
  const dir = copyFixture(FP16);
  const { tensors } = readSafetensors(join(dir, 'model.safetensors'));
  writeSafetensors(join(dir, 'part-a.safetensors'), tensors.slice(0, 10));
  writeSafetensors(join(dir, 'part-b.safetensors'), tensors.slice(10));
  rmSync(join(dir, 'model.safetensors'));
  const spec = loadModelSpec(dir);
  assert.deepEqual(spec.files.map((f) => f.path), [join(dir, 'part-a.safetensors'), join(dir, 'part-b.safetensors')]);
  assertSameTensors(spec, FP16);
});

test('a TheBloke-style single file name (gptq_model-4bit-32g.safetensors) is found', () => {
  const dir = copyFixture(G32);
  renameSync(join(dir, 'model.safetensors'), join(dir, 'gptq_model-4bit-32g.safetensors'));
  assert.equal(loadModelSpec(dir).files[0]!.path, join(dir, 'gptq_model-4bit-32g.safetensors'));
});

test('GPTQ settings inferred from tensor shapes when no config has them (g32, no act-order)', () => {
  const dir = copyFixture(G32);
  removeQuantInfo(dir);
  assert.deepEqual(loadModelSpec(dir).quant,
    { bits: 4, groupSize: 32, descAct: false, sym: true, checkpointFormat: 'gptq', source: 'inferred' });
  const r = runCli(['info', dir, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).quantization.source, 'inferred');
  const human = runCli(['info', dir]);
  assert.match(human.stdout, /^quantization +GPTQ 4-bit, group size 32, act-order no, symmetric, format gptq \(inferred from the tensors\)$/m);
});

test('act-order inferred from a g_idx that is not k // group_size (g64)', () => {
  const dir = copyFixture(G64_ACT);
  removeQuantInfo(dir);
  assert.deepEqual(loadModelSpec(dir).quant,
    { bits: 4, groupSize: 64, descAct: true, sym: true, checkpointFormat: 'gptq', source: 'inferred' });
});

test('checkpoints without g_idx load, and g_idx absence is k // group_size', () => {
  const dir = copyFixture(G32);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => ts.filter((t) => !t.name.endsWith('.g_idx')));
  const spec = loadModelSpec(dir);
  assert.equal(spec.quant?.groupSize, 32);
  assert.equal(spec.tensors['model.layers.0.self_attn.q_proj.g_idx'], undefined);
  removeQuantInfo(dir);
  assert.equal(loadModelSpec(dir).quant?.descAct, false);
});

test('gptq_v2: declared in config.json, or inferred from zeros stored as 8', () => {
  const declared = copyFixture(G32);
  editJson(join(declared, 'config.json'), (c) => { c.quantization_config.checkpoint_format = 'gptq_v2'; });
  assert.equal(loadModelSpec(declared).quant?.checkpointFormat, 'gptq_v2');

  const inferred = copyFixture(G32);
  removeQuantInfo(inferred);
  rewriteTensors(join(inferred, 'model.safetensors'), (ts) => ts.map((t) =>
    t.name.endsWith('.qzeros') ? { ...t, data: Buffer.alloc(t.data.length, 0x88) } : t));
  const q = loadModelSpec(inferred).quant;
  assert.equal(q?.checkpointFormat, 'gptq_v2');
  assert.equal(q?.sym, true);
});

test('asymmetric zeros are inferred as sym false', () => {
  const dir = copyFixture(G32);
  removeQuantInfo(dir);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => ts.map((t) => {
    if (t.name !== 'model.layers.0.self_attn.q_proj.qzeros') return t;
    const data = Buffer.from(t.data);
    data.writeUInt32LE(0x76543210, 0);
    return { ...t, data };
  }));
  assert.equal(loadModelSpec(dir).quant?.sym, false);
});

test('old tokenizer_config.json with __type AddedToken is flattened to the token text', () => {
  const dir = copyFixture(G32);
  copyFileSync(join(fixtures, 'configs', 'TheBloke_Llama-2-13B-chat-GPTQ', 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  const cfg = loadModelSpec(dir).tokenizer.tokenizerConfig;
  assert.equal(cfg.bos_token, '<s>');
  assert.equal(cfg.eos_token, '</s>');
  assert.equal(cfg.unk_token, '<unk>');
  assert.equal(cfg.add_bos_token, true);
  assert.equal(cfg.pad_token, null);
});

test('new tokenizer_config.json passes through; tokenizer.json path is absolute', () => {
  const spec = loadModelSpec(fixtureModel(FP16));
  assert.equal(spec.tokenizer.tokenizerConfig.bos_token, '<s>');
  assert.equal(spec.tokenizer.tokenizerJsonPath, join(fixtureModel(FP16), 'tokenizer.json'));
  assert.deepEqual(spec.tokenizer.generationConfig, { _from_model_config: true, bos_token_id: 1, eos_token_id: 2 });
});

test('eos_token_id as a list in generation_config.json merges with config.json', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'generation_config.json'), (g) => { g.eos_token_id = [7, 2]; g.bos_token_id = 3; });
  editJson(join(dir, 'config.json'), (c) => { c.eos_token_id = 9; });
  const spec = loadModelSpec(dir);
  assert.deepEqual(spec.eosTokenIds, [7, 2, 9]);
  assert.equal(spec.bosTokenId, 3);
  rmSync(join(dir, 'generation_config.json'));
  const noGen = loadModelSpec(dir);
  assert.deepEqual(noGen.eosTokenIds, [9]);
  assert.equal(noGen.bosTokenId, 1);
  assert.equal(noGen.tokenizer.generationConfig, null);
});

test('no grouping (group_size -1): one scales/qzeros row per linear, declared or inferred', () => {
  const dir = copyFixture(G32);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => ts.map((t) => {
    if (t.name.endsWith('.scales') || t.name.endsWith('.qzeros')) {
      const rowBytes = t.data.length / t.shape[0]!;
      return { ...t, shape: [1, t.shape[1]!], data: t.data.subarray(0, rowBytes) };
    }
    if (t.name.endsWith('.g_idx')) return { ...t, data: Buffer.alloc(t.data.length) };
    return t;
  }));
  editJson(join(dir, 'config.json'), (c) => { c.quantization_config.group_size = -1; });
  const declared = loadModelSpec(dir);
  assert.equal(declared.quant?.groupSize, -1);
  assert.deepEqual(declared.tensors['model.layers.0.mlp.down_proj.scales']?.shape, [1, 64]);
  removeQuantInfo(dir);
  assert.deepEqual(loadModelSpec(dir).quant,
    { bits: 4, groupSize: -1, descAct: false, sym: true, checkpointFormat: 'gptq', source: 'inferred' });
});

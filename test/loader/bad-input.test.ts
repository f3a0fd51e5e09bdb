// Every kind of broken model folder gives a one-line error naming the file, tensor or field, exit
// code 2, and no stack trace. Each test damages its own copy of a fixture.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';
import { assertCliRefused } from '../helpers/assert-refused.js';
import { readRaw, readSafetensors, rewriteHeader, rewriteTensors, writeRaw, writeSafetensors } from '../helpers/safetensors-writer.js';
import { FP16, G32, copyFixture, editJson, fixtureModel } from './model-dir.js';

type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };

/** Runs `info DIR` (and with --json) and checks the failure is a clean one-line user error matching every pattern. */
function assertRefused(dir: string, ...patterns: (RegExp | string)[]): void {
  for (const args of [['info', dir], ['info', dir, '--json']]) assertCliRefused(args, ...patterns);
}

const st = (dir: string) => join(dir, 'model.safetensors');

test('missing model folder', () => {
  const dir = join(copyFixture(FP16), 'no-such-model');
  assertRefused(dir, `${dir}: no such model folder`);
});

test('a file given instead of a folder', () => {
  const dir = copyFixture(FP16);
  assertRefused(join(dir, 'config.json'), 'is not a folder');
});

test('missing config.json', () => {
  const dir = copyFixture(FP16);
  rmSync(join(dir, 'config.json'));
  assertRefused(dir, `${dir}: missing config.json`);
});

test('config.json is not JSON', () => {
  const dir = copyFixture(FP16);
  writeFileSync(join(dir, 'config.json'), '{"architectures": ["LlamaForCausalLM"],');
  assertRefused(dir, 'config.json: not valid JSON');
});

test('config.json field of the wrong type', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'config.json'), (c) => { c.hidden_size = '64'; });
  assertRefused(dir, 'config.json: hidden_size is "64", expected an integer');
});

test('unknown architecture', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'config.json'), (c) => { c.architectures = ['GPT2LMHeadModel']; });
  assertRefused(dir, 'config.json: architectures names GPT2LMHeadModel, which is not supported', 'LlamaForCausalLM');
});

test('no safetensors file', () => {
  const dir = copyFixture(FP16);
  renameSync(st(dir), join(dir, 'pytorch_model.bin'));
  assertRefused(dir, 'no model.safetensors, model.safetensors.index.json or *.safetensors file', '.bin');
});

test('missing tokenizer.json', () => {
  const dir = copyFixture(G32);
  rmSync(join(dir, 'tokenizer.json'));
  assertRefused(dir, `${dir}: missing tokenizer.json`);
});

test('generation_config.json is not JSON', () => {
  const dir = copyFixture(G32);
  writeFileSync(join(dir, 'generation_config.json'), 'eos = 2');
  assertRefused(dir, 'generation_config.json: not valid JSON');
});

test('safetensors file shorter than its 8-byte length field', () => {
  const dir = copyFixture(FP16);
  writeFileSync(st(dir), Buffer.from([1, 2, 3]));
  assertRefused(dir, 'model.safetensors: file is 3 bytes, too short');
});

test('header length past the end of the file', () => {
  const dir = copyFixture(FP16);
  const buf = Buffer.concat([Buffer.alloc(8), Buffer.from('{}')]);
  buf.writeBigUInt64LE(5000n);
  writeFileSync(st(dir), buf);
  assertRefused(dir, 'model.safetensors: header length 5000 runs past the end of the file (10 bytes)');
});

test('header length over 100 MB', () => {
  const dir = copyFixture(FP16);
  const { header, data } = readRaw(st(dir));
  const whole = Buffer.concat([Buffer.alloc(8), Buffer.from(JSON.stringify(header)), data]);
  whole.writeBigUInt64LE(200n * 1024n * 1024n); // damage only the length field
  writeFileSync(st(dir), whole);
  assertRefused(dir, 'model.safetensors: header length 209715200 is over the 100 MB limit');
});

test('header is not valid JSON', () => {
  const dir = copyFixture(FP16);
  const { header, data } = readRaw(st(dir));
  writeRaw(st(dir), JSON.stringify(header).slice(0, -5) + '#####', data);
  assertRefused(dir, 'model.safetensors: header is not valid JSON');
});

test('tensor data offsets outside the file', () => {
  const dir = copyFixture(FP16);
  rewriteHeader(st(dir), (h) => {
    const e = h['model.norm.weight'] as Entry;
    e.data_offsets = [e.data_offsets[0] + 10_000_000, e.data_offsets[1] + 10_000_000];
  });
  assertRefused(dir, 'model.safetensors: tensor model.norm.weight: data_offsets', 'lie outside the file');
});

test('tensors overlapping in the data section', () => {
  const dir = copyFixture(FP16);
  rewriteHeader(st(dir), (h) => {
    const a = h['model.layers.0.self_attn.q_proj.weight'] as Entry;
    const b = h['model.layers.0.self_attn.o_proj.weight'] as Entry;
    b.data_offsets = [a.data_offsets[0] + 2, a.data_offsets[1] + 2];
  });
  assertRefused(dir, /model\.safetensors: tensors model\.layers\.0\.self_attn\.(q|o)_proj\.weight and model\.layers\.0\.self_attn\.(q|o)_proj\.weight overlap/);
});

test('data_offsets span not matching dtype × shape', () => {
  const dir = copyFixture(FP16);
  rewriteHeader(st(dir), (h) => { (h['model.norm.weight'] as Entry).shape = [65]; });
  assertRefused(dir, 'tensor model.norm.weight: data_offsets', 'span 128 bytes, but F16 [65] needs 130');
});

test('GPTQ tensor with the wrong dtype', () => {
  const dir = copyFixture(G32);
  rewriteHeader(st(dir), (h) => { (h['model.layers.2.mlp.up_proj.qweight'] as Entry).dtype = 'F32'; });
  assertRefused(dir, 'model.safetensors: tensor model.layers.2.mlp.up_proj.qweight has dtype F32, expected I32');
});

test('GPTQ tensor with the wrong shape', () => {
  const dir = copyFixture(G32);
  rewriteHeader(st(dir), (h) => { (h['model.layers.4.self_attn.q_proj.qweight'] as Entry).shape = [16, 32]; });
  assertRefused(dir, 'tensor model.layers.4.self_attn.q_proj.qweight has shape [16, 32], expected [8, 64]');
});

test('shapes not matching config.json (kv heads)', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'config.json'), (c) => { c.num_key_value_heads = 8; });
  assertRefused(dir, 'tensor model.layers.0.self_attn.k_proj.weight has shape [32, 64], expected [64, 64]');
});

test('scales with the wrong dtype', () => {
  const dir = copyFixture(G32);
  rewriteTensors(st(dir), (ts) => ts.map((t) => t.name === 'model.layers.1.mlp.down_proj.scales'
    ? { ...t, dtype: 'F32', data: Buffer.alloc(t.data.length * 2) } : t));
  assertRefused(dir, 'tensor model.layers.1.mlp.down_proj.scales has dtype F32, expected F16');
});

test('group size in the config not matching the tensors', () => {
  const dir = copyFixture(G32);
  editJson(join(dir, 'config.json'), (c) => { c.quantization_config.group_size = 64; });
  assertRefused(dir, 'tensor model.layers.0.self_attn.q_proj.qzeros has shape [2, 8], expected [1, 8]');
});

test('a missing GPTQ tensor', () => {
  const dir = copyFixture(G32);
  rewriteTensors(st(dir), (ts) => ts.filter((t) => t.name !== 'model.layers.3.mlp.gate_proj.scales'));
  assertRefused(dir, 'tensor model.layers.3.mlp.gate_proj.scales is missing');
});

test('a missing norm of the last layer', () => {
  const dir = copyFixture(FP16);
  rewriteTensors(st(dir), (ts) => ts.filter((t) => t.name !== 'model.layers.4.post_attention_layernorm.weight'));
  assertRefused(dir, 'tensor model.layers.4.post_attention_layernorm.weight is missing');
});

test('the real 3-bit config.json (Genz-70B branch): only 4-bit', () => {
  const dir = copyFixture(G32);
  copyFileSync(join(fixtures, 'configs', 'TheBloke_Genz-70b-GPTQ', 'config.3bit_branch.json'), join(dir, 'config.json'));
  assertRefused(dir, 'config.json: quantization_config.bits is 3; only 4-bit GPTQ is supported');
});

test('the real 8-bit quantize_config.json (MythoMax branch): only 4-bit', () => {
  const dir = copyFixture(G32);
  editJson(join(dir, 'config.json'), (c) => { delete c.quantization_config; });
  copyFileSync(join(fixtures, 'configs', 'TheBloke_MythoMax-L2-13B-GPTQ', 'quantize_config.8bit_nogroup_actorder.json'), join(dir, 'quantize_config.json'));
  assertRefused(dir, 'quantize_config.json: bits is 8; only 4-bit GPTQ is supported');
});

test('a group size that does not divide the input size', () => {
  const dir = copyFixture(G32);
  editJson(join(dir, 'config.json'), (c) => { c.quantization_config.group_size = 48; });
  assertRefused(dir, 'config.json (quantization_config): group_size 48 does not divide the input size 64 of model.layers.0.self_attn.q_proj');
});

/** Splits the fixture into two shards and writes an index (edited by `editIndex`). */
function shardWithIndex(editIndex: (weightMap: Record<string, string>) => void): string {
  const dir = copyFixture(FP16);
  const { tensors } = readSafetensors(st(dir));
  const map: Record<string, string> = {};
  const parts = [tensors.slice(0, 20), tensors.slice(20)];
  parts.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, file), part);
    for (const t of part) map[t.name] = file;
  });
  rmSync(st(dir));
  editIndex(map);
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
  return dir;
}

test('index naming a shard that is missing', () => {
  const dir = shardWithIndex((m) => { m['model.norm.weight'] = 'model-00003-of-00003.safetensors'; });
  assertRefused(dir, 'model.safetensors.index.json: shard model-00003-of-00003.safetensors is missing');
});

test('index placing a tensor in the wrong shard', () => {
  const dir = shardWithIndex((m) => { m['model.norm.weight'] = 'model-00001-of-00002.safetensors'; });
  assertRefused(dir, 'model.safetensors.index.json: lists tensor model.norm.weight in model-00001-of-00002.safetensors, but it is in model-00002-of-00002.safetensors');
});

test('index that is not JSON', () => {
  const dir = shardWithIndex(() => {});
  writeFileSync(join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
  assertRefused(dir, 'model.safetensors.index.json: not valid JSON');
});

test('the same tensor in two shards', () => {
  const dir = copyFixture(FP16);
  const { tensors } = readSafetensors(st(dir));
  writeSafetensors(join(dir, 'a.safetensors'), tensors);
  writeSafetensors(join(dir, 'b.safetensors'), tensors.slice(0, 1));
  rmSync(st(dir));
  assertRefused(dir, `b.safetensors: tensor ${tensors[0]!.name} is also in a.safetensors`);
});

test('the fixture itself is fine (control for the cases above)', () => {
  const r = runCli(['info', fixtureModel(G32)]);
  assert.equal(r.status, 0, r.stderr);
});

// Llama / Mistral / Qwen2 configs: GQA, head_dim, rope scaling spellings, biases, tied or separate lm_head.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli } from '../helpers/run-cli.js';
import { rewriteTensors } from '../helpers/safetensors-writer.js';
import { parseModelConfig } from '../../cli/engine/loader/config.js';
import { loadModelSpec, parameterCount, weightsGpuBytes, weightsHostBytes } from '../../cli/engine/loader/index.js';
import { FP16, G32, copyFixture, editJson, fixtureModel, readJson } from './model-dir.js';

const base = () => readJson(join(fixtureModel(FP16), 'config.json'));
const parse = (edit: (c: Record<string, any>) => void) => {
  const c = base();
  edit(c);
  return parseModelConfig(c, 'config.json');
};

test('head_dim from config when given, else hidden / heads; kv heads default to heads', () => {
  assert.equal(parse((c) => { c.head_dim = 16; }).headDim, 16);
  assert.equal(parse((c) => { delete c.head_dim; }).headDim, 8);
  assert.equal(parse((c) => { delete c.num_key_value_heads; }).numKvHeads, 8);
});

test('rope_scaling: linear / dynamic with `type`, llama3 with `rope_type`, default = none', () => {
  assert.deepEqual(parse((c) => { c.rope_scaling = { type: 'linear', factor: 4 }; }).ropeScaling, { type: 'linear', factor: 4 });
  assert.deepEqual(parse((c) => { c.rope_scaling = { rope_type: 'dynamic', factor: 2 }; }).ropeScaling, { type: 'dynamic', factor: 2 });
  // Llama 3.1's rope_scaling, as in its config.json.
  const l3 = parse((c) => {
    c.rope_theta = 500000;
    c.rope_scaling = { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' };
  });
  assert.equal(l3.ropeTheta, 500000);
  assert.deepEqual(l3.ropeScaling, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  assert.equal(parse((c) => { c.rope_scaling = { rope_type: 'default' }; }).ropeScaling, null);
  // transformers 5 writes rope_parameters.
  const v5 = parse((c) => { delete c.rope_theta; c.rope_parameters = { rope_type: 'linear', factor: 2, rope_theta: 1e6 }; });
  assert.equal(v5.ropeTheta, 1e6);
  assert.deepEqual(v5.ropeScaling, { type: 'linear', factor: 2 });
  assert.throws(() => parse((c) => { c.rope_scaling = { type: 'longrope', factor: 4 }; }),
    /config\.json: rope_scaling\.type is "longrope", which is not supported \(linear, dynamic, llama3, yarn\)/);
  assert.throws(() => parse((c) => { c.rope_scaling = { rope_type: 'llama3', factor: 8 }; }),
    /config\.json: rope_scaling\.low_freq_factor is missing/);
});

test('rope_scaling yarn: every default resolved as transformers 5 does', () => {
  // Qwen2.5's recommended long-context setting.
  const qwen = parse((c) => {
    c.max_position_embeddings = 32768;
    c.rope_scaling = { factor: 4.0, original_max_position_embeddings: 32768, type: 'yarn' };
  });
  assert.deepEqual(qwen.ropeScaling, {
    type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 32768, attentionFactor: 0.1 * Math.log(4) + 1,
    betaFast: 32, betaSlow: 1, truncate: true,
  });
  // Without factor: max_position_embeddings / original; without the original context: max_position_embeddings.
  const ratio = parse((c) => { c.max_position_embeddings = 4096; c.rope_scaling = { rope_type: 'yarn', original_max_position_embeddings: 1024 }; });
  assert.equal(ratio.ropeScaling?.factor, 4);
  const noOriginal = parse((c) => { c.max_position_embeddings = 4096; c.rope_scaling = { rope_type: 'yarn', factor: 2 }; });
  assert.equal(noOriginal.ropeScaling?.originalMaxPositionEmbeddings, 4096);
  // config.json's own original_max_position_embeddings comes first (transformers' standardize_rope_params).
  const topLevel = parse((c) => {
    c.original_max_position_embeddings = 2048;
    c.rope_scaling = { rope_type: 'yarn', factor: 2, original_max_position_embeddings: 1024 };
  });
  assert.equal(topLevel.ropeScaling?.originalMaxPositionEmbeddings, 2048);
  // mscale / mscale_all_dim (DeepSeek's form), an explicit attention_factor, betas, truncate; 0 counts as absent.
  const ms = parse((c) => { c.rope_scaling = { rope_type: 'yarn', factor: 40, mscale: 1, mscale_all_dim: 0.5 }; });
  assert.equal(ms.ropeScaling?.attentionFactor, (0.1 * Math.log(40) + 1) / (0.05 * Math.log(40) + 1));
  const given = parse((c) => {
    c.rope_scaling = { rope_type: 'yarn', factor: 4, attention_factor: 1.5, beta_fast: 0, beta_slow: 2, truncate: false };
  });
  assert.deepEqual([given.ropeScaling?.attentionFactor, given.ropeScaling?.betaFast, given.ropeScaling?.betaSlow, given.ropeScaling?.truncate],
    [1.5, 32, 2, false]);
  // A factor below 1 scales nothing in attention.
  assert.equal(parse((c) => { c.rope_scaling = { rope_type: 'yarn', factor: 0.5 }; }).ropeScaling?.attentionFactor, 1);
  assert.throws(() => parse((c) => { c.rope_scaling = { rope_type: 'yarn', factor: -4 }; }),
    /config\.json: rope_scaling\.factor is -4, expected a positive number/);
  assert.throws(() => parse((c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4, beta_fast: 'x' }; }),
    /config\.json: rope_scaling\.beta_fast is "x", expected a positive number/);
  assert.throws(() => parse((c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4, truncate: 1 }; }),
    /config\.json: rope_scaling\.truncate is 1, expected true or false/);
  assert.throws(() => parse((c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 0 }; }),
    /config\.json: rope_scaling\.original_max_position_embeddings is 0, expected an integer >= 1/);
  // The top-level field is YaRN's only: without YaRN any value there is ignored, as transformers ignores it.
  assert.equal(parse((c) => { c.original_max_position_embeddings = 0; }).ropeScaling, null);
  assert.throws(() => parse((c) => { c.original_max_position_embeddings = 0; c.rope_scaling = { rope_type: 'yarn', factor: 4 }; }),
    /config\.json: original_max_position_embeddings is 0, expected an integer >= 1/);
});

test('info shows YaRN scaling', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'config.json'), (c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 }; });
  const r = runCli(['info', dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^rope +theta 10000, yarn scaling × 4, original context 64, attention factor 1\.1386, beta fast\/slow 32\/1$/m);
});

test('a sliding window caps the context (Mistral v0.1; Qwen2 only with use_sliding_window)', () => {
  const mistral = (c: Record<string, any>) => { c.architectures = ['MistralForCausalLM']; c.max_position_embeddings = 32768; };
  assert.equal(parse((c) => { mistral(c); c.sliding_window = 4096; }).maxPositionEmbeddings, 4096);
  assert.equal(parse((c) => { mistral(c); c.sliding_window = null; }).maxPositionEmbeddings, 32768);
  const qwen = (c: Record<string, any>) => { c.architectures = ['Qwen2ForCausalLM']; c.max_position_embeddings = 32768; c.sliding_window = 4096; };
  assert.equal(parse((c) => { qwen(c); c.use_sliding_window = false; }).maxPositionEmbeddings, 32768);
  assert.equal(parse((c) => { qwen(c); c.use_sliding_window = true; }).maxPositionEmbeddings, 4096);
});

test('MistralForCausalLM loads the same tensors', () => {
  const dir = copyFixture(G32);
  editJson(join(dir, 'config.json'), (c) => { c.architectures = ['MistralForCausalLM']; c.model_type = 'mistral'; c.sliding_window = null; });
  const spec = loadModelSpec(dir);
  assert.equal(spec.arch.architecture, 'MistralForCausalLM');
  assert.equal(spec.arch.attentionBias, false);
});

test('Qwen2ForCausalLM needs q/k/v biases and counts them', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'config.json'), (c) => { c.architectures = ['Qwen2ForCausalLM']; c.model_type = 'qwen2'; });
  const r = runCli(['info', dir]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /tensor model\.layers\.0\.self_attn\.q_proj\.bias is missing/);

  const plain = loadModelSpec(fixtureModel(FP16));
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => {
    const out = [...ts];
    for (let l = 0; l < 5; l++) {
      for (const [p, n] of [['q', 64], ['k', 32], ['v', 32]] as const) {
        out.push({ name: `model.layers.${l}.self_attn.${p}_proj.bias`, dtype: 'F16', shape: [n], data: Buffer.alloc(n * 2) });
      }
    }
    return out;
  });
  const spec = loadModelSpec(dir);
  assert.equal(spec.arch.attentionBias, true);
  const biasParams = 5 * (64 + 32 + 32);
  assert.equal(parameterCount(spec), parameterCount(plain) + biasParams);
  assert.equal(weightsGpuBytes(spec), weightsGpuBytes(plain) + biasParams * 2);
});

test('a separate lm_head is loaded and counted; tie_word_embeddings without lm_head means tied', () => {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'config.json'), (c) => { c.tie_word_embeddings = false; });
  assert.equal(loadModelSpec(dir).arch.tieWordEmbeddings, true); // no lm_head.weight in the file
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => {
    const emb = ts.find((t) => t.name === 'model.embed_tokens.weight')!;
    return [...ts, { ...emb, name: 'lm_head.weight', dtype: 'F32', data: Buffer.alloc(emb.data.length * 2) }];
  });
  const spec = loadModelSpec(dir);
  assert.equal(spec.arch.tieWordEmbeddings, false);
  assert.equal(spec.tensors['lm_head.weight']?.dtype, 'F32');
  assert.equal(parameterCount(spec), 260_032 + 512 * 64);
  // lm_head is stored as fp16 on the GPU even though the file has it as F32; the untied embedding table moves
  // to pinned host memory, so the GPU holds as much as for the tied model.
  assert.equal(weightsGpuBytes(spec), 520_064);
  assert.equal(weightsHostBytes(spec), 512 * 64 * 2);
});

test('a quantized lm_head is refused by name', () => {
  const dir = copyFixture(G32);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => [...ts, { name: 'lm_head.qweight', dtype: 'I32', shape: [8, 512], data: Buffer.alloc(8 * 512 * 4) }]);
  const r = runCli(['info', dir]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^xllama: \S+model\.safetensors: a quantized lm_head \(lm_head\.qweight\) is not supported\n$/);
});

test('unquantized BF16 and F32 checkpoints are accepted and take fp16 GPU memory', () => {
  const dir = copyFixture(FP16);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => ts.map((t) => ({ ...t, dtype: 'F32', data: Buffer.alloc(t.data.length * 2) })));
  const spec = loadModelSpec(dir);
  assert.equal(spec.tensors['model.norm.weight']?.dtype, 'F32');
  assert.equal(weightsGpuBytes(spec), 520_064);
});

test('unknown extra tensors (rotary inv_freq, other dtypes) are ignored', () => {
  const dir = copyFixture(G32);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => [
    ...ts,
    { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32', shape: [4], data: Buffer.alloc(16) },
    { name: 'model.layers.0.self_attn.rotary_emb.position_ids', dtype: 'I64', shape: [3], data: Buffer.alloc(24) },
  ]);
  const spec = loadModelSpec(dir);
  assert.deepEqual(spec.tensors['model.layers.0.self_attn.rotary_emb.inv_freq']?.shape, [4]);
  assert.equal(spec.tensors['model.layers.0.self_attn.rotary_emb.position_ids'], undefined); // not a dtype the engine maps
  assert.equal(parameterCount(spec), 279_232);
});

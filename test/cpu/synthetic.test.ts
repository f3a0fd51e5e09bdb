// A random act-order GPTQ model big enough to spread over threads, against the same weights dequantized
// here (independently, from the GPTQ format description) into a dense F32 checkpoint. Both paths must
// produce identical logits, whatever the thread count or batching.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { NativeModel } from '../../cli/engine/native-model.js';
import { writeSafetensors, type StTensor } from '../helpers/safetensors-writer.js';
import { copyFixture, editJson } from '../loader/model-dir.js';

const H = 256, I = 704, LAYERS = 2, HEADS = 4, KV = 2, V = 512, GROUP = 64;

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(42);

function f32Tensor(name: string, shape: number[], values: Float32Array): StTensor {
  return { name, dtype: 'F32', shape, data: Buffer.from(values.buffer, values.byteOffset, values.byteLength) };
}

function randomFloats(n: number, scale: number, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, () => offset + (rand() * 2 - 1) * scale);
}

/** F16 bits of small positive scales (exact to write and read back). */
function halfScale(): { bits: number; value: number } {
  const mant = Math.floor(rand() * 1024), exp = 15 - 7 + Math.floor(rand() * 2); // about 0.008 .. 0.03
  return { bits: (exp << 10) | mant, value: (1 + mant / 1024) * 2 ** (exp - 15) };
}

/** One GPTQ linear (act-order: a random permutation of rows over groups, asymmetric v1 zeros) and its dense twin. */
function gptqLinear(prefix: string, inF: number, outF: number): { quant: StTensor[]; dense: StTensor } {
  const groups = inF / GROUP;
  const q = Uint8Array.from({ length: inF * outF }, () => Math.floor(rand() * 16)); // [in][out]
  const zeros = Uint8Array.from({ length: groups * outF }, () => Math.floor(rand() * 16)); // stored (v1: zero - 1)
  const scales = Array.from({ length: groups * outF }, halfScale);
  const perm = Array.from({ length: inF }, (_, k) => Math.floor(k / GROUP));
  for (let i = perm.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const qweight = new Int32Array((inF / 8) * outF);
  for (let k = 0; k < inF; k++) for (let c = 0; c < outF; c++) qweight[(k >> 3) * outF + c] |= q[k * outF + c] << (4 * (k & 7));
  const qzeros = new Int32Array(groups * (outF / 8));
  for (let g = 0; g < groups; g++) for (let c = 0; c < outF; c++) qzeros[g * (outF / 8) + (c >> 3)] |= zeros[g * outF + c] << (4 * (c & 7));
  const scaleBuf = Buffer.alloc(groups * outF * 2);
  scales.forEach((s, i) => scaleBuf.writeUInt16LE(s.bits, i * 2));
  const dense = new Float32Array(outF * inF); // [out][in]
  for (let k = 0; k < inF; k++) {
    const g = perm[k];
    for (let c = 0; c < outF; c++) {
      dense[c * inF + k] = Math.fround(scales[g * outF + c].value * (q[k * outF + c] - (zeros[g * outF + c] + 1)));
    }
  }
  return {
    quant: [
      { name: `${prefix}.qweight`, dtype: 'I32', shape: [inF / 8, outF], data: Buffer.from(qweight.buffer) },
      { name: `${prefix}.qzeros`, dtype: 'I32', shape: [groups, outF / 8], data: Buffer.from(qzeros.buffer) },
      { name: `${prefix}.scales`, dtype: 'F16', shape: [groups, outF], data: scaleBuf },
      { name: `${prefix}.g_idx`, dtype: 'I32', shape: [inF], data: Buffer.from(Int32Array.from(perm).buffer) },
    ],
    dense: f32Tensor(`${prefix}.weight`, [outF, inF], dense),
  };
}

function buildModels(): { gptqDir: string; denseDir: string } {
  const shared = [
    f32Tensor('model.embed_tokens.weight', [V, H], randomFloats(V * H, 1)),
    f32Tensor('model.norm.weight', [H], randomFloats(H, 0.2, 1)),
  ];
  const quant: StTensor[] = [...shared], dense: StTensor[] = [...shared];
  const hd = H / HEADS;
  for (let l = 0; l < LAYERS; l++) {
    const p = `model.layers.${l}.`;
    for (const n of ['input_layernorm', 'post_attention_layernorm']) {
      const t = f32Tensor(`${p}${n}.weight`, [H], randomFloats(H, 0.2, 1));
      quant.push(t);
      dense.push(t);
    }
    const shapes: [string, number, number][] = [['self_attn.q_proj', H, HEADS * hd], ['self_attn.k_proj', H, KV * hd],
      ['self_attn.v_proj', H, KV * hd], ['self_attn.o_proj', HEADS * hd, H], ['mlp.gate_proj', H, I], ['mlp.up_proj', H, I],
      ['mlp.down_proj', I, H]];
    for (const [name, inF, outF] of shapes) {
      const lin = gptqLinear(p + name, inF, outF);
      quant.push(...lin.quant);
      dense.push(lin.dense);
    }
  }
  const sizes = { hidden_size: H, intermediate_size: I, num_hidden_layers: LAYERS, num_attention_heads: HEADS,
    num_key_value_heads: KV, head_dim: hd, vocab_size: V, max_position_embeddings: 256, torch_dtype: 'float32' };
  const gptqDir = copyFixture('stories260K-gptq-4bit-g64-actorder');
  writeSafetensors(join(gptqDir, 'model.safetensors'), quant);
  editJson(join(gptqDir, 'config.json'), (c) => Object.assign(c, sizes));
  rmSync(join(gptqDir, 'quantize_config.json'));
  const denseDir = copyFixture('stories260K');
  writeSafetensors(join(denseDir, 'model.safetensors'), dense);
  editJson(join(denseDir, 'config.json'), (c) => Object.assign(c, sizes));
  return { gptqDir, denseDir };
}

test('random act-order GPTQ model: same logits as its dense dequantized twin, on 1 or 3 threads, batched or not', async () => {
  const { gptqDir, denseDir } = buildModels();
  const spec = loadModelSpec(gptqDir);
  assert.equal(spec.quant?.descAct, true);
  const ids = Array.from({ length: 48 }, () => Math.floor(rand() * V));
  const runs: Float32Array[] = [];
  for (const [dir, threads] of [[gptqDir, 1], [gptqDir, 3], [denseDir, 3]] as const) {
    const model = await NativeModel.open(loadModelSpec(dir), { backend: 'cpu', threads });
    try {
      const batched = await model.forward(ids, 0, true);
      runs.push(batched);
      // Then through the KV cache in steps of 1, 2 and 3 tokens (the CPU's few-row GPTQ kernel takes each).
      await model.trimCache(0);
      let t = 0;
      for (const step of [1, 1, 2, 3, 1, 3, 2]) {
        const got = await model.forward(ids.slice(t, t + step), t, true);
        assert.deepEqual(got, batched.subarray(t * V, (t + step) * V), `${threads} threads: positions ${t}..${t + step - 1}`);
        t += step;
      }
    } finally {
      model.close();
    }
  }
  assert.deepEqual(runs[1], runs[0], '1 vs 3 threads');
  let scale = 0;
  for (const v of runs[0]) scale = Math.max(scale, Math.abs(v));
  assert.ok(scale > 1, 'logits are not trivially small');
  assert.deepEqual(runs[2], runs[0], 'GPTQ vs dense');
});

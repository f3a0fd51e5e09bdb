// Writes a GPTQ 4-bit Llama folder of real size with random weights, for load-time measurements on the GPU
// machine (tests use the small fixtures instead).
//   node scripts/device/make-gptq-folder.mjs OUT_DIR --shape llama-7b|llama-13b|llama-70b|llama3-8b|tiny [--shards N]
//     [--act-order] [--group N] [--asym] [--tokenizer DIR]
// One model.safetensors, or N shards with model.safetensors.index.json. Group size 128 (or --group N), sym (or
// with --asym a zero point per group and column, cut from the random pool), checkpoint_format "gptq"; no
// act-order, or with --act-order (desc_act) a shuffled group map per input size, as AutoGPTQ writes for
// inputs sorted by their Hessian's diagonal (q/k/v and gate/up share their input, so their maps are the same);
// the tokenizer comes from fixtures/tokenizers/llama2, or from --tokenizer DIR (its tokenizer.json and
// tokenizer_config.json; llama3-8b's 128,256 ids want Llama 3's, which the repository does not hold: 9 MB). qweight
// bytes are random (cut from a 64 MiB pool, so writing is fast); scales, zeros and fp16 tensors are valid numbers.
// Published checkpoints come in these variants (e.g. "4bit-32g-actorder", "4bit-128g"); each runs its own kernel paths.
import { closeSync, copyFileSync, mkdirSync, openSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SHAPES = {
  'llama-7b': { hidden: 4096, inter: 11008, layers: 32, heads: 32, kv: 32, vocab: 32000 },
  'llama-13b': { hidden: 5120, inter: 13824, layers: 40, heads: 40, kv: 40, vocab: 32000 },
  'llama-70b': { hidden: 8192, inter: 28672, layers: 80, heads: 64, kv: 8, vocab: 32000 },
  tiny: { hidden: 256, inter: 512, layers: 2, heads: 2, kv: 2, vocab: 32000 },  // a seconds-long local check
  'llama3-8b': { hidden: 4096, inter: 14336, layers: 32, heads: 32, kv: 8, vocab: 128256,
    config: { max_position_embeddings: 8192, rope_theta: 500000.0, bos_token_id: 128000, eos_token_id: 128001 } },
};
const args = process.argv.slice(2);
const GROUP = args.includes('--group') ? Number(args[args.indexOf('--group') + 1]) : 128;
const asym = args.includes('--asym');
const out = args[0];
const shapeName = args[args.indexOf('--shape') + 1];
const shards = args.includes('--shards') ? Number(args[args.indexOf('--shards') + 1]) : 1;
const actOrder = args.includes('--act-order');
const tokenizerDir = args.includes('--tokenizer') ? args[args.indexOf('--tokenizer') + 1] : null;
const s = SHAPES[shapeName];
if (!out || !s || !(shards >= 1) || !(GROUP >= 8 && GROUP % 8 === 0 && s.hidden % GROUP === 0 && s.inter % GROUP === 0)) {
  console.error('usage: make-gptq-folder.mjs OUT_DIR --shape llama-7b|llama-13b|llama-70b|llama3-8b|tiny [--shards N] [--act-order] [--group N] [--asym] [--tokenizer DIR]');
  process.exit(2);
}

const pool = randomFillSync(Buffer.alloc(64 << 20));
const f16 = (x) => {  // float -> fp16 bits (normal range only, enough here)
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, x);
  const u = b.getUint32(0), sign = (u >>> 16) & 0x8000, e = ((u >>> 23) & 0xff) - 127 + 15, m = (u >>> 13) & 0x3ff;
  return x === 0 ? 0 : sign | (e << 10) | m;
};
// A tensor: name, dtype, shape, and fill(buf, offset) writing `bytes` bytes of content chunk by chunk.
const constant = (bytesPerValue, pattern) => {
  const one = Buffer.alloc(bytesPerValue);
  one.writeUIntLE(pattern, 0, bytesPerValue);
  return (buf) => buf.fill(one);
};
let poolPos = 0;
const random = (buf) => {
  for (let i = 0; i < buf.length;) {
    const n = Math.min(buf.length - i, pool.length - poolPos);
    pool.copy(buf, i, poolPos, poolPos + n);
    i += n;
    poolPos = (poolPos + n + 4096) % (pool.length - 4096);
  }
};
const halves = Buffer.alloc(1 << 20);  // valid fp16 values in (-0.05, 0.05), a pattern to cut from
for (let i = 0; i < halves.length; i += 2) halves.writeUInt16LE(f16(((pool[i] / 255) - 0.5) * 0.1), i);
const smallHalves = (buf) => {
  for (let i = 0; i < buf.length; i += halves.length) halves.copy(buf, i, 0, Math.min(halves.length, buf.length - i));
};
const halfOnes = constant(2, f16(1));
const T = (name, dtype, shape, fill) => ({ name, dtype, shape, fill, bytes: shape.reduce((a, b) => a * b, 1) * (dtype === 'F16' ? 2 : 4) });
// g_idx of an input size: input i in group i / GROUP, or with --act-order input order[j] in group j / GROUP for a
// shuffled order (a fixed linear congruential sequence: the same folder every time).
const groupMaps = new Map();
function groupMap(k) {
  if (!groupMaps.has(k)) {
    const order = Array.from({ length: k }, (_, i) => i);
    let x = 12345;
    for (let i = k - 1; actOrder && i > 0; i--) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const j = x % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const map = Buffer.alloc(4 * k);
    order.forEach((input, j) => map.writeInt32LE(Math.floor(j / GROUP), 4 * input));
    groupMaps.set(k, map);
  }
  return groupMaps.get(k);
}
const linear = (p, k, n) => [
  T(`${p}.qweight`, 'I32', [k / 8, n], random),
  T(`${p}.qzeros`, 'I32', [k / GROUP, n / 8], asym ? random : constant(4, 0x77777777)),
  T(`${p}.scales`, 'F16', [k / GROUP, n], constant(2, f16(0.01))),
  T(`${p}.g_idx`, 'I32', [k], (buf) => groupMap(k).copy(buf)),
];
const layer = (i) => {
  const { hidden: h, inter, heads, kv } = s, hd = h / heads, p = `model.layers.${i}.`;
  return [
    T(`${p}input_layernorm.weight`, 'F16', [h], halfOnes), T(`${p}post_attention_layernorm.weight`, 'F16', [h], halfOnes),
    ...linear(`${p}self_attn.q_proj`, h, heads * hd), ...linear(`${p}self_attn.k_proj`, h, kv * hd),
    ...linear(`${p}self_attn.v_proj`, h, kv * hd), ...linear(`${p}self_attn.o_proj`, heads * hd, h),
    ...linear(`${p}mlp.gate_proj`, h, inter), ...linear(`${p}mlp.up_proj`, h, inter), ...linear(`${p}mlp.down_proj`, inter, h),
  ];
};

function writeSafetensors(path, tensors) {
  const header = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes] };
    off += t.bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(path, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, Buffer.from(json));
  const chunk = Buffer.alloc(16 << 20);
  for (const t of tensors) {
    for (let done = 0; done < t.bytes;) {
      const n = Math.min(chunk.length, t.bytes - done);
      const buf = chunk.subarray(0, n);
      t.fill(buf);
      writeSync(fd, buf);
      done += n;
    }
  }
  closeSync(fd);
}

mkdirSync(out, { recursive: true });
const { hidden: h, vocab: v } = s;
const outer = [
  T('model.embed_tokens.weight', 'F16', [v, h], smallHalves),
  T('model.norm.weight', 'F16', [h], halfOnes),
  T('lm_head.weight', 'F16', [v, h], smallHalves),
];
const perShard = Math.ceil(s.layers / shards);
const weightMap = {};
for (let shard = 0; shard < shards; shard++) {
  const name = shards === 1 ? 'model.safetensors'
    : `model-${String(shard + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
  const tensors = shard === 0 ? [...outer] : [];
  for (let i = shard * perShard; i < Math.min(s.layers, (shard + 1) * perShard); i++) tensors.push(...layer(i));
  writeSafetensors(join(out, name), tensors);
  for (const t of tensors) weightMap[t.name] = name;
}
if (shards > 1) writeFileSync(join(out, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
const quant = { bits: 4, group_size: GROUP, desc_act: actOrder, sym: !asym, quant_method: 'gptq', checkpoint_format: 'gptq' };
writeFileSync(join(out, 'config.json'), JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: h, intermediate_size: s.inter,
  num_hidden_layers: s.layers, num_attention_heads: s.heads, num_key_value_heads: s.kv, vocab_size: v,
  max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000.0, rope_scaling: null,
  tie_word_embeddings: false, torch_dtype: 'float16', bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
  quantization_config: quant, ...s.config,
}, null, 2));
writeFileSync(join(out, 'quantize_config.json'), JSON.stringify(quant, null, 2));
const tok = tokenizerDir ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'tokenizers', 'llama2');
for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tok, f), join(out, f));
let total = 0;
for (const n of new Set(shards === 1 ? ['model.safetensors'] : Object.values(weightMap))) total += statSync(join(out, n)).size;
console.log(`${out}: ${shapeName} g${GROUP}${actOrder ? ' act-order' : ''}${asym ? ' asym' : ''}, ${shards} file(s), ${(total / 1e9).toFixed(2)} GB of safetensors`);

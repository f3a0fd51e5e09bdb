// The weight layouts the fixtures don't cover directly, made from them by exact rewrites: F32 and BF16
// dense tensors, gptq_v2 zeros, an untied lm_head and misaligned tensor data must give the reference
// logits (or exactly the logits of an equivalent model), and an out-of-file tensor is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { NativeModel } from '../../cli/engine/native-model.js';
import { UserError } from '../../cli/errors.js';
import { copyFixture, editJson } from '../loader/model-dir.js';
import { readSafetensors, rewriteTensors, writeRaw, type StTensor } from '../helpers/safetensors-writer.js';
import { loadReference, relError, row } from './reference.js';

const FP16 = 'stories260K';
const G32 = 'stories260K-gptq-4bit-g32';

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** The float values of an F16 tensor, optionally rounded (truncated) to bfloat16 precision. */
function floats(t: StTensor, toBf16 = false): Float32Array {
  const out = new Float32Array(t.data.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = halfToFloat(t.data.readUInt16LE(i * 2));
  if (toBf16) {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) bits[i] &= 0xffff0000;
  }
  return out;
}

function asF32(t: StTensor, toBf16 = false): StTensor {
  return { ...t, dtype: 'F32', data: Buffer.from(floats(t, toBf16).buffer) };
}

function asBf16(t: StTensor): StTensor {
  const bits = new Uint32Array(floats(t, true).buffer);
  const data = Buffer.alloc(bits.length * 2);
  for (let i = 0; i < bits.length; i++) data.writeUInt16LE(bits[i] >>> 16, i * 2);
  return { ...t, dtype: 'BF16', data };
}

async function logitsOf(dir: string, ids: number[]): Promise<Float32Array> {
  const model = await NativeModel.open(loadModelSpec(dir), { backend: 'cpu' });
  try {
    return await model.forward(ids, 0, true);
  } finally {
    model.close();
  }
}

function assertMatchesReference(name: string, logits: Float32Array, ids: number[]): void {
  const seq = loadReference(name).sequences.find((s) => s.name === 'golden')!;
  assert.deepEqual(ids, seq.ids);
  let worst = 0;
  for (let t = 0; t < ids.length; t++) worst = Math.max(worst, relError(row(logits, 512, t), seq.top5[t]));
  assert.ok(worst <= 1e-3, `relative logit error ${worst}`);
}

const golden = (name: string): number[] => loadReference(name).sequences.find((s) => s.name === 'golden')!.ids;

test('an F32 copy of the fp16 model gives the reference logits', async () => {
  const dir = copyFixture(FP16);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => ts.map((t) => asF32(t)));
  assertMatchesReference(FP16, await logitsOf(dir, golden(FP16)), golden(FP16));
});

test('BF16 tensors decode to exactly the same values as their F32 equivalent', async () => {
  const bf = copyFixture(FP16), f32 = copyFixture(FP16);
  rewriteTensors(join(bf, 'model.safetensors'), (ts) => ts.map(asBf16));
  rewriteTensors(join(f32, 'model.safetensors'), (ts) => ts.map((t) => asF32(t, true)));
  const a = await logitsOf(bf, golden(FP16)), b = await logitsOf(f32, golden(FP16));
  assert.deepEqual(Array.from(a), Array.from(b));
});

// The CPU multiplies a few rows straight from the dense weights (converted and transposed in registers) and more
// rows through a converted copy; both must give the same bits, partial tiles and odd sizes included
// (stories260K's intermediate size is 172).
test('dense F16, BF16 and F32 weights: decoding 1, 2 or 3 tokens at a time gives exactly the batched logits', async () => {
  const ids = golden(FP16).slice(0, 24);
  const variants: [string, (t: StTensor) => StTensor][] = [['F16', (t) => t], ['BF16', asBf16], ['F32', (t) => asF32(t)]];
  for (const [dtype, convert] of variants) {
    const dir = copyFixture(FP16);
    rewriteTensors(join(dir, 'model.safetensors'), (ts) => ts.map(convert));
    const model = await NativeModel.open(loadModelSpec(dir), { backend: 'cpu', threads: 2 });
    try {
      const batched = await model.forward(ids, 0, true);
      await model.trimCache(0);
      let t = 0;
      for (const step of [1, 2, 3, 1, 3, 2, 1, 3, 2, 3, 1, 2]) {
        const got = await model.forward(ids.slice(t, t + step), t, true);
        assert.deepEqual(got, batched.subarray(t * 512, (t + step) * 512), `${dtype}: positions ${t}..${t + step - 1}`);
        t += step;
      }
      assert.equal(t, ids.length);
    } finally {
      model.close();
    }
  }
});

test('gptq_v2 zeros (stored without the -1) give the reference logits', async () => {
  const dir = copyFixture(G32);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => ts.map((t) => {
    if (!t.name.endsWith('.qzeros')) return t;
    const data = Buffer.from(t.data);
    for (let i = 0; i < data.length; i += 4) {
      let word = 0;
      for (let j = 0; j < 8; j++) word |= (((data.readUInt32LE(i) >>> (4 * j)) & 15) + 1) << (4 * j);
      data.writeUInt32LE(word >>> 0, i);
    }
    return { ...t, data };
  }));
  for (const file of ['config.json', 'quantize_config.json']) {
    editJson(join(dir, file), (o) => {
      const q = file === 'config.json' ? o.quantization_config : o;
      q.checkpoint_format = 'gptq_v2';
    });
  }
  const spec = loadModelSpec(dir);
  assert.equal(spec.quant?.checkpointFormat, 'gptq_v2');
  assertMatchesReference(G32, await logitsOf(dir, golden(G32)), golden(G32));
});

test('an untied lm_head.weight (a copy of the embeddings) gives the reference logits', async () => {
  const dir = copyFixture(FP16);
  rewriteTensors(join(dir, 'model.safetensors'), (ts) => {
    const embed = ts.find((t) => t.name === 'model.embed_tokens.weight')!;
    return [...ts, { ...embed, name: 'lm_head.weight', data: Buffer.from(embed.data) }];
  });
  editJson(join(dir, 'config.json'), (o) => { o.tie_word_embeddings = false; });
  assert.equal(loadModelSpec(dir).arch.tieWordEmbeddings, false);
  assertMatchesReference(FP16, await logitsOf(dir, golden(FP16)), golden(FP16));
});

test('tensor data at odd offsets in the file is read correctly', async () => {
  const dir = copyFixture(G32);
  const path = join(dir, 'model.safetensors');
  const { tensors, metadata } = readSafetensors(path);
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let off = 1; // one byte of padding first, so every tensor starts off its natural alignment
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  let text = JSON.stringify(header);
  while ((8 + text.length) % 4 !== 0) text += ' ';
  writeRaw(path, text, Buffer.concat([Buffer.alloc(1), ...tensors.map((t) => t.data)]));
  assertMatchesReference(G32, await logitsOf(dir, golden(G32)), golden(G32));
});

test('a tensor that lies outside its file is refused with a one-line UserError naming it', async () => {
  const spec = loadModelSpec(join(copyFixture(G32)));
  spec.tensors['model.norm.weight'] = { ...spec.tensors['model.norm.weight'], offset: 10_000_000 };
  await assert.rejects(NativeModel.open(spec, { backend: 'cpu' }), (e: unknown) =>
    e instanceof UserError && !e.message.includes('\n') && /model\.norm\.weight .*outside .*model\.safetensors/.test(e.message));
});

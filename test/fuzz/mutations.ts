// The ways the fuzzer damages a copy of a fixture model folder, or the flags of a run: safetensors headers
// and data, GPTQ settings and tensors, config.json, the tokenizer files, chat templates, the folder's files
// themselves, and generate's flags and prompt. Every choice comes from the case's seeded generator.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Rng } from '../../cli/engine/rng.js';
import { fixtures } from '../helpers/run-cli.js';
import { readRaw, readSafetensors, writeRaw, writeSafetensors, type StHeader } from '../helpers/safetensors-writer.js';

/** Seeded choices for one case. */
export class Picker {
  private readonly rng: Rng;
  constructor(seed: number) {
    this.rng = new Rng(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.rng.uniform() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.rng.uniform() < p;
  }
}

/** What a case does to its folder and flags, as it is built. */
export class CaseBuilder {
  readonly what: string[] = [];
  readonly flags: string[] = [];
  /** A refusal must name one of these (set for flag mutations: the flag); empty means "the folder, a file in it, a tensor or a flag". */
  readonly blame: string[] = [];
  prompt = 'Once upon a time';
  /** False when only tensor data or flags change: info reads neither, so only generate runs. */
  runInfo = false;
  /** The chat template or its tokens changed: chat renders the template (generate and info never do). */
  runChat = false;
  /** Some file of the folder was changed (then a refusal may name any of them, not only a mutated flag). */
  filesChanged = false;
  constructor(readonly dir: string, readonly p: Picker, readonly quantized: boolean) {}

  note(text: string): void {
    this.what.push(text);
  }
  file(name: string): string {
    return join(this.dir, name);
  }
}

type Json = Record<string, any>;
type Mutation = (c: CaseBuilder) => void;

const readJson = (path: string): any => JSON.parse(readFileSync(path, 'utf8'));
/** Stands for a list nested 100,000 deep, which writeJson writes in its place (JSON.stringify would overflow the stack). */
const DEEP_LIST = '\u0001a list nested 100,000 deep\u0001';
const DEEP_LIST_JSON = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
const jsonText = (value: unknown): string => JSON.stringify(value).replaceAll(JSON.stringify(DEEP_LIST), DEEP_LIST_JSON);
const writeJson = (path: string, value: unknown): void => writeFileSync(path, jsonText(value));
const show = (v: unknown): string => (v === undefined ? '(deleted)' : (JSON.stringify(v) ?? String(v)).slice(0, 80));

/** Values of every JSON type and the sizes that break things: 0, negative, huge, fractional, int32 edges. */
const ODD_NUMBERS = [0, -1, 1, 2, 3, 5, 7, 8, 63, 64, 65, 100, 511, 512, 513, 1.5, 0.5, 1e-50, 1e9, 2147483647, 2147483648,
  4294967296, 2 ** 53, 1e12, 1e300, -1e300];
const ODD_VALUES: unknown[] = [...ODD_NUMBERS, '64', '', 'x', true, false, null, [], [64], {}, { type: 'Bogus' }, undefined, DEEP_LIST];

/** Sets (or, for undefined, deletes) `key` of `obj`. */
function setField(obj: Json, key: string | number, value: unknown): void {
  if (value === undefined) {
    if (Array.isArray(obj)) obj.splice(Number(key), 1);
    else delete obj[key];
  } else {
    obj[key] = value;
  }
}

/** A random node of a JSON tree: descend from the top, stopping at each level with probability 0.35. */
function randomNode(p: Picker, root: Json): { parent: Json; key: string | number; path: string } | null {
  let parent: Json = root;
  let path = '';
  for (;;) {
    const keys: (string | number)[] = Array.isArray(parent) ? parent.map((_, i) => i) : Object.keys(parent);
    if (keys.length === 0) return null;
    const key = p.pick(keys);
    path += typeof key === 'number' ? `[${key}]` : (path ? `.${key}` : key);
    const child = parent[key as string];
    if (child === null || typeof child !== 'object' || p.chance(0.35)) return { parent, key, path };
    parent = child;
  }
}

function mutateJsonTree(c: CaseBuilder, name: string): void {
  const path = c.file(name);
  const json = readJson(path);
  const node = randomNode(c.p, json);
  if (!node) return;
  const value = c.p.pick(ODD_VALUES);
  setField(node.parent, node.key, value);
  writeJson(path, json);
  c.note(`${name}: ${node.path} = ${show(value)}`);
}

// ---- safetensors headers, files and data ----

const ST = 'model.safetensors';
type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown };

function tensorNames(header: StHeader): string[] {
  return Object.keys(header).filter((k) => k !== '__metadata__');
}

const headerLength: Mutation = (c) => {
  const buf = readFileSync(c.file(ST));
  const len = Number(buf.readBigUInt64LE(0));
  const value = c.p.pick([0n, 1n, 2n, BigInt(len - 1), BigInt(len + 1), BigInt(len + 7), BigInt(buf.length - 8), BigInt(buf.length),
    2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, BigInt(c.p.int(buf.length))]);
  buf.writeBigUInt64LE(value, 0);
  writeFileSync(c.file(ST), buf);
  c.note(`${ST}: header length ${len} -> ${value}`);
  c.runInfo = true;
};

function odd<T>(c: CaseBuilder, values: T[]): T {
  return c.p.pick(values);
}

const headerEntry: Mutation = (c) => {
  const { header, data } = readRaw(c.file(ST));
  const names = tensorNames(header);
  const name = c.p.pick(names);
  const e = header[name] as Entry;
  const [b, end] = e.data_offsets as [number, number];
  const shape = e.shape as number[];
  const other = header[c.p.pick(names)] as Entry;
  const kind = c.p.int(9);
  let what: string;
  if (kind === 0) {
    e.dtype = odd(c, ['F16', 'BF16', 'F32', 'F64', 'I32', 'I64', 'U8', 'I8', 'BOOL', 'F8_E4M3', 'Q4', '', 'f16', 42, null]);
    what = `dtype = ${show(e.dtype)}`;
  } else if (kind === 1) {
    e.shape = odd(c, [[], [0], [0, ...shape.slice(1)], [-1, ...shape.slice(1)], [shape[0]! + 1, ...shape.slice(1)],
      [...shape].reverse(), [2 ** 53], [1e300], [2.5], '64', [[64]], shape.slice(1), [...shape, 1], [shape.reduce((a, x) => a * x, 1)],
      [2147483648, ...shape.slice(1)], null]);
    what = `shape ${show(shape)} -> ${show(e.shape)}`;
  } else if (kind === 2) {
    const o = other.data_offsets as [number, number];
    e.data_offsets = odd(c, [[end, b], [b, b], [b + 1, end + 1], [b - 1, end - 1], [b, end + 1], [b, data.length + 8],
      [data.length, data.length + (end - b)], [-2, end - b - 2], [b + 0.5, end + 0.5], [o[0], o[0] + (end - b)],
      [2 ** 60, 2 ** 60 + (end - b)], [b], [b, end, end], '0', null]);
    what = `data_offsets [${b}, ${end}] -> ${show(e.data_offsets)}`;
  } else if (kind === 3) {
    delete header[name];
    what = 'deleted';
  } else if (kind === 4) {
    header[`${name}.extra`] = { ...e };
    what = 'copied to an unknown tensor over the same bytes';
  } else if (kind === 5) {
    header[odd(c, ['lm_head.weight', 'model.layers.5.input_layernorm.weight', 'model.layers.99.mlp.up_proj.weight', 'unknown.tensor'])] =
      { dtype: odd(c, ['F16', 'I64', 'U8', 'F32']), shape: [0], data_offsets: [0, 0] };
    what = 'an extra empty tensor added';
  } else if (kind === 6) {
    const renamed = c.p.pick([name.toUpperCase(), name.replace('.', '_'), `${name} `, name.replace(/\d+/, '9')]);
    delete header[name];
    header[renamed] = e;
    what = `renamed to ${renamed}`;
  } else if (kind === 7) {
    header[name] = odd(c, [null, 1, 'x', [], [e]]);
    what = `entry = ${show(header[name])}`;
  } else {
    header.__metadata__ = odd(c, [null, 1, 'x', [], { format: 'pt', n: 1 }, { format: { nested: true } }, { format: DEEP_LIST }]);
    what = `__metadata__ = ${show(header.__metadata__)}`;
  }
  writeRaw(c.file(ST), jsonText(header), data);
  c.note(`${ST}: tensor ${name}: ${what}`);
  c.runInfo = true;
};

const headerWhole: Mutation = (c) => {
  const { header, data } = readRaw(c.file(ST));
  const text = JSON.stringify(header);
  const names = tensorNames(header);
  const kind = c.p.int(6);
  let out: string;
  if (kind === 0) out = odd(c, ['[]', '"x"', '1', 'null', '{}', '']);
  else if (kind === 1) out = text.slice(0, c.p.int(text.length));
  else if (kind === 2) out = text.slice(0, c.p.int(text.length)) + odd(c, ['#', '\u0000', '}', '\uFFFF', '"']) + text.slice(c.p.int(text.length));
  else if (kind === 3) {
    const name = c.p.pick(names);
    out = `${text.slice(0, -1)},${JSON.stringify(name)}:${JSON.stringify(header[c.p.pick(names)])}}`; // a duplicate key
  } else if (kind === 4) out = `${text}${' '.repeat(c.p.int(64))}`; // trailing padding, which the format allows
  else out = `{${'"a":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},'.repeat(2000)}"b":1}`;
  writeRaw(c.file(ST), out, data);
  if (kind === 2 && c.p.chance(0.5)) {
    // Bytes that are not UTF-8 inside the header.
    const buf = readFileSync(c.file(ST));
    buf[8 + c.p.int(Math.max(1, Number(buf.readBigUInt64LE(0))))] = 0xff;
    writeFileSync(c.file(ST), buf);
  }
  c.note(`${ST}: header rewritten (variant ${kind})`);
  c.runInfo = true;
};

const truncateOrAppend: Mutation = (c) => {
  const path = c.file(ST);
  const buf = readFileSync(path);
  const kind = c.p.int(3);
  if (kind === 0) {
    const at = c.p.pick([0, 4, 8, 9, c.p.int(buf.length), buf.length - 1]);
    writeFileSync(path, buf.subarray(0, at));
    c.note(`${ST}: truncated to ${at} of ${buf.length} bytes`);
  } else if (kind === 1) {
    const extra = Buffer.alloc(1 + c.p.int(4096), c.p.int(256));
    writeFileSync(path, Buffer.concat([buf, extra]));
    c.note(`${ST}: ${extra.length} bytes appended`);
  } else {
    const at = 8 + c.p.int(buf.length - 8);
    writeFileSync(path, Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + c.p.int(64))]));
    c.note(`${ST}: bytes cut out at ${at}`);
  }
  c.runInfo = true;
};

/** The data section of a tensor: where it is in the file. */
function tensorRange(header: StHeader, name: string, dataStart: number): [number, number] {
  const [b, e] = (header[name] as { data_offsets: [number, number] }).data_offsets;
  return [dataStart + b, dataStart + e];
}

const dataFlips: Mutation = (c) => {
  const path = c.file(ST);
  const buf = readFileSync(path);
  const start = 8 + Number(buf.readBigUInt64LE(0));
  const n = 1 + c.p.int(64);
  for (let i = 0; i < n; i++) buf[start + c.p.int(buf.length - start)] = c.p.int(256);
  writeFileSync(path, buf);
  c.note(`${ST}: ${n} data bytes set at random`);
};

const fillTensor: Mutation = (c) => {
  const path = c.file(ST);
  const buf = readFileSync(path);
  const { header } = readRaw(path);
  const start = 8 + Number(buf.readBigUInt64LE(0));
  const name = c.p.pick(tensorNames(header));
  const [b, e] = tensorRange(header, name, start);
  const dtype = (header[name] as { dtype: string }).dtype;
  const pattern = dtype === 'F16' ? c.p.pick([0x7c00, 0xfc00, 0x7e00, 0x7bff, 0x0000, 0xffff])
    : dtype === 'I32' ? c.p.pick([0, -1, 0x7fffffff, -0x80000000, 0x77777777]) : 0x7fc00000;
  const width = dtype === 'F16' ? 2 : 4;
  const all = c.p.chance(0.5);
  for (let at = b; at + width <= e; at += width) {
    if (!all && !c.p.chance(0.05)) continue;
    if (width === 2) buf.writeUInt16LE(pattern & 0xffff, at);
    else buf.writeInt32LE(pattern | 0, at);
  }
  writeFileSync(path, buf);
  c.note(`${ST}: ${all ? 'all' : 'some'} of ${name} (${dtype}) = 0x${(pattern >>> 0).toString(16)}`);
};

// ---- GPTQ ----

const gptqFields: Mutation = (c) => {
  const useConfig = c.p.chance(0.6);
  const file = useConfig ? 'config.json' : 'quantize_config.json';
  const json = readJson(c.file(file));
  const target: Json = useConfig ? json.quantization_config : json;
  const key = c.p.pick(['bits', 'group_size', 'desc_act', 'sym', 'checkpoint_format', 'quant_method', 'is_marlin_format', '(all)']);
  let value: unknown;
  if (key === '(all)') {
    value = undefined;
    if (useConfig) delete json.quantization_config;
    else rmSync(c.file(file));
  } else {
    value = c.p.pick(({
      bits: [0, 2, 3, 5, 8, 16, '4', 4.5, null, -4, undefined],
      group_size: [-1, 0, 1, 16, 31, 32, 33, 64, 128, 1e9, 2 ** 40, '32', null, 2.5, -2, undefined],
      desc_act: [true, false, 'yes', 1, null],
      sym: [true, false, null, 'no'],
      checkpoint_format: ['gptq', 'gptq_v2', 'marlin', 'awq', 5, null],
      quant_method: ['gptq', 'awq', 'bitsandbytes', null, 3],
      is_marlin_format: [true, false, 'true'],
    } as Record<string, unknown[]>)[key]!);
    setField(target, key, value);
  }
  if (existsSync(c.file(file))) writeJson(c.file(file), json);
  c.note(`${file}: ${useConfig && key !== '(all)' ? 'quantization_config.' : ''}${key} = ${show(value)}`);
  c.runInfo = true;
};

const gIdx: Mutation = (c) => {
  const path = c.file(ST);
  const { tensors } = readSafetensors(path);
  const qweight = c.p.pick(tensors.filter((t) => t.name.endsWith('.qweight')));
  const lin = qweight.name.replace(/\.qweight$/, '');
  const k = qweight.shape[0]! * 8;
  const groups = tensors.find((t) => t.name === `${lin}.scales`)!.shape[0]!;
  const size = Math.ceil(k / groups);
  const values = Int32Array.from({ length: k }, (_, i) => Math.floor(i / size)); // the plain order
  const kind = c.p.int(6);
  const at = c.p.int(k);
  if (kind === 0) values[at] = groups; // one entry past the last group
  else if (kind === 1) values[at] = c.p.pick([-1, 0x7fffffff, -0x80000000]);
  else if (kind === 2) values.fill(0); // in range, but every row in one group
  else if (kind === 3) for (let i = 0; i < k; i++) values[i] = c.p.int(groups); // groups of random sizes
  else if (kind === 4) values.reverse(); // a valid act-order permutation
  else values.fill(groups - 1, 0, at); // uneven groups
  const existing = tensors.find((t) => t.name === `${lin}.g_idx`);
  const g = { name: `${lin}.g_idx`, dtype: 'I32', shape: [k], data: Buffer.from(values.buffer) };
  writeSafetensors(path, existing ? tensors.map((t) => (t === existing ? g : t)) : [...tensors, g]);
  c.note(`${ST}: ${lin}.g_idx ${existing ? 'rewritten' : 'added'} (variant ${kind}, ${groups} groups, row ${at})`);
};

const quantOffByOne: Mutation = (c) => {
  const path = c.file(ST);
  const { tensors } = readSafetensors(path);
  const candidates = tensors.filter((t) => /\.(qzeros|scales|qweight|g_idx)$/.test(t.name));
  const t = c.p.pick(candidates);
  const grow = c.p.chance(0.5);
  const rowBytes = t.data.length / t.shape[0]!;
  const shape = [t.shape[0]! + (grow ? 1 : -1), ...t.shape.slice(1)];
  const data = grow ? Buffer.concat([t.data, t.data.subarray(0, rowBytes)]) : t.data.subarray(0, t.data.length - rowBytes);
  writeSafetensors(path, tensors.map((x) => (x === t ? { ...t, shape, data } : x)));
  c.note(`${ST}: ${t.name} shape ${show(t.shape)} -> ${show(shape)}`);
  c.runInfo = true;
};

// ---- config.json ----

const CONFIG_FIELDS = ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'rope_scaling',
  'tie_word_embeddings', 'bos_token_id', 'eos_token_id', 'architectures', 'hidden_act', 'torch_dtype', 'sliding_window',
  'use_sliding_window', 'attention_bias', 'mlp_bias', 'model_type', 'rope_parameters', 'quantization_config'];

/** Sets one of `keys` in the JSON file `name` to one of `values` (picked in that order). */
function oddJsonField(name: string, keys: readonly string[], values: readonly unknown[]): Mutation {
  return (c) => {
    const path = c.file(name);
    const json = readJson(path);
    const key = c.p.pick(keys);
    const value = c.p.pick(values);
    setField(json, key, value);
    writeJson(path, json);
    c.note(`${name}: ${key} = ${show(value)}`);
    c.runInfo = true;
  };
}

const configField = oddJsonField('config.json', CONFIG_FIELDS, ODD_VALUES);

const configStructured: Mutation = (c) => {
  const path = c.file('config.json');
  const json = readJson(path);
  const edits: [string, unknown][] = c.p.pick([
    [['num_attention_heads', 7]], [['num_key_value_heads', 3]], [['num_attention_heads', 16], ['head_dim', 4]],
    [['head_dim', 7]], [['num_key_value_heads', 8]], [['hidden_size', 96]],
    [['rope_scaling', { type: 'yarn', factor: 4 }]], [['rope_scaling', { type: 'linear', factor: 0 }]],
    [['rope_scaling', { rope_type: 'yarn', factor: 1e-40 }]], [['rope_scaling', { rope_type: 'yarn', original_max_position_embeddings: 1 }]],
    [['rope_scaling', { rope_type: 'yarn', factor: 4, beta_fast: 1e30, beta_slow: 1e-30 }]],
    [['rope_scaling', { rope_type: 'yarn', factor: 4, mscale: 1e30, mscale_all_dim: 1e-30 }]],
    [['rope_scaling', { rope_type: 'yarn', attention_factor: 0, beta_slow: -3 }]], [['original_max_position_embeddings', 0]],
    [['rope_scaling', { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }]],
    [['rope_scaling', { rope_type: 'llama3', factor: 8 }]], [['rope_scaling', { type: 'dynamic', factor: 2 }]],
    [['rope_scaling', { type: 'dynamic', factor: 1e-40 }]], [['rope_scaling', 'linear']], [['rope_scaling', { type: 'linear' }]],
    [['rope_parameters', { rope_type: 'default', rope_theta: -5 }]], [['rope_parameters', 'x']],
    [['architectures', ['MistralForCausalLM']], ['sliding_window', 3]], [['architectures', ['Qwen2ForCausalLM']]],
    [['architectures', ['GPT2LMHeadModel']]], [['architectures', 'LlamaForCausalLM']], [['architectures', []]],
    [['tie_word_embeddings', false]], [['vocab_size', 100]], [['vocab_size', 513]], [['max_position_embeddings', 3]],
    [['max_position_embeddings', 2147483647]], [['max_position_embeddings', 1e8]], [['num_hidden_layers', 4]],
    [['num_hidden_layers', 6]], [['num_hidden_layers', 1e9]], [['eos_token_id', [2, 999]]], [['bos_token_id', -1]],
  ] as [string, unknown][][]);
  for (const [k, v] of edits) setField(json, k, v);
  writeJson(path, json);
  c.note(`config.json: ${edits.map(([k, v]) => `${k} = ${show(v)}`).join(', ')}`);
  c.runInfo = true;
};

const configTree: Mutation = (c) => {
  mutateJsonTree(c, 'config.json');
  c.runInfo = true;
};

// ---- tokenizer files and chat templates ----

const tokenizerTree: Mutation = (c) => {
  const path = c.file('tokenizer.json');
  const json = readJson(path);
  // Most nodes are vocabulary entries and merges: aim at the other parts half of the time.
  if (c.p.chance(0.5)) {
    const key = c.p.pick(['added_tokens', 'normalizer', 'pre_tokenizer', 'post_processor', 'decoder', 'model']);
    const sub = json[key];
    if (sub !== null && typeof sub === 'object' && c.p.chance(0.7)) {
      const node = randomNode(c.p, key === 'model' ? { type: sub.type, unk_token: sub.unk_token, byte_fallback: sub.byte_fallback,
        fuse_unk: sub.fuse_unk, dropout: sub.dropout } : sub);
      if (node) {
        const value = c.p.pick(ODD_VALUES);
        if (key === 'model') setField(sub, node.key, value);
        else setField(node.parent, node.key, value);
        writeJson(path, json);
        c.note(`tokenizer.json: ${key}${node.path.startsWith('[') ? '' : '.'}${node.path} = ${show(value)}`);
        c.runInfo = true;
        return;
      }
    }
    const value = c.p.pick(ODD_VALUES);
    setField(json, key, value);
    writeJson(path, json);
    c.note(`tokenizer.json: ${key} = ${show(value)}`);
  } else {
    mutateJsonTree(c, 'tokenizer.json');
  }
  c.runInfo = true;
};

/** Well-formed steps that would loop, multiply the text or backtrack without end (or that are fine), and broken ones. */
const TOKENIZER_STEPS: [string, unknown][] = [
  ['pre_tokenizer', { type: 'FixedLength', length: 0 }],
  ['pre_tokenizer', { type: 'FixedLength', length: -3 }],
  ['pre_tokenizer', { type: 'FixedLength', length: 3 }],
  ['pre_tokenizer', { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false }],
  ['pre_tokenizer', { type: 'Split', pattern: { Regex: '(\\w+\\s?)+$' }, behavior: 'Removed', invert: false }],
  ['pre_tokenizer', { type: 'Split', pattern: { Regex: '\\s+(?!\\S)|\\s+|\\S+' }, behavior: 'Isolated', invert: false }],
  ['pre_tokenizer', { type: 'Split', pattern: { Regex: '(unclosed' }, behavior: 'Isolated', invert: false }],
  ['normalizer', { type: 'Replace', pattern: { String: ' ' }, content: 'x'.repeat(10_000) }],
  ['normalizer', { type: 'Replace', pattern: { Regex: '(x+x+)+y' }, content: '\u2581' }],
  ['decoder', { type: 'Replace', pattern: { Regex: '(a|a)*$' }, content: '' }],
  ['model', 1_000_000_000],
];

const tokenizerStep: Mutation = (c) => {
  const path = c.file('tokenizer.json');
  const json = readJson(path);
  const [step, value] = c.p.pick(TOKENIZER_STEPS);
  if (step === 'model') json.model.max_input_chars_per_word = value;
  else json[step] = value;
  writeJson(path, json);
  c.note(`tokenizer.json: ${step === 'model' ? 'model.max_input_chars_per_word' : step} = ${show(value)}`);
  c.runInfo = true;
  c.runChat = true;
};

const tokenizerWhole: Mutation = (c) => {
  const path = c.file(c.p.pick(['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'config.json']));
  const text = readFileSync(path, 'utf8');
  const out = c.p.pick(['', '[]', 'null', '"x"', '{', text.slice(0, c.p.int(text.length)), `${text}x`, '\u0000'.repeat(16)]);
  writeFileSync(path, out);
  c.note(`${basename(path)}: replaced with ${show(out.slice(0, 40))}`);
  c.runInfo = true;
};

const tokenizerConfigOddField = oddJsonField('tokenizer_config.json',
  ['bos_token', 'eos_token', 'unk_token', 'add_bos_token', 'add_eos_token', 'additional_special_tokens',
    'added_tokens_decoder', 'clean_up_tokenization_spaces', 'chat_template', 'legacy'],
  [...ODD_VALUES, '<s>', '</s>', '<unk>', '<nope>', { __type: 'AddedToken', content: '</s>' },
    { __type: 'AddedToken', content: 5 }, ['<s>'], [{ name: 'default', template: 5 }]]);
/** Its special tokens and template are what chat renders with. */
const tokenizerConfigField: Mutation = (c) => {
  tokenizerConfigOddField(c);
  c.runChat = true;
};

/**
 * special_tokens_map.json, read where tokenizer_config.json has no added_tokens_decoder (transformers' legacy path):
 * odd token values, or a file that is not JSON or not a file.
 */
const specialTokensMap: Mutation = (c) => {
  if (c.p.chance(0.8)) {
    const configPath = c.file('tokenizer_config.json');
    const config = readJson(configPath);
    delete config.added_tokens_decoder;
    writeJson(configPath, config);
    c.note('tokenizer_config.json: added_tokens_decoder removed (legacy)');
  }
  const path = c.file('special_tokens_map.json');
  const kind = c.p.int(4);
  if (kind === 0) {
    const key = c.p.pick(['bos_token', 'eos_token', 'unk_token']);
    const value = c.p.pick([...ODD_VALUES, '<s>', '</s>', '<nope>', { content: '</s>', normalized: false }, { content: 5 },
      { content: DEEP_LIST }]);
    const map: Json = {};
    setField(map, key, value);
    writeJson(path, map);
    c.note(`special_tokens_map.json: ${key} = ${show(value)}`);
  } else if (kind === 1) {
    const out = c.p.pick(['', '[]', 'null', '{', '"x"', '\u0000'.repeat(16)]);
    writeFileSync(path, out);
    c.note(`special_tokens_map.json = ${show(out)}`);
  } else if (kind === 2) {
    mkdirSync(path);
    c.note('special_tokens_map.json: a folder');
  } else {
    symlinkSync('/dev/zero', path);
    c.note('special_tokens_map.json: a link to /dev/zero');
  }
  c.runInfo = true;
  c.runChat = true;
};

const generationConfigField = oddJsonField('generation_config.json',
  ['bos_token_id', 'eos_token_id', 'pad_token_id', 'max_length', 'temperature'],
  [...ODD_VALUES, [2, 3], [2, 'x'], 99999, 511]);

let realTemplates: string[] | null = null;
function fixtureTemplates(): string[] {
  realTemplates ??= readFileSync(join(fixtures, 'chat-templates', 'templates.jsonl'), 'utf8').trim().split('\n')
    .map((line) => Object.values(JSON.parse(line) as Record<string, string>)[0]!);
  return realTemplates;
}

const BROKEN_TEMPLATES = ['{% for m in messages %}', '{{', '{% if x %}yes', '{% endfor %}', '{{ messages[0]["content"] }',
  '{% set %}', '{{ 1 +* 2 }}', '{% for %}{% endfor %}', '{% macro %}', '{{ raise_exception("no") }}', '{% bogus %}', '}}{{',
  '{% if %}{% elif %}{% else %}{% endif %}', '{{ "unterminated }}', '{# open comment', '{%- for m in messages -%}{{ m.content | nofilter }}{%- endfor -%}',
  // Valid templates that would never finish or would fill memory (cli/engine/bounded-jinja.ts stops them).
  '{% for i in range(10**9) %}{% endfor %}', '{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}',
  '{% set ns = namespace(a=[1]) %}{% for i in range(64) %}{% set ns.a = ns.a + ns.a %}{% endfor %}',
  "{% set ns = namespace(a='ab') %}{% for i in range(64) %}{% set ns.a = ns.a ~ ns.a %}{% endfor %}",
  '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}'];

const chatTemplate: Mutation = (c) => {
  const path = c.file('tokenizer_config.json');
  const json = readJson(path);
  let tpl: string;
  if (c.p.chance(0.5)) {
    tpl = c.p.pick(BROKEN_TEMPLATES);
  } else {
    const real = c.p.pick(fixtureTemplates());
    const at = c.p.int(real.length);
    tpl = c.p.chance(0.5) ? real.slice(0, at) : `${real.slice(0, at)}${c.p.pick(['{%', '}}', '{{', '%}', '{#'])}${real.slice(at)}`;
  }
  if (c.p.chance(0.25)) {
    // Its own file, which transformers saves now and which wins over tokenizer_config.json's.
    writeFileSync(c.file('chat_template.jinja'), tpl);
    c.note(`chat_template.jinja = ${show(tpl)}`);
  } else {
    json.chat_template = c.p.chance(0.2) ? [{ name: 'default', template: tpl }] : tpl;
    writeJson(path, json);
    c.note(`tokenizer_config.json: chat_template = ${show(tpl)}`);
  }
  c.runInfo = true;
  c.runChat = true;
};

// ---- the folder's files ----

const fileSwap: Mutation = (c) => {
  const names = readdirSync(c.dir);
  const name = c.p.pick(names);
  const path = c.file(name);
  const kind = c.p.int(8);
  rmSync(path, { force: true });
  if (kind === 0) mkdirSync(path);
  else if (kind === 1) writeFileSync(path, '');
  else if (kind === 2) symlinkSync(path, path); // a link to itself (ELOOP)
  else if (kind === 3) symlinkSync(join(c.dir, 'no-such-file'), path);
  else if (kind === 5) symlinkSync('/dev/zero', path); // endless, if read to its end
  else if (kind === 6) execFileSync('mkfifo', [path]); // opening it to read waits for a writer
  else if (kind === 7) { writeFileSync(path, ''); truncateSync(path, 3 * 1024 ** 3); } // sparse: no disk used
  c.note(`${name}: ${['made a folder', 'emptied', 'a link to itself', 'a dangling link', 'deleted', 'a link to /dev/zero',
    'a FIFO', 'a sparse 3 GB file'][kind]}`);
  c.runInfo = true;
};

const shards: Mutation = (c) => {
  const { tensors } = readSafetensors(c.file(ST));
  const cut = 1 + c.p.int(tensors.length - 1);
  const parts = [tensors.slice(0, cut), tensors.slice(cut)];
  const map: Record<string, unknown> = {};
  parts.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(c.file(file), part);
    for (const t of part) map[t.name] = file;
  });
  rmSync(c.file(ST));
  const name = c.p.pick(tensors).name;
  const kind = c.p.int(7);
  const index: Json = { metadata: { total_size: 0 }, weight_map: map };
  if (kind === 1) map[name] = 'model-00001-of-00002.safetensors';
  else if (kind === 2) map[name] = c.p.pick(['../config.json', '', 'config.json', 'missing.safetensors', '.', 5, null]);
  else if (kind === 3) index.weight_map = c.p.pick([[], {}, 'x', null]);
  else if (kind === 4) delete map[name];
  else if (kind === 5) map['model.extra.weight'] = 'model-00002-of-00002.safetensors';
  const noIndex = kind === 6;
  if (!noIndex) writeJson(c.file('model.safetensors.index.json'), index);
  c.note(`split into 2 shards at ${cut}${noIndex ? ', no index' : `, index variant ${kind} (${name})`}`);
  c.runInfo = true;
};

// ---- generate's flags and prompt ----

const FLAGS = ['-n', '--temperature', '--top-k', '--top-p', '--min-p', '--typical-p', '--repeat-penalty', '--frequency-penalty',
  '--presence-penalty', '--seed', '--max-seq-len', '--threads', '--backend', '--stop'];
const FLAG_VALUES = ['', ' ', '0', '-0', '-1', '1', '2', '3', '0.5', '1.5', '1e3', '2147483647', '2147483648', '4294967296',
  '9007199254740993', 'NaN', 'Infinity', '-Infinity', '0x10', 'abc', '1e400', '1e-400', '100', '512', '513', 'cpu', 'cuda', 'gpu'];

const flagValue: Mutation = (c) => {
  const flag = c.p.pick(FLAGS);
  const value = c.p.pick(FLAG_VALUES);
  c.flags.push(flag, value);
  c.blame.push(flag === '-n' ? '-n/--max-tokens' : flag);
  c.note(`generate ${flag} ${JSON.stringify(value)}`);
};

const promptValue: Mutation = (c) => {
  c.prompt = c.p.pick(['', ' ', '\n', 'é中文🙂', '<s></s><unk>', 'x'.repeat(5000), 'Once '.repeat(600), '\u200b', '\t\r\n']);
  c.blame.push('-p/--prompt');
  c.note(`generate -p ${JSON.stringify(c.prompt.slice(0, 20))}${c.prompt.length > 20 ? `... (${c.prompt.length} chars)` : ''}`);
};

/** Every mutation, with its weight, and whether it needs a GPTQ fixture. */
export const MUTATIONS: { name: string; weight: number; apply: Mutation; gptqOnly?: boolean; flagsOnly?: boolean }[] = [
  { name: 'header length', weight: 3, apply: headerLength },
  { name: 'header entry', weight: 10, apply: headerEntry },
  { name: 'header text', weight: 3, apply: headerWhole },
  { name: 'truncate / append', weight: 3, apply: truncateOrAppend },
  { name: 'data bytes', weight: 3, apply: dataFlips },
  { name: 'tensor fill', weight: 4, apply: fillTensor },
  { name: 'GPTQ fields', weight: 6, apply: gptqFields, gptqOnly: true },
  { name: 'g_idx', weight: 3, apply: gIdx, gptqOnly: true },
  { name: 'qzeros / scales off by one', weight: 2, apply: quantOffByOne, gptqOnly: true },
  { name: 'config field', weight: 10, apply: configField },
  { name: 'config shape', weight: 6, apply: configStructured },
  { name: 'config tree', weight: 2, apply: configTree },
  { name: 'tokenizer.json', weight: 8, apply: tokenizerTree },
  { name: 'whole JSON file', weight: 2, apply: tokenizerWhole },
  { name: 'tokenizer step', weight: 3, apply: tokenizerStep },
  { name: 'tokenizer_config.json', weight: 4, apply: tokenizerConfigField },
  { name: 'generation_config.json', weight: 2, apply: generationConfigField },
  { name: 'special_tokens_map.json', weight: 2, apply: specialTokensMap },
  { name: 'chat template', weight: 3, apply: chatTemplate },
  { name: 'file swap', weight: 3, apply: fileSwap },
  { name: 'shards', weight: 2, apply: shards },
  { name: 'flag', weight: 6, apply: flagValue, flagsOnly: true },
  { name: 'prompt', weight: 2, apply: promptValue, flagsOnly: true },
];

export function pickMutation(p: Picker, quantized: boolean): (typeof MUTATIONS)[number] {
  const usable = MUTATIONS.filter((m) => quantized || !m.gptqOnly);
  let r = p.int(usable.reduce((s, m) => s + m.weight, 0));
  for (const m of usable) {
    r -= m.weight;
    if (r < 0) return m;
  }
  return usable[usable.length - 1]!;
}

// Reads and checks the header of one safetensors file (never its tensor data): 8-byte little-endian
// header length, a JSON header, then the data section the tensors' data_offsets point into.
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { showValue, UserError } from '../../errors.js';
import { isJsonObject } from './json-file.js';

/** Bytes per element of every safetensors dtype; unknown extra tensors may use any of them. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  U16: 2, I16: 2, F16: 2, BF16: 2,
  U32: 4, I32: 4, F32: 4,
  U64: 8, I64: 8, F64: 8,
};

export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** A tensor as the header describes it; dtype may be any safetensors dtype. */
export interface RawTensor {
  name: string;
  file: string;
  dtype: string;
  shape: number[];
  /** Absolute offset in the file. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  file: string;
  size: number;
  tensors: RawTensor[];
  metadata: Record<string, string>;
}

function readExactly(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

function isDim(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(file: string, name: string, v: unknown, dataStart: number, dataBytes: number): RawTensor {
  const where = `${file}: tensor ${name}`;
  if (!isJsonObject(v)) throw new UserError(`${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = v;
  if (typeof dtype !== 'string' || DTYPE_BYTES[dtype] === undefined) {
    throw new UserError(`${where}: unknown dtype ${showValue(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isDim)) {
    throw new UserError(`${where}: shape ${showValue(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim) || offsets[0] > offsets[1]) {
    throw new UserError(`${where}: data_offsets ${showValue(offsets)} is not a [begin, end] pair`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataBytes) {
    throw new UserError(`${where}: data_offsets [${begin}, ${end}] lie outside the file (its data section is ${dataBytes} bytes)`);
  }
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = elements * DTYPE_BYTES[dtype]!;
  if (end - begin !== expected) {
    throw new UserError(`${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes, but ${dtype} ${showValue(shape)} needs ${expected}`);
  }
  return { name, file, dtype, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin };
}

function checkNoOverlap(file: string, tensors: RawTensor[]): void {
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.offset < prev.offset + prev.byteLength) {
      throw new UserError(`${file}: tensors ${prev.name} and ${cur.name} overlap in the data section`);
    }
  }
}

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  let fd: number;
  try {
    // A folder or a device by that name is refused before it is opened (a FIFO would block the open).
    if (!statSync(file).isFile()) throw new UserError(`${file}: is not a file`);
    fd = openSync(file, 'r');
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${file}: cannot open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new UserError(`${file}: file is ${size} bytes, too short for a safetensors header`);
    const headerLength = Number(readExactly(fd, 8, 0).readBigUInt64LE(0));
    if (headerLength > MAX_HEADER_BYTES) {
      throw new UserError(`${file}: header length ${headerLength} is over the 100 MB limit (not a safetensors file?)`);
    }
    if (8 + headerLength > size) {
      throw new UserError(`${file}: header length ${headerLength} runs past the end of the file (${size} bytes)`);
    }
    let header: unknown;
    try {
      header = JSON.parse(readExactly(fd, headerLength, 8).toString('utf8'));
    } catch (err) {
      throw new UserError(`${file}: header is not valid JSON (${(err as Error).message.split('\n')[0]})`);
    }
    if (!isJsonObject(header)) throw new UserError(`${file}: header is not a JSON object`);
    const dataStart = 8 + headerLength;
    const tensors: RawTensor[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        // The format's metadata maps strings to strings; anything else is dropped (not String()ed: a list nested
        // thousands deep would take String() past the call stack).
        if (isJsonObject(entry)) metadata = Object.fromEntries(Object.entries(entry).filter((e): e is [string, string] => typeof e[1] === 'string'));
        continue;
      }
      tensors.push(parseEntry(file, name, entry, dataStart, size - dataStart));
    }
    checkNoOverlap(file, tensors);
    return { file, size, tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

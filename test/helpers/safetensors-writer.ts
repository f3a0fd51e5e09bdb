// A tiny safetensors reader/writer for tests: builds shards, damages headers, rewrites tensors.
// Independent of the loader under test (it is the format spec written out, nothing more).
import { readFileSync, writeFileSync } from 'node:fs';

export interface StTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Buffer;
}

export type StHeader = Record<string, unknown>;

/** Header JSON and the data section of a safetensors file. */
export function readRaw(path: string): { header: StHeader; data: Buffer } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as StHeader, data: buf.subarray(8 + n) };
}

/** Every tensor of a file with its bytes, in header order (metadata returned apart). */
export function readSafetensors(path: string): { tensors: StTensor[]; metadata: Record<string, string> | undefined } {
  const { header, data } = readRaw(path);
  const tensors: StTensor[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    tensors.push({ name, dtype: e.dtype, shape: e.shape, data: Buffer.from(data.subarray(e.data_offsets[0], e.data_offsets[1])) });
  }
  return { tensors, metadata: header.__metadata__ as Record<string, string> | undefined };
}

/** Writes raw header JSON text + data (the header length is the text's byte length). */
export function writeRaw(path: string, headerText: string, data: Buffer): void {
  const head = Buffer.from(headerText, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length));
  writeFileSync(path, Buffer.concat([len, head, data]));
}

/** Writes tensors packed back to back, in the given order. */
export function writeSafetensors(path: string, tensors: StTensor[], metadata?: Record<string, string>): void {
  const header: StHeader = metadata ? { __metadata__: metadata } : {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  writeRaw(path, JSON.stringify(header), Buffer.concat(tensors.map((t) => t.data)));
}

/** Lets `mutate` edit the parsed header in place, then writes the file back with the same data. */
export function rewriteHeader(path: string, mutate: (header: StHeader) => void): void {
  const { header, data } = readRaw(path);
  mutate(header);
  writeRaw(path, JSON.stringify(header), data);
}

/** Rewrites the file with `edit` applied to its tensor list (drop, add or change tensors). */
export function rewriteTensors(path: string, edit: (tensors: StTensor[]) => StTensor[]): void {
  const { tensors, metadata } = readSafetensors(path);
  writeSafetensors(path, edit(tensors), metadata);
}

// Reads a small JSON file of a model folder, turning a missing file or bad JSON into a one-line UserError.
import { existsSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { UserError } from '../../errors.js';
import { readBoundedFile } from '../bounded-file.js';

/** How much xllama reads of a model folder's JSON file, by kind, and how a file past it is refused. */
const JSON_BOUNDS = {
  /**
   * config.json, tokenizer_config.json, a safetensors index: real ones take KB (the index of a model with many
   * tensors a few MB). The bound keeps a hostile one's parse under ~1 GB (the worst JSON, `[{},{},…]`, takes ~32
   * bytes of memory a byte).
   */
  config: { maxBytes: 32 * 1024 * 1024, limitPhrase: 'a model folder\'s JSON file may have' },
  /** tokenizer.json: the largest we know (Gemma 3's) is about 33 MB. 64 MiB of the worst JSON parses in ~2 GB, ~25 s. */
  tokenizer: { maxBytes: 64 * 1024 * 1024, limitPhrase: 'a tokenizer.json may have' },
} as const;

/** A JSON file of a model folder as text: a regular file within its kind's bound, else a one-line UserError. */
export function readModelJsonText(path: string, kind: keyof typeof JSON_BOUNDS): string {
  return readBoundedFile(path, { ...JSON_BOUNDS[kind], noun: 'JSON file' }).toString('utf8');
}

export type JsonObject = Record<string, unknown>;

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses `path` as a JSON object; `null` when the file is absent and not required. */
export function readJsonObject(path: string, required: true): JsonObject;
export function readJsonObject(path: string, required: false): JsonObject | null;
export function readJsonObject(path: string, required: boolean): JsonObject | null {
  const name = basename(path);
  if (!existsSync(path)) {
    if (required) throw new UserError(`${dirname(path)}: missing ${name}`);
    return null;
  }
  const text = readModelJsonText(path, 'config');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (!isJsonObject(parsed)) throw new UserError(`${path}: expected a JSON object at the top level`);
  return parsed;
}

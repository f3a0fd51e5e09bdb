// Reads a small JSON file of a model folder, turning a missing file or bad JSON into a one-line UserError.
import { existsSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { UserError } from '../../errors.js';
import { readBoundedFile } from '../bounded-file.js';

/**
 * config.json, tokenizer_config.json, a safetensors index: real ones take KB (the index of a model with many
 * tensors a few MB). The bound keeps a hostile one's parse under ~1 GB (the worst JSON, `[{},{},…]`, takes ~32
 * bytes of memory a byte).
 */
export const MAX_CONFIG_JSON_BYTES = 32 * 1024 * 1024;

/** tokenizer.json: the largest we know (Gemma 3's) is about 33 MB. 64 MiB of the worst JSON parses in ~2 GB, ~25 s. */
export const MAX_TOKENIZER_JSON_BYTES = 64 * 1024 * 1024;

/** A JSON file of a model folder as text: a regular file of at most maxBytes, else a one-line UserError. */
export function readModelJsonText(path: string, maxBytes: number): string {
  const limitPhrase = basename(path) === 'tokenizer.json' ? 'a tokenizer.json may have' : 'a model folder\'s JSON file may have';
  return readBoundedFile(path, { maxBytes, noun: 'JSON file', limitPhrase }).toString('utf8');
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
  const text = readModelJsonText(path, MAX_CONFIG_JSON_BYTES);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (!isJsonObject(parsed)) throw new UserError(`${path}: expected a JSON object at the top level`);
  return parsed;
}

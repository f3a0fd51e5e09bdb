// Reads a small JSON file of a model folder, turning a missing file or bad JSON into a one-line UserError.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { UserError } from '../../errors.js';

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
  if (!statSync(path).isFile()) throw new UserError(`${path}: is not a file`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (!isJsonObject(parsed)) throw new UserError(`${path}: expected a JSON object at the top level`);
  return parsed;
}

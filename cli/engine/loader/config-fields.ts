// Typed readers for fields of a parsed JSON config: each failure names the file and the field.
import { showValue, UserError } from '../../errors.js';
import type { JsonObject } from './json-file.js';
import { INT32_MAX, fitsFloat32 } from '../native-limits.js';

export class FieldReader {
  constructor(readonly obj: JsonObject, readonly file: string, readonly prefix = '') {}

  private where(key: string): string {
    return `${this.file}: ${this.prefix}${key}`;
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  /** An integer from `min` (default 1) to `max` (default the native side's int range). */
  int(key: string, fallback?: number, min = 1, max = INT32_MAX): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new UserError(`${this.where(key)} is missing (expected an integer)`);
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new UserError(`${this.where(key)} is ${showValue(v)}, expected an integer >= ${min}`);
    }
    if (v > max) throw new UserError(`${this.where(key)} is ${v}, more than xllama supports (at most ${max})`);
    return v;
  }

  /** A positive number that a 32-bit float holds (neither infinite nor rounded to 0). */
  positive(key: string, fallback?: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new UserError(`${this.where(key)} is missing (expected a number)`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new UserError(`${this.where(key)} is ${showValue(v)}, expected a positive number`);
    }
    if (!fitsFloat32(v)) throw new UserError(`${this.where(key)} is ${v}, outside the range of a 32-bit float`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new UserError(`${this.where(key)} is ${showValue(v)}, expected true or false`);
    return v;
  }

  string(key: string): string | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') throw new UserError(`${this.where(key)} is ${showValue(v)}, expected a string`);
    return v;
  }

  fail(key: string, what: string): never {
    throw new UserError(`${this.where(key)} ${what}`);
  }
}

// What the native side can hold: C++ takes sizes, positions and counts as 32-bit ints and scales as
// 32-bit floats. Numbers are checked against these in TypeScript before they cross, so a value out of
// range is refused by the name the user gave it (a flag, a config field) instead of wrapping in a cast.

export const INT32_MAX = 0x7fffffff;
export const FLOAT32_MAX = 3.4028234663852886e38;

/** CPU worker threads: one more than any machine has cores, and few enough that spawning them is harmless. */
export const MAX_THREADS = 1024;

/** An integer in [min, max]. */
export function isIntIn(v: unknown, min: number, max = INT32_MAX): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/** A finite number that stays finite, and non-zero if it was, as a 32-bit float. */
export function fitsFloat32(v: number): boolean {
  const f = Math.fround(v);
  return Number.isFinite(f) && (v === 0 || f !== 0);
}

// Number formatting shared by the commands' human-readable output.

/** 1023 B, 1.5 KiB, 3.6 GiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** 12,345 (rounded to a whole number, thousands separated). */
export function formatInteger(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}

/** "1 token", "12,345 tokens". */
export function formatTokens(n: number): string {
  return `${formatInteger(n)} token${n === 1 ? '' : 's'}`;
}

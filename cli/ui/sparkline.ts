// Text sparklines and bars for the gpu-monitor panel.
const TICKS = '▁▂▃▄▅▆▇█';

/** The last `width` values as block characters on a 0-100 scale; gaps (null) as spaces. */
export function sparkline(values: (number | null)[], width: number): string {
  const tail = values.slice(-width);
  const chars = tail.map((v) => {
    if (v === null) return ' ';
    const level = Math.round((Math.min(100, Math.max(0, v)) / 100) * (TICKS.length - 1));
    return TICKS[level];
  });
  return chars.join('').padStart(width, ' ');
}

/** A solid bar: filled part and empty part, returned separately so they can be coloured. */
export function barParts(percent: number | null, width: number): { filled: string; empty: string } {
  if (percent === null) return { filled: '', empty: '·'.repeat(width) };
  const n = Math.round((Math.min(100, Math.max(0, percent)) / 100) * width);
  return { filled: '█'.repeat(n), empty: '░'.repeat(width - n) };
}

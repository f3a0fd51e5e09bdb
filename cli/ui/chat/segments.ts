// Lines made of " · "-separated segments that must fit a terminal width: the header wraps between segments,
// the status line drops its least important segments.
import { textWidth } from './wrap-rows.js';

export const SEPARATOR = ' · ';

export interface Segment {
  /** The text as shown (colours are applied around it). */
  text: string;
  /** Lower is more important; the status line drops the highest first. */
  priority: number;
}

/** The segments, in their order, that fit `width` when the least important ones are left out. */
export function fitSegments<T extends Segment>(segments: readonly T[], width: number): T[] {
  const kept = [...segments];
  const total = (list: readonly T[]) => list.reduce((w, s, i) => w + textWidth(s.text) + (i > 0 ? SEPARATOR.length : 0), 0);
  while (kept.length > 1 && total(kept) > width) {
    let worst = 0;
    kept.forEach((s, i) => {
      if (s.priority >= kept[worst]!.priority) worst = i;
    });
    kept.splice(worst, 1);
  }
  return kept;
}

/** Segments packed into lines of at most `width` cells, breaking only between segments. */
export function packSegments<T extends { text: string }>(segments: readonly T[], width: number): T[][] {
  const lines: T[][] = [];
  let line: T[] = [];
  let used = 0;
  for (const s of segments) {
    const w = textWidth(s.text);
    if (line.length > 0 && used + SEPARATOR.length + w > width) {
      lines.push(line);
      line = [];
      used = 0;
    }
    used += (line.length > 0 ? SEPARATOR.length : 0) + w;
    line.push(s);
  }
  if (line.length > 0) lines.push(line);
  return lines;
}

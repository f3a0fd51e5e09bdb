// Streaming text cut into terminal rows, so that finished rows can move into the scrollback (Ink's <Static>)
// while the reply is still coming: a live area taller than the terminal makes Ink clear the whole screen on
// every frame. Greedy word wrap; a row is final once another row follows it.

/** Code points a terminal draws two cells wide: East Asian wide and fullwidth forms, and emoji. */
const WIDE: [number, number][] = [
  [0x1100, 0x115f], [0x2e80, 0x303e], [0x3041, 0x33ff], [0x3400, 0x4dbf], [0x4e00, 0x9fff], [0xa000, 0xa4cf],
  [0xac00, 0xd7a3], [0xf900, 0xfaff], [0xfe30, 0xfe4f], [0xff00, 0xff60], [0xffe0, 0xffe6], [0x1f300, 0x1f64f],
  [0x1f900, 0x1f9ff], [0x20000, 0x3fffd],
];
const ZERO_WIDTH = /[\p{Mn}\p{Me}\p{Cf}\u200b-\u200f\u2060\ufe00-\ufe0f]/u;

/** Cells one code point takes. */
export function charWidth(ch: string): number {
  if (ZERO_WIDTH.test(ch)) return 0;
  const cp = ch.codePointAt(0)!;
  if (cp < 0x1100) return 1;
  return WIDE.some(([lo, hi]) => cp >= lo && cp <= hi) ? 2 : 1;
}

export function textWidth(text: string): number {
  let w = 0;
  for (const ch of text) w += charWidth(ch);
  return w;
}

export interface Row {
  text: string;
  /** Offset in the source just after this row and the line break or space it ended at. */
  end: number;
}

/** Rows of `text` at `width` cells: lines split at '\n', then at the last space that fits (or mid-word). */
export function wrapRows(text: string, width: number): Row[] {
  const w = Math.max(1, width);
  const rows: Row[] = [];
  let start = 0;
  for (;;) {
    const nl = text.indexOf('\n', start);
    const lineEnd = nl === -1 ? text.length : nl;
    let rowStart = start;
    for (;;) {
      let used = 0;
      let i = rowStart;
      let lastSpace = -1;
      while (i < lineEnd) {
        const ch = String.fromCodePoint(text.codePointAt(i)!);
        const cw = charWidth(ch);
        if (used + cw > w) break;
        if (ch === ' ') lastSpace = i;
        used += cw;
        i += ch.length;
      }
      if (i >= lineEnd) {
        rows.push({ text: text.slice(rowStart, lineEnd), end: nl === -1 ? lineEnd : nl + 1 });
        break;
      }
      if (text[i] === ' ') {
        rows.push({ text: text.slice(rowStart, i), end: i + 1 });
        rowStart = i + 1;
      } else if (lastSpace > rowStart) {
        rows.push({ text: text.slice(rowStart, lastSpace), end: lastSpace + 1 });
        rowStart = lastSpace + 1;
      } else {
        const cut = i > rowStart ? i : rowStart + String.fromCodePoint(text.codePointAt(rowStart)!).length;
        rows.push({ text: text.slice(rowStart, cut), end: cut });
        rowStart = cut;
      }
    }
    if (nl === -1) return rows;
    start = nl + 1;
  }
}

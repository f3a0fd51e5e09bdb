// The chat's input line as pure state: text with a cursor, multi-line paste, and the history of earlier inputs
// (up/down arrows). Keys come in as Ink's useInput gives them. A paste arrives between the terminal's
// bracketed-paste markers (Ink hands them over as "[200~" and "[201~"), or, where the terminal has none, as one
// chunk of several characters: its newlines are kept, and only a newline at its very end sends it.
import type { Key } from 'ink';

export interface EditorState {
  text: string;
  /** Offset in `text` (UTF-16 units, always at a code point boundary). */
  cursor: number;
  /** Earlier inputs, oldest first. */
  history: readonly string[];
  /** Index into history of the input shown; history.length: the one being written. */
  browsing: number;
  /** The input being written, kept while browsing the history. */
  draft: string;
  /** Inside a bracketed paste. */
  pasting: boolean;
}

export type EditorKey = Partial<Pick<Key, 'return' | 'backspace' | 'delete' | 'leftArrow' | 'rightArrow' | 'upArrow'
  | 'downArrow' | 'home' | 'end' | 'ctrl' | 'meta' | 'tab' | 'escape' | 'pageUp' | 'pageDown'>>;

export function emptyEditor(history: readonly string[] = []): EditorState {
  return { text: '', cursor: 0, history, browsing: history.length, draft: '', pasting: false };
}

const PASTE_START = '[200~';
const PASTE_END = '[201~';
// Control characters other than newline and tab never enter the text.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

function clean(text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(/\t/g, '    ').replace(CONTROL, '');
}

function insert(s: EditorState, piece: string): EditorState {
  if (piece === '') return s;
  return { ...s, text: s.text.slice(0, s.cursor) + piece + s.text.slice(s.cursor), cursor: s.cursor + piece.length };
}

function prevBoundary(text: string, i: number): number {
  if (i <= 0) return 0;
  const lo = text.charCodeAt(i - 1);
  return lo >= 0xdc00 && lo <= 0xdfff && i >= 2 ? i - 2 : i - 1;
}

function nextBoundary(text: string, i: number): number {
  if (i >= text.length) return text.length;
  const hi = text.charCodeAt(i);
  return hi >= 0xd800 && hi <= 0xdbff && i + 1 < text.length ? i + 2 : i + 1;
}

function lineStart(text: string, i: number): number {
  return text.lastIndexOf('\n', i - 1) + 1;
}

function lineEnd(text: string, i: number): number {
  const nl = text.indexOf('\n', i);
  return nl === -1 ? text.length : nl;
}

/** The cursor moved one line up (-1) or down (+1), same column where the line is long enough; null at the edge. */
function verticalMove(s: EditorState, dir: -1 | 1): number | null {
  const start = lineStart(s.text, s.cursor);
  const column = s.cursor - start;
  if (dir < 0) {
    if (start === 0) return null;
    const prevStart = lineStart(s.text, start - 1);
    return Math.min(prevStart + column, start - 1);
  }
  const end = lineEnd(s.text, s.cursor);
  if (end === s.text.length) return null;
  return Math.min(end + 1 + column, lineEnd(s.text, end + 1));
}

function recall(s: EditorState, index: number): EditorState {
  const draft = s.browsing === s.history.length ? s.text : s.draft;
  const text = index === s.history.length ? draft : s.history[index]!;
  return { ...s, text, cursor: text.length, browsing: index, draft };
}

/** The input as sent: the text, and a fresh state with it at the end of the history. */
function submit(s: EditorState): { state: EditorState; submit: string } {
  const text = s.text;
  const history = text.trim() === '' || s.history.at(-1) === text ? s.history : [...s.history, text];
  return { state: emptyEditor(history), submit: text };
}

/** Applies one key (or pasted chunk); `submit` is set when Enter sends the input. */
export function editKey(s: EditorState, input: string, key: EditorKey): { state: EditorState; submit?: string } {
  if (input === PASTE_START) return { state: { ...s, pasting: true } };
  if (input === PASTE_END) return { state: { ...s, pasting: false } };
  if (s.pasting) return { state: insert(s, key.return ? '\n' : clean(input)) };
  if (key.return) {
    if (key.meta) return { state: insert(s, '\n') };
    // A trailing backslash asks for another line, as in a shell.
    if (s.cursor === s.text.length && s.text.endsWith('\\')) {
      return { state: { ...s, text: `${s.text.slice(0, -1)}\n`, cursor: s.text.length } };
    }
    return submit(s);
  }
  if (input.length > 1 && /[\r\n]/.test(input)) {
    // A paste without bracketed-paste markers (or typing faster than the screen reads it).
    const sends = /[\r\n]$/.test(input);
    const state = insert(s, clean(sends ? input.replace(/(\r\n|\r|\n)$/, '') : input));
    return sends ? submit(state) : { state };
  }
  const { text, cursor } = s;
  if (key.backspace || key.delete) {
    if (cursor === 0) return { state: s };
    const from = prevBoundary(text, cursor);
    return { state: { ...s, text: text.slice(0, from) + text.slice(cursor), cursor: from } };
  }
  if (key.leftArrow) return { state: { ...s, cursor: prevBoundary(text, cursor) } };
  if (key.rightArrow) return { state: { ...s, cursor: nextBoundary(text, cursor) } };
  if (key.home || (key.ctrl && input === 'a')) return { state: { ...s, cursor: lineStart(text, cursor) } };
  if (key.end || (key.ctrl && input === 'e')) return { state: { ...s, cursor: lineEnd(text, cursor) } };
  if (key.upArrow) {
    const up = verticalMove(s, -1);
    if (up !== null) return { state: { ...s, cursor: up } };
    return { state: s.browsing > 0 ? recall(s, s.browsing - 1) : s };
  }
  if (key.downArrow) {
    const down = verticalMove(s, 1);
    if (down !== null) return { state: { ...s, cursor: down } };
    return { state: s.browsing < s.history.length ? recall(s, s.browsing + 1) : s };
  }
  if (key.ctrl) {
    const start = lineStart(text, cursor);
    if (input === 'u') return { state: { ...s, text: text.slice(0, start) + text.slice(cursor), cursor: start } };
    if (input === 'k') return { state: { ...s, text: text.slice(0, cursor) + text.slice(lineEnd(text, cursor)) } };
    if (input === 'w') {
      const before = text.slice(start, cursor);
      const from = start + before.replace(/\S+\s*$/, '').length;
      const cut = from === cursor ? prevBoundary(text, cursor) : from;
      return { state: { ...s, text: text.slice(0, cut) + text.slice(cursor), cursor: cut } };
    }
    return { state: s };
  }
  if (key.meta || key.escape || key.tab || key.pageUp || key.pageDown) return { state: s };
  return { state: insert(s, clean(input)) };
}

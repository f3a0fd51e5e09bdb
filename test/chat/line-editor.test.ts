// The chat's input editor and the row cutting of streamed replies, as pure functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { editKey, emptyEditor, type EditorKey, type EditorState } from '../../cli/ui/chat/line-editor.js';
import { textWidth, wrapRows } from '../../cli/ui/chat/wrap-rows.js';

/** Feeds (input, key) pairs; returns the final state and every submitted input. */
function feed(state: EditorState, steps: [string, EditorKey?][]): { state: EditorState; sent: string[] } {
  const sent: string[] = [];
  for (const [input, key] of steps) {
    const r = editKey(state, input, key ?? {});
    state = r.state;
    if (r.submit !== undefined) sent.push(r.submit);
  }
  return { state, sent };
}

const ENTER: [string, EditorKey] = ['', { return: true }];

test('typing, moving and deleting; Enter sends and clears', () => {
  const { state, sent } = feed(emptyEditor(), [['h'], ['e'], ['l'], ['o'], ['', { leftArrow: true }], ['l'],
    ['', { end: true }], ['!'], ['', { backspace: true }], ['', { delete: true }], ['p'], ENTER]);
  assert.deepEqual(sent, ['hellp']);
  assert.equal(state.text, '');
  assert.deepEqual(state.history, ['hellp']);
  // Surrogate pairs move and delete as one character.
  const emoji = feed(emptyEditor(), [['a😀'], ['', { leftArrow: true }], ['', { backspace: true }]]).state;
  assert.equal(emoji.text, '😀');
  assert.equal(feed(emptyEditor(), [['x😀'], ['', { backspace: true }]]).state.text, 'x');
  // Ctrl+U and Ctrl+W cut to the line start and one word back.
  assert.equal(feed(emptyEditor(), [['one two three'], ['w', { ctrl: true }]]).state.text, 'one two ');
  assert.equal(feed(emptyEditor(), [['line one\nline two'], ['u', { ctrl: true }]]).state.text, 'line one\n');
});

test('a bracketed paste keeps its newlines and does not send; Enter afterwards does', () => {
  const { state, sent } = feed(emptyEditor(), [['[200~'], ['first line\rsecond'], ['', { return: true }], ['third'], ['[201~']]);
  assert.deepEqual(sent, []);
  assert.equal(state.text, 'first line\nsecond\nthird');
  assert.deepEqual(feed(state, [ENTER]).sent, ['first line\nsecond\nthird']);
});

test('a pasted chunk without markers keeps inner newlines; a newline at its very end sends it', () => {
  const pasted = feed(emptyEditor(), [['a\r\nb\rc']]);
  assert.deepEqual(pasted.sent, []);
  assert.equal(pasted.state.text, 'a\nb\nc');
  // Typed text and Enter read in one chunk (a fast typist, tmux send-keys): sent.
  assert.deepEqual(feed(emptyEditor(), [['hello\r']]).sent, ['hello']);
});

test('Alt+Enter and a trailing backslash start a new line', () => {
  const { state, sent } = feed(emptyEditor(), [['one'], ['', { return: true, meta: true }], ['two\\'], ENTER, ['three'], ENTER]);
  assert.deepEqual(sent, ['one\ntwo\nthree']);
  assert.equal(state.text, '');
});

test('up and down walk the history, keeping the draft; within a multi-line input they move between lines', () => {
  let s = feed(emptyEditor(), [['first'], ENTER, ['second'], ENTER, ['draft']]).state;
  s = feed(s, [['', { upArrow: true }]]).state;
  assert.equal(s.text, 'second');
  s = feed(s, [['', { upArrow: true }], ['', { upArrow: true }]]).state;
  assert.equal(s.text, 'first');
  s = feed(s, [['', { downArrow: true }], ['', { downArrow: true }]]).state;
  assert.equal(s.text, 'draft');
  assert.equal(s.cursor, 5);
  // The same input twice in a row is kept once.
  assert.deepEqual(feed(emptyEditor(['a']), [['a'], ENTER]).state.history, ['a']);
  const multi = feed(emptyEditor(['old']), [['ab\ncd'], ['', { upArrow: true }]]).state;
  assert.equal(multi.text, 'ab\ncd');
  assert.equal(multi.cursor, 2);
  assert.equal(feed(multi, [['', { upArrow: true }]]).state.text, 'old');
});

test('control characters never enter the text; tabs become spaces', () => {
  assert.equal(feed(emptyEditor(), [['a\x1b[31mb\tc\x07']]).state.text, 'a[31mb    c');
});

test('rows: words wrap at the width, long words break, newlines end rows, wide characters count twice', () => {
  assert.deepEqual(wrapRows('the quick brown fox', 10).map((r) => r.text), ['the quick', 'brown fox']);
  assert.deepEqual(wrapRows('abcdefghijkl', 5).map((r) => r.text), ['abcde', 'fghij', 'kl']);
  assert.deepEqual(wrapRows('a\n\nb', 5).map((r) => r.text), ['a', '', 'b']);
  assert.deepEqual(wrapRows('日本語のテキスト', 6).map((r) => r.text), ['日本語', 'のテキ', 'スト']);
  assert.equal(textWidth('naïve 日本 😀'), 5 + 1 + 4 + 1 + 2);
  assert.equal(textWidth('e\u0301'), 1);
  const rows = wrapRows('hello world again', 11);
  assert.deepEqual(rows, [{ text: 'hello world', end: 12 }, { text: 'again', end: 17 }]);
});

test('rows: every row but the last is final, whatever text follows (what streaming relies on)', () => {
  const words = ['a', 'cat', 'sat', 'on', 'the', 'mat,', 'and', 'then', 'extraordinarily', '\n', 'long', '日本語', 'ok.'];
  let text = '';
  for (let i = 0; i < 400; i++) {
    text += words[(i * 7 + (i >> 3)) % words.length] + (i % 5 === 0 ? '' : ' ');
    for (const width of [8, 13, 30]) {
      const now = wrapRows(text, width);
      for (const r of now) assert.ok(textWidth(r.text) <= width, `'${r.text}' fits ${width}`);
      const later = wrapRows(`${text}and more words`, width);
      assert.deepEqual(later.slice(0, now.length - 1), now.slice(0, -1));
      // Cutting the text after a final row and wrapping the rest gives the same rows.
      if (now.length > 1) {
        const cut = now[now.length - 2]!.end;
        assert.deepEqual(wrapRows(text.slice(cut), width).map((r) => r.text), now.slice(-1).map((r) => r.text));
      }
    }
  }
});

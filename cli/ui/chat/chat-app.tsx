// The interactive chat screen (Ink): the header and finished turns in the scrollback (<Static>), the reply
// streaming below them row by row, the input line, and the status line. Loaded only by dynamic import, when
// stdin and stdout are terminals.
import { useCallback, useEffect, useRef, useState } from 'react';
import { Box, render, Static, Text, useApp, useInput, useStdout } from 'ink';
import type { ChatReply, ReplyStats } from '../../engine/chat-session.js';
import type { ChatController } from '../../chat/chat-controller.js';
import type { ChatHeaderInfo } from '../../chat/header-info.js';
import { ReplyText, terminalText } from '../../chat/reply-text.js';
import { contextShiftNote } from '../../chat/reply-summary.js';
import { ChatHeader } from './chat-header.js';
import { editKey, emptyEditor, type EditorState } from './line-editor.js';
import { PromptInput } from './prompt-input.js';
import { StatusLine, type StatusNote } from './status-line.js';
import { wrapRows } from './wrap-rows.js';

type Item =
  | { kind: 'header' }
  | { kind: 'user'; text: string }
  /** Reply rows, already cut to the terminal width. */
  | { kind: 'rows'; rows: string[] }
  | { kind: 'notice'; lines: string[]; tone: 'info' | 'error' | 'dim' }
  | { kind: 'gap' };

type KeyedItem = Item & { id: number };

interface Screen {
  items: KeyedItem[];
  replying: boolean;
  /** The streaming reply's text not yet moved to the scrollback (its last, unfinished row). */
  live: string;
  liveStats: { tokens: number; tokensPerSec: number } | null;
  last: ReplyStats | null;
  note: StatusNote | null;
  contextUsed: number;
}

/**
 * How often the streaming reply is redrawn (finished rows move to the scrollback). Each redraw takes the JS
 * thread for a moment, which delays the next token's launch if one finishes meanwhile: 10 redraws a second keep
 * that to a small share of the decode time.
 */
const FRAME_MS = 100;

export interface ChatAppProps {
  controller: ChatController;
  header: ChatHeaderInfo;
  /** A pause after each token (ms): lets tests and demos interrupt a reply on a fast model. */
  tokenDelayMs?: number;
}

function ScrollbackItem({ item, columns, header }: { item: Item; columns: number; header: ChatHeaderInfo }) {
  switch (item.kind) {
    case 'header':
      return <ChatHeader info={header} columns={columns} />;
    case 'user':
      return (
        <Box>
          <Text color="cyan" bold>› </Text>
          <Box flexGrow={1}><Text color="cyan">{terminalText(item.text)}</Text></Box>
        </Box>
      );
    case 'rows':
      return <Box flexDirection="column">{item.rows.map((r, i) => <Text key={i}>{r === '' ? ' ' : r}</Text>)}</Box>;
    case 'notice':
      return (
        <Box flexDirection="column">
          {item.lines.map((l, i) => (
            <Text key={i} color={item.tone === 'error' ? 'red' : item.tone === 'info' ? 'yellow' : undefined}
              dimColor={item.tone === 'dim'}>{l}</Text>
          ))}
        </Box>
      );
    case 'gap':
      return <Text> </Text>;
  }
}

/** Rows for a finished message shown at once (a loaded transcript). */
function replyRows(text: string, columns: number): Item {
  return { kind: 'rows', rows: wrapRows(terminalText(text), columns).map((r) => r.text) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function ChatApp({ controller, header, tokenDelayMs = 0 }: ChatAppProps) {
  const { exit } = useApp();
  const { stdout } = useStdout();
  const session = controller.session;
  const [size, setSize] = useState({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
  const columnsRef = useRef(size.columns);
  // Key handlers can run several times between renders (a paste in chunks): state they read lives in refs.
  const editorRef = useRef<EditorState>(emptyEditor());
  const [editor, setEditorState] = useState(editorRef.current);
  const replyingRef = useRef(false);
  // Everything a streaming frame changes is one state, so a frame is one render (Ink's root renders each
  // setState at once).
  const [screen, setScreen] = useState<Screen>(() => ({
    items: [{ id: 0, kind: 'header' }], replying: false, live: '', liveStats: null, last: null, note: null,
    contextUsed: session.contextUsed,
  }));
  const nextId = useRef(1);
  const abortRef = useRef<AbortController | null>(null);
  const exitAfterReply = useRef(false);

  useEffect(() => {
    const onResize = () => {
      columnsRef.current = stdout.columns || 80;
      setSize({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
    };
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);

  /** Applies a change to the screen, appending `items` to the scrollback. */
  const update = useCallback((change: Partial<Omit<Screen, 'items'>>, ...items: Item[]) => {
    setScreen((prev) => ({
      ...prev, ...change,
      items: items.length === 0 ? prev.items : [...prev.items, ...items.map((item) => ({ ...item, id: nextId.current++ }))],
    }));
  }, []);

  const setEditor = (state: EditorState) => {
    editorRef.current = state;
    setEditorState(state);
  };

  const runReply = async (reply: ChatReply) => {
    replyingRef.current = true;
    const dropped = reply.stats.droppedTurns;
    update({
      replying: true, live: '', liveStats: { tokens: 0, tokensPerSec: 0 },
      note: dropped > 0 ? { text: contextShiftNote(dropped), tone: 'warn' } : null,
    });
    const display = new ReplyText();
    let pending = ''; // reply text not yet in the scrollback
    let tokens = 0;
    let firstAt = 0;
    const flush = (final: boolean, change: Partial<Screen> = {}) => {
      const rows = wrapRows(pending, columnsRef.current);
      const done = final ? (pending === '' ? 0 : rows.length) : rows.length - 1;
      const moved: Item[] = done > 0 ? [{ kind: 'rows', rows: rows.slice(0, done).map((r) => r.text) }] : [];
      if (done > 0) pending = final ? '' : pending.slice(rows[done - 1]!.end);
      const seconds = (performance.now() - firstAt) / 1000;
      update({
        live: pending, liveStats: { tokens, tokensPerSec: tokens > 1 && seconds > 0 ? (tokens - 1) / seconds : 0 },
        contextUsed: Math.min(session.contextSize, reply.stats.promptTokens + tokens), ...change,
      }, ...moved);
    };
    const timer = setInterval(() => flush(false), FRAME_MS);
    let failure: string | null = null;
    try {
      for await (const event of reply) {
        if (event.kind === 'text') {
          if (tokens++ === 0) firstAt = performance.now();
          pending += display.push(event.text);
          if (tokenDelayMs > 0) await sleep(tokenDelayMs);
        } else {
          flush(false, { note: { text: contextShiftNote(event.droppedTurns), tone: 'warn' } });
        }
      }
    } catch (err) {
      failure = (err as Error).message.split('\n')[0]!;
    } finally {
      clearInterval(timer);
      flush(true);
    }
    const s = reply.stats;
    const after: Item[] = [];
    if (failure !== null) after.push({ kind: 'notice', lines: [`xllama: ${failure}`], tone: 'error' });
    else if (reply.discarded) after.push({ kind: 'notice', lines: ['(stopped before the reply began)'], tone: 'dim' });
    else if (s.stopReason === 'abort') after.push({ kind: 'notice', lines: ['(stopped)'], tone: 'dim' });
    let note: StatusNote | null = null;
    if (s.droppedTurns > 0) note = { text: contextShiftNote(s.droppedTurns), tone: 'warn' };
    else if (s.stopReason === 'context') note = { text: 'context full: the reply was cut', tone: 'warn' };
    else if (s.stopReason === 'length') note = { text: 'reply cut at --max-tokens', tone: 'info' };
    replyingRef.current = false;
    update({
      replying: false, live: '', liveStats: null, note, contextUsed: session.contextUsed,
      ...(reply.discarded || failure !== null ? {} : { last: { ...s } }),
    }, ...after, { kind: 'gap' });
    if (exitAfterReply.current) exit();
  };

  const showConversation = () => {
    const list: Item[] = [];
    for (const m of session.messages) {
      if (m.role === 'system') list.push({ kind: 'notice', lines: [`system: ${terminalText(m.content)}`], tone: 'dim' });
      else if (m.role === 'user') list.push({ kind: 'user', text: m.content });
      else list.push(replyRows(m.content, columnsRef.current), { kind: 'gap' });
    }
    return list;
  };

  const submit = (line: string) => {
    if (line.trim() === '') return;
    const abort = new AbortController();
    abortRef.current = abort;
    const action = controller.handle(line, abort.signal);
    const echo: Item = { kind: 'notice', lines: [`› ${line}`], tone: 'dim' };
    const settled = { note: null, contextUsed: session.contextUsed };
    switch (action.kind) {
      case 'reply':
        update({}, action.user !== null ? { kind: 'user', text: action.user } : echo);
        void runReply(action.reply);
        return;
      case 'info':
        update(settled, echo, { kind: 'notice', lines: action.lines, tone: 'info' }, { kind: 'gap' });
        return;
      case 'error':
        update(settled, echo, { kind: 'notice', lines: [action.message], tone: 'error' }, { kind: 'gap' });
        return;
      case 'loaded':
        update({ ...settled, last: null }, echo, { kind: 'notice', lines: [action.message], tone: 'info' }, { kind: 'gap' },
          ...showConversation());
        return;
      case 'exit':
        exit();
    }
  };

  useInput((input, key) => {
    if (key.ctrl && input === 'c') {
      if (replyingRef.current) abortRef.current?.abort();
      else if (editorRef.current.text === '') exit();
      else setEditor(emptyEditor(editorRef.current.history));
      return;
    }
    if (key.ctrl && input === 'd') {
      if (replyingRef.current) {
        exitAfterReply.current = true;
        abortRef.current?.abort();
      } else {
        exit();
      }
      return;
    }
    // Typing ahead works while a reply streams; Enter sends once it has ended.
    const result = editKey(editorRef.current, input, key);
    if (result.submit !== undefined && replyingRef.current) return;
    setEditor(result.state);
    if (result.submit !== undefined) submit(result.submit);
  });

  const columns = size.columns;
  return (
    <Box flexDirection="column">
      <Static items={screen.items}>
        {(item) => <Box key={item.id}><ScrollbackItem item={item} columns={columns} header={header} /></Box>}
      </Static>
      {screen.replying ? <Text>{screen.live === '' ? ' ' : screen.live}</Text> : null}
      {screen.replying && editor.text === '' ? null : (
        <PromptInput state={editor} maxRows={Math.max(3, size.rows - 5)} placeholder="Send a message (/help for commands)" />
      )}
      <StatusLine columns={columns} contextUsed={screen.contextUsed} contextSize={session.contextSize}
        live={screen.liveStats} last={screen.last} note={screen.note} />
    </Box>
  );
}

const BRACKETED_PASTE_ON = '\x1b[?2004h';
const BRACKETED_PASTE_OFF = '\x1b[?2004l';

/** Runs the chat screen until /exit, Ctrl+D, or Ctrl+C at an empty prompt. */
export async function runChatApp(controller: ChatController, header: ChatHeaderInfo, tokenDelayMs = 0): Promise<void> {
  // Bracketed paste: the terminal marks pasted text, so its newlines don't send it.
  process.stdout.write(BRACKETED_PASTE_ON);
  const restore = () => process.stdout.write(BRACKETED_PASTE_OFF);
  process.once('exit', restore);
  const app = render(<ChatApp controller={controller} header={header} tokenDelayMs={tokenDelayMs} />, { exitOnCtrlC: false });
  try {
    await app.waitUntilExit();
  } finally {
    app.unmount();
    process.removeListener('exit', restore);
    restore();
  }
}

// The chat without a terminal (stdin or stdout piped) or with --prompt: one user message per input line, each
// reply streamed to stdout as plain text and ended by a newline; notices, errors and speed go to stderr. No
// escape codes, and Ink is never loaded.
import { createInterface } from 'node:readline';
import { UserError } from '../errors.js';
import type { ChatReply } from '../engine/chat-session.js';
import { stdoutWriter } from '../commands/stdout-writer.js';
import type { ChatController } from './chat-controller.js';
import { ReplyText } from './reply-text.js';
import { contextShiftNote, replySummary } from './reply-summary.js';

export type PlainChatSource = { prompt: string } | { input: NodeJS.ReadableStream };

const note = (text: string) => process.stderr.write(`${text}\n`);

async function streamReply(reply: ChatReply, print: (text: string) => void, contextSize: number, backend: string): Promise<void> {
  const text = new ReplyText();
  for await (const event of reply) {
    if (event.kind === 'text') print(text.push(event.text));
    else note(contextShiftNote(event.droppedTurns));
  }
  print('\n');
  note(`${backend}: ${replySummary(reply.stats, contextSize)}`);
}

/** Runs until the input ends, /exit, or Ctrl+C (which also stops a reply in progress, keeping its text). */
export async function runPlainChat(controller: ChatController, source: PlainChatSource): Promise<void> {
  const session = new AbortController();
  const print = stdoutWriter(session);
  let current: AbortController | null = null;
  const reader = 'input' in source ? createInterface({ input: source.input, crlfDelay: Infinity, terminal: false }) : null;
  session.signal.addEventListener('abort', () => {
    current?.abort();
    reader?.close();
  });
  const onSigint = () => session.abort(); // a second Ctrl+C kills as usual
  process.once('SIGINT', onSigint);
  const lines: AsyncIterable<string> | Iterable<string> = reader ?? [(source as { prompt: string }).prompt];
  const model = controller.session.model;
  try {
    for await (const line of lines) {
      if (session.signal.aborted) break;
      if (line.trim() === '') continue;
      current = new AbortController();
      const action = controller.handle(line, current.signal);
      if (action.kind === 'exit') break;
      if (action.kind === 'reply') await streamReply(action.reply, print, model.maxSeqLen, model.backend);
      else if (action.kind === 'error') {
        if (!reader) throw new UserError(action.message); // --prompt: the one message was refused
        note(`xllama: ${action.message}`);
      }
      else if (action.kind === 'loaded') note(action.message);
      else for (const l of action.lines) note(l);
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    reader?.close();
  }
}

// What a line typed into the chat does, for both front ends (the Ink screen and the plain line mode): a
// message starts a reply, a slash command acts on the session. Problems with the input (a message too long
// for the context, a transcript that does not parse, ...) come back as one-line errors; the session goes on.
import { isUserError } from '../errors.js';
import type { ChatReply, ChatSession } from '../engine/chat-session.js';
import { readTranscript, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION, writeTranscript } from '../engine/chat-transcript.js';
import { helpLines, parseChatInput, unknownCommandLine } from './slash-commands.js';

/** What the transcript records about how the conversation was made. */
export interface ChatSettings {
  model: string;
}

export type ChatAction =
  /** A reply to iterate; `user` is the message it answers (null when /regen replaces the last reply). */
  | { kind: 'reply'; reply: ChatReply; user: string | null }
  | { kind: 'info'; lines: string[] }
  | { kind: 'error'; message: string }
  /** /load replaced the conversation: show session.messages. */
  | { kind: 'loaded'; message: string }
  | { kind: 'exit' };

export class ChatController {
  constructor(readonly session: ChatSession, private readonly settings: ChatSettings) {}

  /** Acts on one input line; a reply starts only when the caller iterates it (abort it through `signal`). */
  handle(line: string, signal: AbortSignal): ChatAction {
    try {
      return this.act(line, signal);
    } catch (err) {
      if (isUserError(err)) return { kind: 'error', message: err.message };
      throw err;
    }
  }

  private act(line: string, signal: AbortSignal): ChatAction {
    const input = parseChatInput(line);
    const s = this.session;
    if (input.kind === 'message') return { kind: 'reply', reply: s.send(input.text, signal), user: input.text };
    const c = input.command;
    switch (c.name) {
      case 'reset':
        s.reset();
        return { kind: 'info', lines: [`conversation reset${s.system !== null ? ' (the system prompt stays)' : ''}`] };
      case 'system':
        s.setSystem(c.text);
        return { kind: 'info', lines: [s.system === null ? 'system prompt removed' : 'system prompt set'] };
      case 'save':
        writeTranscript(c.file, {
          format: TRANSCRIPT_FORMAT, version: TRANSCRIPT_VERSION, savedAt: new Date().toISOString(),
          model: this.settings.model, template: s.format.name, ...s.generationSettings, messages: s.messages,
        });
        return { kind: 'info', lines: [`saved ${s.messages.length} messages to ${c.file}`] };
      case 'load': {
        const loaded = readTranscript(c.file);
        s.load(loaded.system, loaded.turns);
        const from = loaded.model !== null && loaded.model !== this.settings.model ? ` (made with ${loaded.model})` : '';
        const left = s.turnCount - s.turnsInContext;
        const window = left > 0 ? `; the ${left} oldest turns do not fit the context` : '';
        return { kind: 'loaded', message: `loaded ${s.messages.length} messages from ${c.file}${from}${window}` };
      }
      case 'regen':
        return { kind: 'reply', reply: s.regenerate(signal), user: null };
      case 'help':
        return { kind: 'info', lines: helpLines() };
      case 'exit':
        return { kind: 'exit' };
      case 'usage':
        return { kind: 'error', message: c.message };
      case 'unknown':
        return { kind: 'error', message: unknownCommandLine(c.word) };
    }
  }
}

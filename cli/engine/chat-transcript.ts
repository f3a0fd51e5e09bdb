// The chat transcript file (/save, /load): the conversation as messages, with the model, template and sampling
// settings it was made with. Written whole or not at all; read strictly, every problem one line naming the
// file and the field.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { showValue, UserError } from '../errors.js';
import { readBoundedFile } from './bounded-file.js';
import type { ChatMessage } from './chat-template.js';
import type { ChatTurn } from './chat-session.js';
import type { SamplingParams } from './sampler.js';

export const TRANSCRIPT_FORMAT = 'xllama-chat';
export const TRANSCRIPT_VERSION = 1;
/** A long chat saves to a few MB; a file far past that is not a transcript (and /dev/zero never ends). */
const MAX_TRANSCRIPT_BYTES = 64 * 1024 * 1024;

export interface ChatTranscript {
  format: typeof TRANSCRIPT_FORMAT;
  version: typeof TRANSCRIPT_VERSION;
  savedAt: string;
  model: string;
  template: string;
  sampling: SamplingParams;
  seed: number;
  maxTokens: number | null;
  messages: ChatMessage[];
}

/** What a session needs back from a transcript. */
export interface LoadedConversation {
  system: string | null;
  turns: ChatTurn[];
  model: string | null;
}

/** Writes the transcript to a file next to `path`, then renames it over `path`: no half-written file. */
export function writeTranscript(path: string, transcript: ChatTranscript): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${JSON.stringify(transcript, null, 2)}\n`);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new UserError(`${path}: cannot write the transcript (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

export function readTranscript(path: string): LoadedConversation {
  const raw = readBoundedFile(path, { maxBytes: MAX_TRANSCRIPT_BYTES, noun: 'transcript', limitPhrase: 'a transcript may have' })
    .toString('utf8');
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    throw new UserError(`${path}: not a JSON transcript (${(err as Error).message})`);
  }
  return conversationFrom(data, path);
}

/** The conversation of a parsed transcript: messages alternate user/assistant after an optional system one. */
export function conversationFrom(data: unknown, path: string): LoadedConversation {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new UserError(`${path}: a transcript is a JSON object`);
  const t = data as Record<string, unknown>;
  if (t.format !== undefined && t.format !== TRANSCRIPT_FORMAT) {
    throw new UserError(`${path}: format is ${showValue(t.format)}, not "${TRANSCRIPT_FORMAT}"`);
  }
  if (t.version !== undefined && t.version !== TRANSCRIPT_VERSION) {
    throw new UserError(`${path}: transcript version ${showValue(t.version)} is not supported (this xllama reads ${TRANSCRIPT_VERSION})`);
  }
  if (!Array.isArray(t.messages)) throw new UserError(`${path}: "messages" must be a list of {role, content}`);
  const messages = t.messages as unknown[];
  let system: string | null = null;
  const turns: ChatTurn[] = [];
  messages.forEach((m, i) => {
    const at = `${path}: messages[${i}]`;
    if (typeof m !== 'object' || m === null) throw new UserError(`${at} must be an object with role and content`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof content !== 'string') throw new UserError(`${at}.content must be a string`);
    const offset = system === null ? i : i - 1;
    const expected = offset % 2 === 0 ? 'user' : 'assistant';
    if (role === 'system' && i === 0) system = content;
    else if (role === expected) {
      if (role === 'user') turns.push({ user: content, assistant: '' });
      else turns[turns.length - 1]!.assistant = content;
    } else {
      const allowed = i === 0 ? '"system" or "user"' : `"${expected}"`;
      throw new UserError(`${at}.role is ${showValue(role)}; expected ${allowed} (messages alternate user and assistant after an optional system message)`);
    }
  });
  const last = messages.length - (system === null ? 0 : 1);
  if (last % 2 === 1) throw new UserError(`${path}: the last message is the user's; a transcript ends with an assistant reply`);
  return { system, turns, model: typeof t.model === 'string' ? t.model : null };
}

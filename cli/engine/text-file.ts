// Reads UTF-8 text that a command is given — a file to evaluate (ppl -f), a prompt file or stdin
// (generate -f, -p -) — refusing what isn't text with a one-line error naming the file: missing, a folder,
// binary (a NUL byte or invalid UTF-8), or too large to tokenize; empty, unless the caller accepts it.
import { UserError } from '../errors.js';
import { formatBytes } from '../format.js';
import { readBoundedFile } from './bounded-file.js';

/** Larger texts are refused: tokenizing keeps every id in memory (WikiText-2's test split is 1.3 MB). */
export const MAX_TEXT_BYTES = 256 * 1024 * 1024;

export interface TextOptions {
  maxBytes?: number;
  /** Accept an empty (or whitespace-only) text: a prompt may be empty, a text to evaluate may not. */
  allowEmpty?: boolean;
}

/** `bytes` as text; `what` names the source in errors (a path, or "stdin"). */
export function decodeText(bytes: Uint8Array, what: string, { allowEmpty = false }: TextOptions = {}): string {
  if (bytes.length === 0 && !allowEmpty) throw new UserError(`${what}: the file is empty`);
  const nul = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(0);
  if (nul !== -1) throw new UserError(`${what}: not a text file (a NUL byte at offset ${nul})`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${what}: not a UTF-8 text file`);
  }
  if (text.trim().length === 0 && !allowEmpty) throw new UserError(`${what}: the file holds only whitespace`);
  return text;
}

export function readTextFile(path: string, { maxBytes = MAX_TEXT_BYTES, allowEmpty = false }: TextOptions = {}): string {
  const bytes = readBoundedFile(path, { maxBytes, noun: 'text file', limitPhrase: 'a text may have' });
  return decodeText(bytes, path, { allowEmpty });
}

/** All of stdin, until it ends (bounded like a file). */
export async function readStdinText({ maxBytes = MAX_TEXT_BYTES, allowEmpty = false }: TextOptions = {},
    stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += buf.length;
    if (total > maxBytes) {
      (stdin as NodeJS.ReadStream).destroy?.();
      throw new UserError(`stdin: more than the ${formatBytes(maxBytes)} a text may have`);
    }
    chunks.push(buf);
  }
  return decodeText(Buffer.concat(chunks), 'stdin', { allowEmpty });
}

// Reads a UTF-8 text file that a command evaluates (ppl -f), refusing what isn't one with a one-line error
// naming the file: missing, a folder, empty, binary (a NUL byte or invalid UTF-8), or too large to tokenize.
import { readFileSync, statSync } from 'node:fs';
import { UserError } from '../errors.js';
import { formatBytes } from '../format.js';

/** Larger texts are refused: tokenizing keeps every id in memory (WikiText-2's test split is 1.3 MB). */
export const MAX_TEXT_BYTES = 256 * 1024 * 1024;

export function readTextFile(path: string, maxBytes = MAX_TEXT_BYTES): string {
  let size: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new UserError(`${path}: is a folder, not a text file`);
    // A device or a pipe has no size to check (/dev/zero never ends).
    if (!st.isFile()) throw new UserError(`${path}: not a regular file`);
    size = st.size;
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`${path}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? (err as Error).message})`}`);
  }
  if (size > maxBytes) throw new UserError(`${path}: ${formatBytes(size)} is more than the ${formatBytes(maxBytes)} a text may have`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new UserError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (bytes.length === 0) throw new UserError(`${path}: the file is empty`);
  const nul = bytes.indexOf(0);
  if (nul !== -1) throw new UserError(`${path}: not a text file (a NUL byte at offset ${nul})`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${path}: not a UTF-8 text file`);
  }
  if (text.trim().length === 0) throw new UserError(`${path}: the file holds only whitespace`);
  return text;
}

// Text the user hands over as a file or on stdin (a prompt, a document): read whole, bounded in size,
// and checked to be UTF-8 text, each problem a one-line UserError naming the file or stdin.
import { readFileSync, statSync } from 'node:fs';
import { UserError } from '../errors.js';

/** Far more than any context holds; only here so that a wrong file can't take all the memory. */
export const MAX_TEXT_BYTES = 64 * 1024 * 1024;

function decodeText(bytes: Uint8Array, what: string): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${what} is not UTF-8 text`);
  }
  if (text.includes('\0')) throw new UserError(`${what} is not a text file (it holds NUL bytes)`);
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

/** A whole text file; `flag` names the option that gave it (e.g. "-f/--file"). */
export function readTextFile(path: string, flag: string): string {
  let size: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new UserError(`${flag}: ${path} is a folder, not a text file`);
    size = st.size;
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`${flag}: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (size > MAX_TEXT_BYTES) throw new UserError(`${flag}: ${path} is larger than ${MAX_TEXT_BYTES / 2 ** 20} MiB`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new UserError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
  return decodeText(bytes, `${flag}: ${path}`);
}

/** All of stdin, until it ends. */
export async function readStdinText(stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += buf.length;
    if (total > MAX_TEXT_BYTES) {
      (stdin as NodeJS.ReadStream).destroy?.();
      throw new UserError(`stdin: more than ${MAX_TEXT_BYTES / 2 ** 20} MiB of text`);
    }
    chunks.push(buf);
  }
  return decodeText(Buffer.concat(chunks), 'stdin');
}

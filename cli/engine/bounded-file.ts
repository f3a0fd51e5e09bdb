// Reads a whole file that must be a regular file of bounded size. A model folder from the internet may
// hold a link to /dev/zero, a FIFO or a file of many GB where a small JSON file belongs: each is refused
// in one line before more than the bound is read, instead of hanging or filling memory.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { UserError } from '../errors.js';
import { formatBytes } from '../format.js';

export interface FileBound {
  maxBytes: number;
  /** What the file should be, for "is a folder, not a …": "text file", "JSON file". */
  noun: string;
  /** Whose limit maxBytes is, for "… is more than the 16 MiB …": "a text may have". */
  limitPhrase: string;
}

function codeOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

export function readBoundedFile(path: string, { maxBytes, noun, limitPhrase }: FileBound): Buffer {
  let fd: number;
  try {
    // Non-blocking, so that opening a FIFO returns at once (to be refused below) rather than waiting for a writer.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = codeOf(err);
    throw new UserError(`${path}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${code})`}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new UserError(`${path}: is a folder, not a ${noun}`);
    if (!st.isFile()) throw new UserError(`${path}: not a regular file`);
    const tooLarge = (size: number) => new UserError(`${path}: ${formatBytes(size)} is more than the ${formatBytes(maxBytes)} ${limitPhrase}`);
    if (st.size > maxBytes) throw tooLarge(st.size);
    // Read to the end, not to st.size: the file may have grown since; a byte past the bound is enough to refuse it.
    const chunks: Buffer[] = [];
    let total = 0;
    let chunk = Buffer.allocUnsafe(Math.min(maxBytes + 1, st.size + 1));
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > maxBytes) throw tooLarge(total);
      chunk = Buffer.allocUnsafe(Math.min(maxBytes + 1 - total, 1 << 20));
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${path}: cannot read (${codeOf(err)})`);
  } finally {
    closeSync(fd);
  }
}

// readBoundedFile: a whole regular file of at most maxBytes, or a one-line UserError, without reading past the bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBoundedFile } from '../../cli/engine/bounded-file.js';
import { UserError } from '../../cli/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'xllama-bounded-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
const BOUND = { maxBytes: 10, noun: 'JSON file', limitPhrase: 'such a file may have' };

function refused(path: string, message: string, bound = BOUND): void {
  assert.throws(() => readBoundedFile(path, bound), (err: unknown) => err instanceof UserError && err.message === message);
}

test('a file up to the bound is read whole; one byte more is refused by its size', () => {
  const at = join(tmp, 'ten');
  writeFileSync(at, '0123456789');
  assert.equal(readBoundedFile(at, BOUND).toString(), '0123456789');
  const empty = join(tmp, 'empty');
  writeFileSync(empty, '');
  assert.equal(readBoundedFile(empty, BOUND).length, 0);
  const over = join(tmp, 'eleven');
  writeFileSync(over, '0123456789A');
  refused(over, `${over}: 11 B is more than the 10 B such a file may have`);
  // A sparse 3 GB file: refused from its size, before any of it is read.
  const huge = join(tmp, 'huge');
  writeFileSync(huge, '');
  truncateSync(huge, 3 * 1024 ** 3);
  refused(huge, `${huge}: 3.00 GiB is more than the 32.0 MiB a model folder's JSON file may have`,
    { maxBytes: 32 * 1024 * 1024, noun: 'JSON file', limitPhrase: 'a model folder\'s JSON file may have' });
});

test('a folder, a device, a FIFO, a missing path and a link loop are refused by what they are, at once', () => {
  refused(tmp, `${tmp}: is a folder, not a JSON file`);
  const zero = join(tmp, 'zero');
  symlinkSync('/dev/zero', zero);
  refused(zero, `${zero}: not a regular file`);
  // Opening a FIFO for reading would wait for a writer for ever; it must be refused without one.
  const fifo = join(tmp, 'fifo');
  execFileSync('mkfifo', [fifo]);
  refused(fifo, `${fifo}: not a regular file`);
  refused(join(tmp, 'absent'), `${join(tmp, 'absent')}: no such file`);
  const loop = join(tmp, 'loop');
  symlinkSync(loop, loop);
  refused(loop, `${loop}: cannot read (ELOOP)`);
});

// Every command ends quietly when the reader of its output goes away (`xllama ... | head`, `| true`).
// Without a listener, Node turns the EPIPE of the next write into an unhandled 'error' event: a stack
// trace and exit code 1. main installs this guard once, before any command runs; long work watches
// `outputClosed` to stop early (generate aborts, which frees the model and its GPU memory).
import { ExitCode } from './errors.js';

const closed = new AbortController();
let failed = false;
let installed = false;

/** Aborted once stdout can no longer be written: its reader closed it, or a write failed. */
export const outputClosed: AbortSignal = closed.signal;

/** True when a write to stdout failed for a reason other than a closed reader (a full disk, an I/O error). */
export function stdoutFailed(): boolean {
  return failed;
}

export function installStdoutGuard(): void {
  if (installed) return;
  installed = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && !failed) {
      // The reader is still there but the data was lost: that is a failure, said once, exit code 1.
      failed = true;
      process.stderr.write(`xllama: cannot write to stdout: ${err.message}\n`);
      process.exitCode = ExitCode.failure;
    }
    closed.abort();
  });
  // Nowhere is left to report a failed write to stderr; ignoring it keeps the exit code the command's.
  process.stderr.on('error', () => {});
}

/** Writes to stdout, or drops the text once stdout is closed. */
export function writeOut(text: string): void {
  if (text && !outputClosed.aborted) process.stdout.write(text);
}

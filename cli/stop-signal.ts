// How long work (a generation, a measurement loop) learns it should stop: on the first Ctrl+C (a second
// one kills the process as usual) or when stdout's reader goes away. The work stops cleanly, frees what
// it holds, and the command then throws Interrupted after a Ctrl+C so that xllama exits 130.
import { outputClosed } from './stdout-guard.js';

export interface WorkStop {
  readonly signal: AbortSignal;
  /** True once Ctrl+C (SIGINT) was the reason. */
  readonly interrupted: boolean;
  /** Removes the listeners; call it when the work is over. */
  dispose(): void;
}

export function stopOnInterruptOrClosedOutput(): WorkStop {
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    controller.abort();
  };
  const onClosed = () => controller.abort();
  process.once('SIGINT', onSigint);
  if (outputClosed.aborted) controller.abort();
  else outputClosed.addEventListener('abort', onClosed, { once: true });
  return {
    signal: controller.signal,
    get interrupted() {
      return interrupted;
    },
    dispose() {
      process.removeListener('SIGINT', onSigint);
      outputClosed.removeEventListener('abort', onClosed);
    },
  };
}

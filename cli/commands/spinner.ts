// An ora spinner on stderr, only when stderr is a terminal (piped runs and tests see nothing of it). A terminal
// that reports no width (some pseudo-terminals) gets none: ora would try to clear endless lines.
import ora, { type Ora } from 'ora';

export interface Spinner {
  setText(text: string): void;
  /** Runs `write`, which prints whole lines (to stdout or stderr), with the spinner out of their way. */
  above(write: () => void): void;
  stop(): void;
}

export function startSpinner(text: string): Spinner {
  if (!process.stderr.isTTY || !(process.stderr.columns > 0)) {
    return { setText: () => {}, above: (write) => write(), stop: () => {} };
  }
  let spinner: Ora | null = ora({ text, stream: process.stderr }).start();
  return {
    setText: (t) => {
      if (spinner) spinner.text = t;
    },
    above: (write) => {
      spinner?.clear();
      write();
      spinner?.render();
    },
    stop: () => {
      spinner?.stop();
      spinner = null;
    },
  };
}

/** `work`'s result, with a spinner showing `text` while it runs. */
export async function withSpinner<T>(text: string, work: () => Promise<T> | T): Promise<T> {
  const spinner = startSpinner(text);
  try {
    return await work();
  } finally {
    spinner.stop();
  }
}

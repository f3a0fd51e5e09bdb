// An ora spinner on stderr, only when stderr is a terminal (piped runs and tests see only the lines given to
// log()). A terminal that reports no width (some pseudo-terminals) gets none: ora would try to clear endless lines.
import ora, { type Ora } from 'ora';

export interface Spinner {
  setText(text: string): void;
  /** A line that stays, above the spinner; written plainly to stderr when there is no spinner. */
  log(line: string): void;
  stop(): void;
}

export function startSpinner(text: string): Spinner {
  if (!process.stderr.isTTY || !(process.stderr.columns > 0)) {
    return { setText: () => {}, log: (line) => process.stderr.write(`${line}\n`), stop: () => {} };
  }
  let spinner: Ora | null = ora({ text, stream: process.stderr }).start();
  return {
    setText: (t) => {
      if (spinner) spinner.text = t;
    },
    log: (line) => {
      spinner?.clear();
      process.stderr.write(`${line}\n`);
      spinner?.render();
    },
    stop: () => {
      spinner?.stop();
      spinner = null;
    },
  };
}

// A UserError is a problem with what the user gave us (a flag, a file, a model): main prints its
// message on one line, without a stack trace, and exits with its code (2 by default).

/** xllama's exit codes (README "Exit codes"): what shells and scripts see. */
export const ExitCode = {
  ok: 0,
  /** Something failed while running (an internal error, a write to stdout that failed). */
  failure: 1,
  /** Bad input: a flag, a file, a model folder. */
  badInput: 2,
  /** Stopped by Ctrl+C (128 + SIGINT, as shells report a process killed by it). */
  interrupted: 130,
} as const;

export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = ExitCode.badInput) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

/** Thrown once a command has stopped cleanly after Ctrl+C: main exits 130 and prints nothing more. */
export class Interrupted extends Error {
  readonly exitCode = ExitCode.interrupted;
  constructor() {
    super('interrupted');
    this.name = 'Interrupted';
  }
}

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

/**
 * A value read from a file, as JSON, for an error message: at most `max` characters, and never a throw of its own
 * (JSON.stringify recurses, so a list nested a few thousand deep overflows the stack).
 */
export function showValue(v: unknown, max = 60): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = Array.isArray(v) ? '[...]' : typeof v === 'object' && v !== null ? '{...}' : String(v);
  }
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
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

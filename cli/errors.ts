// A UserError is a problem with what the user gave us (a flag, a file, a model): main prints its
// message on one line, without a stack trace, and exits with its code (2 by default).
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

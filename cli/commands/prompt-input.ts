// Where generate's prompt comes from: -p TEXT; -p - or -f - (stdin); -f FILE; or stdin when it is not a
// terminal and neither flag is given (`echo TEXT | xllama generate`). Files and stdin lose one trailing
// newline, as llama.cpp's -f does, so a file holding "TEXT\n" prompts with "TEXT". No prompt at all (a
// terminal, no flag) and an empty one both mean: start from BOS.
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { readStdinText, readTextFile } from '../engine/text-file.js';

export interface PromptFlags {
  prompt?: string;
  file?: string;
}

export function addPromptOptions(cmd: Command): Command {
  return cmd
    .option('-p, --prompt <text>', "prompt text, '-' reads stdin (BOS is added as the model's tokenizer does; " +
      'empty: start from BOS)')
    .option('-f, --file <path>', "read the prompt from a file, '-' for stdin (default: stdin when it is piped)");
}

/** A prompt file's text as the prompt: without a leading byte-order mark or one final newline. */
function asPrompt(text: string): string {
  const t = text.startsWith('\uFEFF') ? text.slice(1) : text;
  if (t.endsWith('\r\n')) return t.slice(0, -2);
  return t.endsWith('\n') ? t.slice(0, -1) : t;
}

export async function promptTextFrom(flags: PromptFlags, stdinIsTerminal = Boolean(process.stdin.isTTY)): Promise<string> {
  if (flags.prompt !== undefined && flags.file !== undefined) {
    throw new UserError('-p/--prompt and -f/--file: give the prompt one way, not both');
  }
  if (flags.file !== undefined && flags.file !== '-') {
    try {
      return asPrompt(readTextFile(flags.file, { allowEmpty: true }));
    } catch (err) {
      throw err instanceof UserError ? new UserError(`-f/--file: ${err.message}`) : err;
    }
  }
  if (flags.prompt === '-' || flags.file === '-' || (flags.prompt === undefined && !stdinIsTerminal)) {
    return asPrompt(await readStdinText({ allowEmpty: true }));
  }
  return flags.prompt ?? '';
}

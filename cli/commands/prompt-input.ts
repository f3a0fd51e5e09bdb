// Where generate's prompt comes from: -p TEXT; -p - or -f - (stdin); -f FILE; or stdin when it is not a
// terminal and neither flag is given (`echo TEXT | xllama generate`). Files and stdin lose one trailing
// newline, as llama.cpp's -f does, so a file holding "TEXT\n" prompts with "TEXT". No prompt at all (a
// terminal, no flag) and an empty one both mean: start from BOS.
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { readStdinText, readTextFile } from './text-input.js';

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

function withoutFinalNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

export async function promptTextFrom(flags: PromptFlags, stdinIsTerminal = Boolean(process.stdin.isTTY)): Promise<string> {
  if (flags.prompt !== undefined && flags.file !== undefined) {
    throw new UserError('-p/--prompt and -f/--file: give the prompt one way, not both');
  }
  if (flags.file !== undefined && flags.file !== '-') return withoutFinalNewline(readTextFile(flags.file, '-f/--file'));
  if (flags.prompt === '-' || flags.file === '-' || (flags.prompt === undefined && !stdinIsTerminal)) {
    return withoutFinalNewline(await readStdinText());
  }
  return flags.prompt ?? '';
}

// The chat's slash commands: what a typed line means (a message or a command) and the help text. Shared by
// the Ink screen and the plain line mode.

export type SlashCommand =
  | { name: 'reset' }
  | { name: 'system'; text: string }
  | { name: 'save'; file: string }
  | { name: 'load'; file: string }
  | { name: 'regen' }
  | { name: 'help' }
  | { name: 'exit' }
  /** A known command used wrongly: the message says how to use it. */
  | { name: 'usage'; message: string }
  | { name: 'unknown'; word: string };

export type ChatInput = { kind: 'message'; text: string } | { kind: 'command'; command: SlashCommand };

export const COMMAND_HELP: readonly [string, string][] = [
  ['/reset', 'forget the conversation (the system prompt stays)'],
  ['/system TEXT', 'set the system prompt (/system alone removes it)'],
  ['/save FILE', 'save the transcript as JSON (messages, model, sampling settings)'],
  ['/load FILE', 'load a saved transcript'],
  ['/regen', 'replace the last reply with a new one'],
  ['/help', 'this help'],
  ['/exit', 'leave (also Ctrl+D, or Ctrl+C at an empty prompt)'],
];

export const KEY_HELP = 'Enter sends · Alt+Enter or a trailing \\ starts a new line · ↑/↓ earlier inputs · ' +
  'Ctrl+C stops a reply · //text sends a message starting with /';

/** The help, one command per line. */
export function helpLines(): string[] {
  const width = Math.max(...COMMAND_HELP.map(([usage]) => usage.length));
  return [...COMMAND_HELP.map(([usage, what]) => `${usage.padEnd(width)}  ${what}`), KEY_HELP];
}

const COMMAND_LIST = COMMAND_HELP.map(([usage]) => usage.split(' ')[0]).join(' ');

/** One line for an unknown command. */
export function unknownCommandLine(word: string): string {
  return `unknown command /${word}; commands: ${COMMAND_LIST} (/help says more)`;
}

/** A line starting with "/" and a letter is a command; "//" sends the rest, from its second "/", as a message. */
export function parseChatInput(line: string): ChatInput {
  const trimmed = line.trim();
  if (trimmed.startsWith('//')) return { kind: 'message', text: line.replace('//', '/') };
  const m = /^\/([A-Za-z][\w-]*)(?:\s+([\s\S]*))?$/.exec(trimmed);
  if (!m) return { kind: 'message', text: line };
  const word = m[1]!.toLowerCase();
  const arg = (m[2] ?? '').trim();
  const noArgs = (command: SlashCommand): SlashCommand =>
    (arg === '' ? command : { name: 'usage', message: `/${word} takes no arguments` });
  switch (word) {
    case 'reset':
    case 'clear':
      return { kind: 'command', command: noArgs({ name: 'reset' }) };
    case 'system':
      return { kind: 'command', command: { name: 'system', text: arg } };
    case 'save':
    case 'load':
      return {
        kind: 'command',
        command: arg === '' ? { name: 'usage', message: `usage: /${word} FILE` } : { name: word, file: arg },
      };
    case 'regen':
      return { kind: 'command', command: noArgs({ name: 'regen' }) };
    case 'help':
      return { kind: 'command', command: { name: 'help' } };
    case 'exit':
    case 'quit':
      return { kind: 'command', command: { name: 'exit' } };
    default:
      return { kind: 'command', command: { name: 'unknown', word: m[1]! } };
  }
}

// commander's usage errors in xllama's style: one line, no "error:" prefix, the suggestion kept on it.
//   commander: "error: unknown option '--temperatur'\n(Did you mean --temperature?)"
//   xllama:    "unknown option '--temperatur' (did you mean --temperature?)"
// With no close match, an unknown option or command points at the help that lists the valid ones.

export function usageErrorLine(commanderMessage: string, commandName?: string): string {
  let line = commanderMessage
    .replace(/^error:\s*/, '')
    .replace(/\n\(Did you mean/g, ' (did you mean')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  if (/^unknown (option|command)\b/.test(line) && !line.includes('(did you mean')) {
    line += ` (see xllama ${commandName ? `${commandName} ` : ''}--help)`;
  }
  return line;
}

// The input line(s): "› " and the text being written, the cursor drawn as an inverse cell. A long multi-line
// input shows the lines around the cursor so the live area stays shorter than the terminal.
import { Box, Text } from 'ink';
import type { EditorState } from './line-editor.js';

export interface PromptInputProps {
  state: EditorState;
  /** Most terminal rows the input may take. */
  maxRows: number;
  placeholder?: string;
}

function LineWithCursor({ text, cursor }: { text: string; cursor: number | null }) {
  if (cursor === null) return <Text>{text === '' ? ' ' : text}</Text>;
  const cp = text.codePointAt(cursor);
  const ch = cp === undefined ? ' ' : String.fromCodePoint(cp);
  return (
    <Text>
      {text.slice(0, cursor)}
      <Text inverse>{ch}</Text>
      {text.slice(cursor + (cp === undefined ? 0 : ch.length))}
    </Text>
  );
}

export function PromptInput({ state, maxRows, placeholder }: PromptInputProps) {
  const lines = state.text.split('\n');
  let cursorLine = 0;
  let offset = 0;
  while (cursorLine < lines.length - 1 && offset + lines[cursorLine]!.length < state.cursor) {
    offset += lines[cursorLine]!.length + 1;
    cursorLine++;
  }
  const visible = Math.max(1, maxRows - 1);
  const first = lines.length <= maxRows ? 0 : Math.max(0, Math.min(cursorLine - visible + 1, lines.length - visible));
  const last = lines.length <= maxRows ? lines.length : first + visible;
  const hidden = lines.length - (last - first);
  return (
    <Box flexDirection="column">
      {hidden > 0 ? <Text dimColor>  … {hidden} more line{hidden === 1 ? '' : 's'} ({lines.length} in all)</Text> : null}
      {lines.slice(first, last).map((line, k) => {
        const i = first + k;
        return (
          <Box key={i}>
            <Text color="cyan" bold>{i === 0 ? '› ' : '  '}</Text>
            <Box flexGrow={1}>
              {state.text === '' && placeholder
                ? <Text><Text inverse> </Text><Text dimColor>{placeholder}</Text></Text>
                : <LineWithCursor text={line} cursor={i === cursorLine ? state.cursor - offset : null} />}
            </Box>
          </Box>
        );
      })}
    </Box>
  );
}

// The line under the conversation: while a reply streams, its token count and speed; after it, tokens/s of the
// reply, time to first token and what was prefilled, and always the context used out of the model's context
// (a small meter) plus any notice (context shift, a stopped reply). Least important parts go first when narrow.
import { Box, Text } from 'ink';
import type { ReplyStats } from '../../engine/chat-session.js';
import { formatCount, formatMs, formatRate, prefillWords } from '../../chat/reply-summary.js';
import { barParts } from '../sparkline.js';
import { fitSegments, SEPARATOR, type Segment } from './segments.js';

export interface StatusNote {
  text: string;
  tone: 'warn' | 'info';
}

export interface StatusLineProps {
  columns: number;
  contextUsed: number;
  contextSize: number;
  /** While a reply streams: its tokens so far and their rate. */
  live: { tokens: number; tokensPerSec: number } | null;
  /** The last finished reply. */
  last: ReplyStats | null;
  note: StatusNote | null;
}

const METER_CELLS = 10;

interface StatusSegment extends Segment {
  kind: 'note' | 'meter' | 'plain' | 'hint';
}

function meterColour(fraction: number): string {
  if (fraction >= 0.9) return 'red';
  if (fraction >= 0.7) return 'yellow';
  return 'green';
}

export function statusSegments(p: Omit<StatusLineProps, 'columns'>): StatusSegment[] {
  const bar = '█'.repeat(METER_CELLS);
  const meter = `context ${bar} ${formatCount(p.contextUsed)}/${formatCount(p.contextSize)}`;
  const segments: StatusSegment[] = [];
  // A warning (the context shifted or filled) always shows; other notes give way first.
  if (p.note) segments.push({ kind: 'note', text: p.note.text, priority: p.note.tone === 'warn' ? 0 : 6 });
  if (p.live) {
    segments.push({ kind: 'plain', text: `replying… ${formatCount(p.live.tokens)} tokens`, priority: 1 });
    if (p.live.tokens > 1) segments.push({ kind: 'plain', text: `${formatRate(p.live.tokensPerSec)} tok/s`, priority: 2 });
    segments.push({ kind: 'meter', text: meter, priority: 3 });
    segments.push({ kind: 'hint', text: 'Ctrl+C stops', priority: 4 });
  } else if (p.last) {
    const s = p.last;
    segments.push({ kind: 'plain', text: `${formatRate(s.tokensPerSec)} tok/s`, priority: 2 });
    segments.push({ kind: 'plain', text: `first token ${formatMs(s.timeToFirstTokenMs)}`, priority: 3 });
    segments.push({ kind: 'plain', text: prefillWords(s), priority: 5 });
    segments.push({ kind: 'meter', text: meter, priority: 1 });
  } else {
    segments.push({ kind: 'meter', text: meter, priority: 1 });
    segments.push({ kind: 'hint', text: '/help for commands', priority: 4 });
  }
  return segments;
}

export function StatusLine(props: StatusLineProps) {
  const { columns, contextUsed, contextSize, note } = props;
  const fraction = contextSize > 0 ? Math.min(1, contextUsed / contextSize) : 0;
  const { filled, empty } = barParts(fraction * 100, METER_CELLS);
  const shown = fitSegments(statusSegments(props), columns);
  return (
    <Box>
      <Text wrap="truncate">
        {shown.map((s, i) => {
          const sep = i > 0 ? <Text dimColor>{SEPARATOR}</Text> : null;
          let body;
          if (s.kind === 'meter') {
            body = (
              <Text>
                <Text dimColor>context </Text>
                <Text color={meterColour(fraction)}>{filled}</Text>
                <Text dimColor>{empty}</Text>
                <Text> {formatCount(contextUsed)}/{formatCount(contextSize)}</Text>
              </Text>
            );
          } else if (s.kind === 'note') {
            body = <Text color={note?.tone === 'warn' ? 'yellow' : 'cyan'}>{s.text}</Text>;
          } else {
            body = <Text dimColor={s.kind === 'hint'}>{s.text}</Text>;
          }
          return <Text key={i}>{sep}{body}</Text>;
        })}
      </Text>
    </Box>
  );
}

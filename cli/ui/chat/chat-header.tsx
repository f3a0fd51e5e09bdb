// The chat's header, printed once at the top of the scrollback: the model, its quantization, the backend and
// GPU(s), the context size, then the template and sampling settings, then the keys. Wraps between its parts.
import { Box, Text } from 'ink';
import type { ChatHeaderInfo } from '../../chat/header-info.js';
import { packSegments, SEPARATOR } from './segments.js';

interface Part {
  text: string;
  style?: 'title' | 'name' | 'dim';
}

function Line({ parts }: { parts: Part[] }) {
  return (
    <Text>
      {parts.map((p, i) => (
        <Text key={i}>
          {i > 0 ? <Text dimColor>{SEPARATOR}</Text> : null}
          <Text bold={p.style === 'title' || p.style === 'name'} color={p.style === 'title' ? 'cyan' : undefined}
            dimColor={p.style === 'dim'}>{p.text}</Text>
        </Text>
      ))}
    </Text>
  );
}

export function ChatHeader({ info, columns }: { info: ChatHeaderInfo; columns: number }) {
  const model: Part[] = [
    { text: 'xllama chat', style: 'title' },
    { text: info.model, style: 'name' },
    { text: info.quantization },
    { text: info.gpus.length > 0 ? `${info.backend} (${info.gpus.join(', ')})` : info.backend },
    { text: `context ${info.contextSize.toLocaleString('en-US')}` },
  ];
  const settings: Part[] = [
    { text: `template ${info.template}` },
    { text: info.sampling },
    { text: `seed ${info.seed}` },
  ];
  if (info.maxTokens !== null) settings.push({ text: `at most ${info.maxTokens} tokens a reply` });
  const keys: Part[] = ['/help for commands', 'Enter sends', 'Ctrl+C stops a reply', 'Ctrl+D exits'].map((text) => ({ text, style: 'dim' }));
  const lines = [model, settings, keys].flatMap((parts) => packSegments(parts, columns));
  return (
    <Box flexDirection="column" marginBottom={1}>
      {lines.map((parts, i) => <Line key={i} parts={parts} />)}
      {info.system !== null ? <Text dimColor wrap="truncate-end">system: {info.system.replace(/\s+/g, ' ')}</Text> : null}
    </Box>
  );
}

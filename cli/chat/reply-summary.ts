// How a finished reply is reported: its speed, the prompt tokens prefilled and reused from the KV cache, the
// context used, and why it stopped. Words shared by the status line and the plain mode's stderr line.
import type { ReplyStats } from '../engine/chat-session.js';
import { formatTokens } from '../format.js';

export const formatCount = (n: number) => n.toLocaleString('en-US');
export const formatRate = (perSec: number) => perSec.toLocaleString('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
export const formatMs = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);

const STOP_WORDS: Record<string, string> = {
  eos: 'end of turn', 'stop-string': 'end of turn', length: '--max-tokens reached', context: 'context full', abort: 'stopped',
};

export function stopWords(reason: ReplyStats['stopReason']): string {
  return reason === null ? 'failed' : STOP_WORDS[reason] ?? reason;
}

/** "23 prefilled, 412 from the cache". */
export function prefillWords(s: ReplyStats): string {
  return `${formatCount(s.promptTokens - s.cachedPromptTokens)} prefilled, ${formatCount(s.cachedPromptTokens)} from the cache`;
}

export function contextShiftNote(droppedTurns: number): string {
  return droppedTurns === 1 ? 'context full: the oldest turn left the context'
    : `context full: the ${droppedTurns} oldest turns left the context`;
}

/** One line: reply length and speed, first-token time, the prompt's tokens, context use and the stop reason. */
export function replySummary(s: ReplyStats, contextSize: number): string {
  const dropped = s.droppedTurns > 0 ? `; ${contextShiftNote(s.droppedTurns)}` : '';
  // The rate times the steps after the first token; a reply of fewer than two tokens had none.
  const rate = s.generatedTokens > 1 ? `, ${formatRate(s.tokensPerSec)} tok/s` : '';
  return `reply ${formatTokens(s.generatedTokens)}${rate}; ` +
    `first token after ${formatMs(s.timeToFirstTokenMs)}; prompt ${formatTokens(s.promptTokens)} (${prefillWords(s)}); ` +
    `context ${formatCount(s.contextUsed)}/${formatCount(contextSize)}; stop: ${stopWords(s.stopReason)}${dropped}`;
}

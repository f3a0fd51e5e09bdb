// The reply's summary line: counts in words, and a rate only where a step after the first token was timed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replySummary } from '../../cli/chat/reply-summary.js';
import type { ReplyStats } from '../../cli/engine/chat-session.js';

const stats = (over: Partial<ReplyStats>): ReplyStats => ({
  promptTokens: 12, cachedPromptTokens: 4, generatedTokens: 30, timeToFirstTokenMs: 2.5, tokensPerSec: 1234.5,
  stopReason: 'length', droppedTurns: 0, contextUsed: 42, ...over,
});

test('a reply of many tokens shows its rate and plural counts', () => {
  assert.equal(replySummary(stats({}), 512),
    'reply 30 tokens, 1,234.5 tok/s; first token after 2.5 ms; prompt 12 tokens (8 prefilled, 4 from the cache); ' +
    'context 42/512; stop: --max-tokens reached');
});

test('a reply of one token has no rate (no step after the first) and says "1 token"', () => {
  const line = replySummary(stats({ generatedTokens: 1, tokensPerSec: 0, promptTokens: 1, cachedPromptTokens: 0 }), 512);
  assert.equal(line, 'reply 1 token; first token after 2.5 ms; prompt 1 token (1 prefilled, 0 from the cache); ' +
    'context 42/512; stop: --max-tokens reached');
});

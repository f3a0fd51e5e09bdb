// ChatSession on the real stories260K checkpoint and the CPU backend: the KV cache reused across turns is
// exact (turn 2's greedy reply equals generate() over the whole rendered history from an empty cache, same
// ids), the context window drops the oldest turns and keeps the system prompt, refused and stopped turns
// leave the conversation as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PLAIN_TEMPLATE, ChatTemplate, type ChatMessage } from '../../cli/engine/chat-template.js';
import { ChatSession, type ChatEvent, type ChatReply } from '../../cli/engine/chat-session.js';
import { resolveChatFormat } from '../../cli/engine/chat-templates.js';
import { generate, cachedPrefixLength } from '../../cli/engine/generate.js';
import type { SamplingParams } from '../../cli/engine/sampler.js';
import { UserError } from '../../cli/errors.js';
import { storiesTokenizer } from '../engine/fixture-tokenizers.js';
import { openModel } from '../cpu/reference.js';

const GREEDY: SamplingParams = {
  temperature: 0, topK: 0, topP: 1, minP: 0, typicalP: 1, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
};
const tok = storiesTokenizer();
const plain = () => resolveChatFormat(tok, { modelName: 'stories260K', source: 'test' });

async function drain(reply: ChatReply): Promise<ChatEvent[]> {
  const events: ChatEvent[] = [];
  for await (const e of reply) events.push(e);
  return events;
}

/** The ids a rendered conversation becomes, built here from the template and the tokenizer directly. */
function renderedIds(messages: ChatMessage[]): number[] {
  const text = new ChatTemplate(PLAIN_TEMPLATE, tok, 'plain').render(messages);
  return tok.encode(text, { addSpecial: true });
}

test('turn 2 reuses the cache and its greedy reply equals generate over the whole rendered history', async () => {
  const model = await openModel('stories260K');
  const fresh = await openModel('stories260K');
  try {
    const session = new ChatSession(model, tok, { format: plain(), sampling: GREEDY, seed: 5, maxTokens: 24, system: 'A story.' });
    const r1 = session.send('Tell me about a cat.');
    await drain(r1);
    assert.ok(r1.text.trim().length > 0);
    assert.equal(r1.stats.cachedPromptTokens, 0);
    const cachedBefore = [...model.cachedTokens];

    const r2 = session.send('And then?');
    const captured: string[] = [];
    for await (const e of r2) if (e.kind === 'text') captured.push(e.text);
    const history: ChatMessage[] = [
      { role: 'system', content: 'A story.' },
      { role: 'user', content: 'Tell me about a cat.' }, { role: 'assistant', content: r1.text.trim() },
      { role: 'user', content: 'And then?' },
    ];
    const ids = renderedIds(history);
    assert.equal(r2.stats.promptTokens, ids.length);
    // Only the tokens after the prefix the cache held were prefilled.
    const reused = cachedPrefixLength(cachedBefore, ids);
    assert.ok(reused > 10, `reused ${reused} tokens`);
    assert.equal(r2.stats.cachedPromptTokens, reused);
    assert.deepEqual(model.cachedTokens.slice(0, ids.length), ids);

    // The same prompt from an empty cache, through the plain generation loop.
    const reference = generate(fresh, tok, ids, { maxTokens: 24, sampling: GREEDY, seed: 0, stop: ['\nUser:'] });
    let text = '';
    for await (const t of reference) text += t.text;
    assert.deepEqual(model.cachedTokens.slice(ids.length), reference.generatedIds.slice(0, -1));
    assert.equal(r2.stats.generatedTokens, reference.generatedIds.length);
    assert.equal(captured.join(''), text);
    assert.equal(r2.text, text);
    assert.deepEqual(session.messages.slice(0, 4), history);
    assert.equal(session.messages[4]!.content, text.trim());
  } finally {
    model.close();
    fresh.close();
  }
});

test('a full context drops the oldest turns before a reply and keeps the system prompt', async () => {
  const model = await openModel('stories260K', { maxSeqLen: 96 });
  try {
    const session = new ChatSession(model, tok, { format: plain(), sampling: GREEDY, seed: 1, maxTokens: 12, system: 'Be kind.' });
    let dropped = 0;
    for (let i = 0; i < 6; i++) {
      const reply = session.send(`Message number ${i} about a dog and a ball.`);
      await drain(reply);
      dropped += reply.stats.droppedTurns;
      assert.ok(reply.stats.promptTokens + reply.stats.generatedTokens <= 96);
      assert.ok(reply.stats.contextUsed <= 96);
    }
    assert.ok(dropped > 0, 'some turns left the context');
    assert.equal(session.turnCount, 6);
    assert.equal(session.turnsInContext, 6 - dropped);
    // The transcript keeps every turn; the cache holds the system prompt and the newest turns.
    assert.equal(session.messages.length, 1 + 12);
    const cachedText = tok.decode(model.cachedTokens);
    assert.ok(cachedText.startsWith('Be kind.'), cachedText);
    assert.ok(cachedText.includes('Message number 5'));
    assert.ok(!cachedText.includes('Message number 0'));
  } finally {
    model.close();
  }
});

test('a reply that fills the context goes on after the oldest turns leave it', async () => {
  const model = await openModel('stories260K', { maxSeqLen: 80 });
  try {
    const session = new ChatSession(model, tok, { format: plain(), sampling: GREEDY, seed: 1, maxTokens: null, system: 'Hi.' });
    session.load('Hi.', [{ user: 'One.', assistant: 'Yes.' }]);
    const reply = session.send('Two.');
    const events = await drain(reply);
    assert.equal(reply.stats.cachedPromptTokens, 0);
    assert.deepEqual(events.filter((e) => e.kind === 'context-shift'), [{ kind: 'context-shift', droppedTurns: 1 }]);
    assert.equal(reply.stats.droppedTurns, 1);
    // No limit and stories260K rarely ends a turn: it ran to the end of the context, twice.
    assert.equal(reply.stats.stopReason, 'context');
    assert.ok(reply.stats.generatedTokens > 80 - reply.stats.promptTokens, `${reply.stats.generatedTokens} tokens`);
    // After the shift the cache holds the system prompt and this turn, then the reply as generated.
    const prompt = renderedIds([{ role: 'system', content: 'Hi.' }, { role: 'user', content: 'Two.' }]);
    assert.deepEqual(model.cachedTokens.slice(0, prompt.length), prompt);
    assert.equal(model.cacheLength, 80);
    assert.equal(session.turnsInContext, 1);
    assert.equal(session.turnCount, 2);
  } finally {
    model.close();
  }
});

test('a message longer than the context is refused in one line; the session goes on', async () => {
  const model = await openModel('stories260K', { maxSeqLen: 64 });
  try {
    const session = new ChatSession(model, tok, { format: plain(), sampling: GREEDY, seed: 1, maxTokens: 8 });
    await drain(session.send('Hello.'));
    const long = 'the dog ran to the park and '.repeat(20);
    assert.throws(() => session.send(long), (err: unknown) => err instanceof UserError &&
      /^the message is \d+ tokens, longer than the whole context \(64 tokens\); it was not sent$/.test(err.message));
    const edge = 'a b c d e f g h i j k l m n o p q r s t u v w x y z a b c d e f g h i j k l m n o p q';
    assert.throws(() => session.send(edge), /leaves no room for a reply in the 64-token context; it was not sent/);
    assert.equal(session.turnCount, 1);
    const reply = session.send('Bye.');
    await drain(reply);
    assert.equal(session.turnCount, 2);
  } finally {
    model.close();
  }
});

test('stopping a reply keeps what it said; stopping it before it says anything drops the turn', async () => {
  const model = await openModel('stories260K');
  try {
    const session = new ChatSession(model, tok, { format: plain(), sampling: GREEDY, seed: 1, maxTokens: 100 });
    const abort = new AbortController();
    const reply = session.send('Tell me a story.', abort.signal);
    let n = 0;
    for await (const e of reply) if (e.kind === 'text' && e.text.trim() && ++n === 5) abort.abort();
    assert.equal(reply.stats.stopReason, 'abort');
    assert.ok(reply.stats.generatedTokens >= 5 && reply.stats.generatedTokens < 100);
    assert.equal(session.messages[1]!.content, reply.text.trim());

    const early = new AbortController();
    early.abort();
    const none = session.send('Another?', early.signal);
    await drain(none);
    assert.equal(none.discarded, true);
    assert.equal(session.turnCount, 1);

    // /regen stopped early brings the old reply back; run through, it replaces it.
    const kept = session.messages[1]!.content;
    const stopped = session.regenerate(early.signal);
    await drain(stopped);
    assert.equal(session.messages[1]!.content, kept);
    const again = session.regenerate();
    await drain(again);
    assert.equal(session.turnCount, 1);
    assert.ok(again.stats.generatedTokens > 5);
    assert.equal(session.messages[1]!.content, again.text.trim());
  } finally {
    model.close();
  }
});

test('sampled replies: each generation takes the next seed, so /regen gives another reply', async () => {
  const model = await openModel('stories260K');
  try {
    const sampling = { ...GREEDY, temperature: 1 };
    const run = async () => {
      const session = new ChatSession(model, tok, { format: plain(), sampling, seed: 42, maxTokens: 30 });
      const a = session.send('Hi.');
      await drain(a);
      const b = session.regenerate();
      await drain(b);
      return [a.text, b.text];
    };
    const [a1, b1] = await run();
    const [a2, b2] = await run();
    assert.equal(a1, a2, 'same seed, same first reply');
    assert.equal(b1, b2, 'same seed, same regenerated reply');
    assert.notEqual(a1, b1, 'the regenerated reply used another seed');
  } finally {
    model.close();
  }
});

test('system prompts: set, removed, refused by a template without a system role', async () => {
  const model = await openModel('stories260K');
  try {
    const session = new ChatSession(model, tok, { format: plain(), sampling: GREEDY, seed: 1, maxTokens: 4 });
    session.setSystem('Be brief.');
    assert.deepEqual(session.messages, [{ role: 'system', content: 'Be brief.' }]);
    session.setSystem('  ');
    assert.equal(session.system, null);
    const mistral = resolveChatFormat(tok, { template: 'mistral', modelName: 'x', source: 'x' });
    assert.throws(() => new ChatSession(model, tok, { format: mistral, sampling: GREEDY, seed: 1, maxTokens: 4, system: 'Be brief.' }),
      /^UserError: the chat template refuses a system prompt: built-in mistral template: chat template: Conversation roles must alternate/);
  } finally {
    model.close();
  }
});

// Slash commands, the controller both chat front ends share, and the transcript file of /save and /load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseChatInput, helpLines } from '../../cli/chat/slash-commands.js';
import { ChatController } from '../../cli/chat/chat-controller.js';
import { ChatSession } from '../../cli/engine/chat-session.js';
import { resolveChatFormat } from '../../cli/engine/chat-templates.js';
import { conversationFrom, readTranscript } from '../../cli/engine/chat-transcript.js';
import type { SamplingParams } from '../../cli/engine/sampler.js';
import { storiesTokenizer } from '../engine/fixture-tokenizers.js';
import { openModel } from '../cpu/reference.js';

const GREEDY: SamplingParams = {
  temperature: 0, topK: 0, topP: 1, minP: 0, typicalP: 1, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
};

test('input lines: messages, commands with their arguments, // escapes a leading slash', () => {
  assert.deepEqual(parseChatInput('Hello /there'), { kind: 'message', text: 'Hello /there' });
  assert.deepEqual(parseChatInput('//etc/passwd is a file'), { kind: 'message', text: '/etc/passwd is a file' });
  assert.deepEqual(parseChatInput('/ not a command'), { kind: 'message', text: '/ not a command' });
  assert.deepEqual(parseChatInput(' /reset '), { kind: 'command', command: { name: 'reset' } });
  assert.deepEqual(parseChatInput('/system You are\na pirate.'), { kind: 'command', command: { name: 'system', text: 'You are\na pirate.' } });
  assert.deepEqual(parseChatInput('/system'), { kind: 'command', command: { name: 'system', text: '' } });
  assert.deepEqual(parseChatInput('/save my chat.json'), { kind: 'command', command: { name: 'save', file: 'my chat.json' } });
  assert.deepEqual(parseChatInput('/load'), { kind: 'command', command: { name: 'usage', message: 'usage: /load FILE' } });
  assert.deepEqual(parseChatInput('/regen now'), { kind: 'command', command: { name: 'usage', message: '/regen takes no arguments' } });
  assert.deepEqual(parseChatInput('/QUIT'), { kind: 'command', command: { name: 'exit' } });
  assert.deepEqual(parseChatInput('/frobnicate x'), { kind: 'command', command: { name: 'unknown', word: 'frobnicate' } });
  const help = helpLines();
  for (const c of ['/reset', '/system TEXT', '/save FILE', '/load FILE', '/regen', '/help', '/exit']) {
    assert.ok(help.some((l) => l.startsWith(c)), c);
  }
});

test('transcripts are read strictly: each problem is one line naming the file and the field', () => {
  const ok = conversationFrom({ messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }, { role: 'assistant', content: 'A' }] }, 'f.json');
  assert.deepEqual(ok, { system: 'S', turns: [{ user: 'U', assistant: 'A' }], model: null });
  const bad: [unknown, RegExp][] = [
    [[], /^f\.json: a transcript is a JSON object$/],
    [{ messages: 3 }, /^f\.json: "messages" must be a list of \{role, content\}$/],
    [{ format: 'other', messages: [] }, /^f\.json: format is "other", not "xllama-chat"$/],
    [{ version: 9, messages: [] }, /^f\.json: transcript version 9 is not supported/],
    [{ messages: [{ role: 'user', content: 1 }] }, /^f\.json: messages\[0\]\.content must be a string$/],
    [{ messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] }, /^f\.json: messages\[1\]\.role is "user"; expected "assistant"/],
    [{ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'system', content: 'c' }] },
      /^f\.json: messages\[2\]\.role is "system"; expected "user"/],
    [{ messages: [{ role: 'bot', content: 'a' }] }, /^f\.json: messages\[0\]\.role is "bot"; expected "system" or "user"/],
    [{ messages: [{ role: 'user', content: 'a' }] }, /^f\.json: the last message is the user's/],
  ];
  for (const [data, message] of bad) assert.throws(() => conversationFrom(data, 'f.json'), (e: unknown) => message.test((e as Error).message), String(message));
  const dir = mkdtempSync(join(tmpdir(), 'xllama-transcript-'));
  try {
    assert.throws(() => readTranscript(join(dir, 'none.json')), /none\.json: no such file$/);
    assert.throws(() => readTranscript('/dev/zero'), /: \/dev\/zero: not a regular file$/); // not read until memory runs out
    writeFileSync(join(dir, 'broken.json'), '{"messages": [');
    assert.throws(() => readTranscript(join(dir, 'broken.json')), /broken\.json: not a JSON transcript/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the controller: /save then /load round-trips the conversation; bad commands are one line each', async () => {
  const tok = storiesTokenizer();
  const model = await openModel('stories260K');
  const dir = mkdtempSync(join(tmpdir(), 'xllama-chat-'));
  try {
    const format = resolveChatFormat(tok, { modelName: 'stories260K', source: 'x' });
    const session = new ChatSession(model, tok, { format, sampling: GREEDY, seed: 3, maxTokens: 10, system: 'Be short.' });
    const c = new ChatController(session, { model: 'fixtures/models/stories260K' });
    const signal = new AbortController().signal;
    const a = c.handle('Hello!', signal);
    assert.equal(a.kind, 'reply');
    if (a.kind === 'reply') for await (const _ of a.reply);
    const file = join(dir, 'chat.json');
    assert.deepEqual(c.handle(`/save ${file}`, signal), { kind: 'info', lines: [`saved 3 messages to ${file}`] });
    assert.deepEqual(readdirSync(dir), ['chat.json'], 'no temporary file left');
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(saved.format, 'xllama-chat');
    assert.equal(saved.model, 'fixtures/models/stories260K');
    assert.equal(saved.template, 'plain');
    assert.deepEqual(saved.sampling, GREEDY);
    assert.equal(saved.seed, 3);
    assert.equal(saved.maxTokens, 10);
    assert.deepEqual(saved.messages, session.messages);

    assert.deepEqual(c.handle('/reset', signal), { kind: 'info', lines: ['conversation reset (the system prompt stays)'] });
    assert.deepEqual(session.messages, [{ role: 'system', content: 'Be short.' }]);
    assert.deepEqual(c.handle('/system', signal), { kind: 'info', lines: ['system prompt removed'] });
    const loaded = c.handle(`/load ${file}`, signal);
    assert.deepEqual(loaded, { kind: 'loaded', message: `loaded 3 messages from ${file}` });
    assert.deepEqual(session.messages, saved.messages);

    assert.deepEqual(c.handle('/bogus', signal), { kind: 'error',
      message: 'unknown command /bogus; commands: /reset /system /save /load /regen /help /exit (/help says more)' });
    const missing = c.handle(`/load ${join(dir, 'nope.json')}`, signal);
    assert.equal(missing.kind, 'error');
    assert.deepEqual(session.messages, saved.messages, 'a failed /load leaves the conversation');
    const unwritable = c.handle(`/save ${join(dir, 'no-such-dir', 'x.json')}`, signal);
    assert.equal(unwritable.kind, 'error');
    assert.ok(!existsSync(join(dir, 'no-such-dir')));
    assert.deepEqual(c.handle('/exit', signal), { kind: 'exit' });
    const regen = c.handle('/regen', signal);
    assert.equal(regen.kind, 'reply');
    if (regen.kind === 'reply') {
      assert.equal(regen.user, null);
      for await (const _ of regen.reply);
    }
  } finally {
    model.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

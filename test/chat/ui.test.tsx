// The chat's Ink components with ink-testing-library: the header and status line at 80 and 160 columns, the
// input box, and the whole screen driving a real ChatSession (stories260K on the CPU) through typed keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ReactElement } from 'react';
import { render as inkRender } from 'ink';
import { render } from 'ink-testing-library';
import { ChatHeader } from '../../cli/ui/chat/chat-header.js';
import { StatusLine } from '../../cli/ui/chat/status-line.js';
import { PromptInput } from '../../cli/ui/chat/prompt-input.js';
import { ChatApp } from '../../cli/ui/chat/chat-app.js';
import { emptyEditor } from '../../cli/ui/chat/line-editor.js';
import { textWidth } from '../../cli/ui/chat/wrap-rows.js';
import { ChatController } from '../../cli/chat/chat-controller.js';
import type { ChatHeaderInfo } from '../../cli/chat/header-info.js';
import { ChatSession, type ReplyStats } from '../../cli/engine/chat-session.js';
import { resolveChatFormat } from '../../cli/engine/chat-templates.js';
import type { SamplingParams } from '../../cli/engine/sampler.js';
import { storiesTokenizer } from '../engine/fixture-tokenizers.js';
import { openModel } from '../cpu/reference.js';

const ANSI = /\x1b\[[0-9;]*m/g;
const plainText = (frame: string | undefined) => (frame ?? '').replace(ANSI, '');
const widest = (frame: string | undefined) => Math.max(...plainText(frame).split('\n').map(textWidth));

/** A static component's frame on a terminal `columns` wide (ink-testing-library's is always 100). */
function frameAt(tree: ReactElement, columns: number): string {
  const frames: string[] = [];
  const stdout = Object.assign(new EventEmitter(), { columns, write: (f: string) => frames.push(f) });
  const stdin = Object.assign(new EventEmitter(), { isTTY: false, setEncoding() {}, setRawMode() {}, resume() {}, pause() {}, ref() {}, unref() {}, read: () => null });
  const app = inkRender(tree, { stdout: stdout as unknown as NodeJS.WriteStream, stdin: stdin as unknown as NodeJS.ReadStream,
    debug: true, exitOnCtrlC: false, patchConsole: false });
  app.unmount();
  return frames.at(-1) ?? '';
}

const HEADER: ChatHeaderInfo = {
  model: 'Llama-2-13B-chat-GPTQ', quantization: 'GPTQ 4-bit g128 act-order', backend: 'cuda', gpus: ['NVIDIA H100 80GB HBM3'],
  contextSize: 4096, template: 'llama-2 (guessed from the folder name)', sampling: 'temperature 0.8, top-k 40, top-p 0.95, min-p 0.05',
  seed: 1234, maxTokens: null, system: 'You are a helpful assistant.',
};

const STATS: ReplyStats = {
  promptTokens: 1234, cachedPromptTokens: 1200, generatedTokens: 321, timeToFirstTokenMs: 38.2, tokensPerSec: 406.81,
  stopReason: 'eos', droppedTurns: 0, contextUsed: 1555,
};

test('header: model, quantization, backend and GPU, context, template, sampling; fits 80 and 160 columns', () => {
  for (const columns of [80, 160]) {
    const frame = frameAt(<ChatHeader info={HEADER} columns={columns} />, columns);
    const text = plainText(frame);
    assert.ok(widest(frame) <= columns, `${columns} columns:\n${text}`);
    for (const part of ['xllama chat', 'Llama-2-13B-chat-GPTQ', 'GPTQ 4-bit g128 act-order', 'cuda (NVIDIA H100 80GB HBM3)',
      'context 4,096', 'template llama-2 (guessed from the folder name)', 'top-p 0.95', 'seed 1234', '/help for commands',
      'system: You are a helpful assistant.']) {
      assert.ok(text.includes(part), `${part} in:\n${text}`);
    }
  }
  // Wide: the model line is one line; narrow: it wraps between parts, never inside one.
  assert.match(plainText(frameAt(<ChatHeader info={HEADER} columns={160} />, 160)),
    /^xllama chat · Llama-2-13B-chat-GPTQ · GPTQ 4-bit g128 act-order · cuda \(NVIDIA H100 80GB HBM3\) · context 4,096$/m);
});

test('status line: speed, first token, prefill and a context meter; the least important parts go first', () => {
  const wide = plainText(frameAt(<StatusLine columns={160} contextUsed={1555} contextSize={4096} live={null} last={STATS} note={null} />, 160));
  assert.equal(wide, '406.8 tok/s · first token 38 ms · 34 prefilled, 1,200 from the cache · context ████░░░░░░ 1,555/4,096');
  const narrow = frameAt(<StatusLine columns={80} contextUsed={1555} contextSize={4096} live={null} last={STATS} note={null} />, 80);
  assert.equal(plainText(narrow), '406.8 tok/s · first token 38 ms · context ████░░░░░░ 1,555/4,096');
  const tiny = plainText(frameAt(<StatusLine columns={40} contextUsed={1555} contextSize={4096} live={null} last={STATS} note={null} />, 40));
  assert.equal(tiny, 'context ████░░░░░░ 1,555/4,096');
  // A note that is only informational gives way before the figures; a warning never does.
  const cut = { text: 'reply cut at --max-tokens', tone: 'info' } as const;
  assert.equal(plainText(frameAt(<StatusLine columns={80} contextUsed={1555} contextSize={4096} live={null} last={STATS} note={cut} />, 80)),
    '406.8 tok/s · first token 38 ms · context ████░░░░░░ 1,555/4,096');
  assert.match(plainText(frameAt(<StatusLine columns={160} contextUsed={1555} contextSize={4096} live={null} last={STATS} note={cut} />, 160)),
    /^reply cut at --max-tokens · 406\.8 tok\/s/);
  const live = plainText(frameAt(<StatusLine columns={80} contextUsed={100} contextSize={512} live={{ tokens: 57, tokensPerSec: 123.45 }}
    last={null} note={{ text: 'context full: the 2 oldest turns left the context', tone: 'warn' }} />, 80));
  assert.equal(live, 'context full: the 2 oldest turns left the context · replying… 57 tokens');
  assert.equal(plainText(frameAt(<StatusLine columns={120} contextUsed={100} contextSize={512} live={{ tokens: 57, tokensPerSec: 123.45 }}
    last={null} note={null} />, 120)), 'replying… 57 tokens · 123.5 tok/s · context ██░░░░░░░░ 100/512 · Ctrl+C stops');
});

test('input box: a prompt sign, the cursor, continuation lines, and a long paste shown around the cursor', () => {
  const state = { ...emptyEditor(), text: 'first\nsecond', cursor: 8 };
  assert.equal(plainText(render(<PromptInput state={state} maxRows={5} />).lastFrame()), '› first\n  second');
  const many = Array.from({ length: 30 }, (_, i) => `line ${i}`).join('\n');
  const frame = plainText(render(<PromptInput state={{ ...emptyEditor(), text: many, cursor: many.length }} maxRows={5} />).lastFrame());
  assert.equal(frame, '  … 26 more lines (30 in all)\n  line 26\n  line 27\n  line 28\n  line 29');
  assert.equal(plainText(render(<PromptInput state={emptyEditor()} maxRows={5} placeholder="Send a message" />).lastFrame()),
    '›  Send a message');
});

const GREEDY: SamplingParams = {
  temperature: 0, topK: 0, topP: 1, minP: 0, typicalP: 1, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
};
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

test('the chat screen: a message streams a reply into the scrollback; paste, history and commands', async () => {
  const tok = storiesTokenizer();
  const model = await openModel('stories260K');
  const session = new ChatSession(model, tok, {
    format: resolveChatFormat(tok, { modelName: 'stories260K', source: 'x' }), sampling: GREEDY, seed: 1, maxTokens: 30,
  });
  const controller = new ChatController(session, { model: 'stories260K' });
  const info: ChatHeaderInfo = { ...HEADER, model: 'stories260K', backend: 'cpu', gpus: [], contextSize: 512, system: null };
  const app = render(<ChatApp controller={controller} header={info} />);
  const frame = () => plainText(app.lastFrame());
  try {
    await until('the first frame', () => frame().includes('Send a message'));
    assert.match(frame(), /^xllama chat · stories260K · /);
    assert.match(frame(), /context ░░░░░░░░░░ 0\/512/);
    app.stdin.write('Hello there');
    await until('the typed text', () => frame().includes('› Hello there'));
    app.stdin.write('\r');
    await until('the reply to finish', () => /first token/.test(frame()) && !frame().includes('replying…'));
    const reply = session.messages[1]!.content;
    assert.ok(reply.length > 0);
    // The reply is in the scrollback, cut into rows at the 100 columns of ink-testing-library's terminal.
    assert.ok(frame().replace(/\n/g, ' ').includes(reply.split('\n')[0]!.slice(0, 60)), frame());
    assert.match(frame(), /\n[\d.,]+ tok\/s · first token [\d.]+ m?s · \d+ prefilled, 0 from the cache · context █░+ \d+\/512$/);

    // A bracketed paste of two lines is one message.
    app.stdin.write('\x1b[200~');
    app.stdin.write('line one\rline two');
    app.stdin.write('\x1b[201~');
    await until('the pasted text', () => frame().includes('  line two'));
    app.stdin.write('\r');
    await until('the second reply', () => session.messages.length === 4 && !frame().includes('replying…') && frame().includes('Send a message'));
    assert.equal(session.messages[2]!.content, 'line one\nline two');
    assert.match(frame(), /› line one\n {2}line two\n/);

    // Up arrow recalls earlier inputs (in a multi-line one it first moves up a line).
    // (Without colours, as here, the cursor cell at a line's end is a trailing space, which Ink trims.)
    const inputBox = () => frame().split('\n').slice(-3, -1).join('\n');
    app.stdin.write('\x1b[A');
    await until('the recalled input', () => inputBox() === '› line one\n  line two');
    app.stdin.write('\x1b[A');
    await delay(30);
    app.stdin.write('\x1b[A');
    await until('the older input', () => inputBox().endsWith('\n› Hello there'));
    app.stdin.write('\x15'); // Ctrl+U clears the line

    // An unknown command: one line of help, no reply.
    app.stdin.write('/nope');
    await delay(30);
    app.stdin.write('\r');
    await until('the command error', () => frame().includes('unknown command /nope'));
    assert.equal(frame().split('\n').filter((l) => l.includes('unknown command')).length, 1);
    assert.equal(session.messages.length, 4);
  } finally {
    app.unmount();
    model.close();
  }
});

// The real `xllama chat` in a real pseudo-terminal (a private tmux server), on stories260K and the CPU: a
// message is typed, the reply streams, Ctrl+C in the middle stops it and the prompt comes back, /exit leaves
// with status 0; Ctrl+D and Ctrl+C at an empty prompt leave too. The screen is polled with deadlines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures, launcher } from '../helpers/run-cli.js';

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const socket = `xllama-test-${process.pid}`;
const model = join(fixtures, 'models', 'stories260K');

function tmux(...args: string[]): string {
  const r = spawnSync('tmux', ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

/** Starts `xllama chat` in a new tmux window of 100×30; its exit status lands in `exitFile`. */
function start(name: string, exitFile: string, extraEnv: string): void {
  // Ink renders nothing live when it believes it runs in CI, so CI is unset for the chat itself.
  const cmd = `env -u CI -u CONTINUOUS_INTEGRATION ${extraEnv} ${quote(process.execPath)} ${quote(launcher)} chat ` +
    `-m ${quote(model)} --backend cpu --seed 3 --temperature 0.8; echo $? > ${quote(exitFile)}; sleep 30`;
  tmux('new-session', '-d', '-s', name, '-x', '100', '-y', '30', cmd);
}

const screen = (name: string) => tmux('capture-pane', '-p', '-t', name);

async function waitFor(name: string, what: string, check: (text: string) => boolean, ms = 20_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = screen(name);
    if (check(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the screen:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function exitStatus(file: string): Promise<string> {
  const deadline = Date.now() + 15_000;
  while (!existsSync(file) || readFileSync(file, 'utf8') === '') {
    if (Date.now() > deadline) throw new Error('the chat did not exit');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return readFileSync(file, 'utf8').trim();
}

test('in a terminal: type, watch the reply stream, stop it with Ctrl+C, /exit; Ctrl+D and Ctrl+C at an empty prompt exit',
  { skip: hasTmux ? false : 'tmux is not installed' }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xllama-tty-'));
    try {
      const exit1 = join(dir, 'exit1');
      // 15 ms a token: a reply to the end of the 512-token context would take seconds, time to interrupt it.
      start('chat', exit1, 'XLLAMA_CHAT_TOKEN_DELAY_MS=15');
      let text = await waitFor('chat', 'the prompt', (s) => s.includes('Send a message'));
      assert.match(text, /^xllama chat · stories260K · float16 · cpu · context 512$/m);
      tmux('send-keys', '-t', 'chat', '-l', 'Tell me a story.');
      tmux('send-keys', '-t', 'chat', 'Enter');
      const first = await waitFor('chat', 'the reply to start', (s) => /› Tell me a story\.\n\S/.test(s) && s.includes('replying…'));
      const tokensIn = (s: string) => Number(/replying… (\d+) tokens/.exec(s)?.[1] ?? -1);
      const later = await waitFor('chat', 'the reply to grow', (s) => tokensIn(s) > tokensIn(first) + 10);
      assert.ok(later.split('\n').filter((l) => l.trim()).length >= first.split('\n').filter((l) => l.trim()).length);
      tmux('send-keys', '-t', 'chat', 'C-c');
      text = await waitFor('chat', 'the prompt after Ctrl+C', (s) => s.includes('(stopped)') && s.includes('Send a message'));
      assert.match(text, /[\d.,]+ tok\/s · first token/);
      assert.doesNotMatch(text, /replying…/);
      // The reply kept what it had said: the text between the message and "(stopped)".
      const kept = text.slice(text.indexOf('› Tell me a story.') + 18, text.indexOf('(stopped)')).trim();
      assert.ok(kept.length > 20, kept);
      tmux('send-keys', '-t', 'chat', '-l', '/exit');
      tmux('send-keys', '-t', 'chat', 'Enter');
      assert.equal(await exitStatus(exit1), '0');

      const exit2 = join(dir, 'exit2');
      start('ctrl-d', exit2, '');
      await waitFor('ctrl-d', 'the prompt', (s) => s.includes('Send a message'));
      tmux('send-keys', '-t', 'ctrl-d', 'C-d');
      assert.equal(await exitStatus(exit2), '0');

      const exit3 = join(dir, 'exit3');
      start('ctrl-c', exit3, '');
      await waitFor('ctrl-c', 'the prompt', (s) => s.includes('Send a message'));
      tmux('send-keys', '-t', 'ctrl-c', '-l', 'typed');
      await waitFor('ctrl-c', 'the typed text', (s) => s.includes('› typed'));
      tmux('send-keys', '-t', 'ctrl-c', 'C-c'); // clears the line
      await waitFor('ctrl-c', 'an empty prompt', (s) => s.includes('Send a message'));
      tmux('send-keys', '-t', 'ctrl-c', 'C-c'); // exits
      assert.equal(await exitStatus(exit3), '0');
    } finally {
      spawnSync('tmux', ['-L', socket, 'kill-server']);
      rmSync(dir, { recursive: true, force: true });
    }
  });

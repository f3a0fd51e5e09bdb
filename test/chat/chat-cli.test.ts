// `xllama chat` through the real launcher without a terminal (the plain line mode) and with --prompt, on
// stories260K and the CPU backend: replies, the cache reuse checked against `xllama generate`, /save, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fixtures, runCli } from '../helpers/run-cli.js';
import { ChatTemplate, PLAIN_TEMPLATE } from '../../cli/engine/chat-template.js';

const model = join(fixtures, 'models', 'stories260K');
const ESCAPE = /\x1b/;
const tmp = mkdtempSync(join(tmpdir(), 'xllama-chat-cli-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

// A module hook that makes importing Ink or React fail: the plain mode must not need them.
writeFileSync(join(tmp, 'no-ink-hooks.mjs'),
  "export async function resolve(specifier, context, next) {\n" +
  "  if (specifier === 'ink' || specifier === 'react') throw new Error(`${specifier} was imported`);\n" +
  '  return next(specifier, context);\n}\n');
writeFileSync(join(tmp, 'no-ink.mjs'),
  `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(tmp, 'no-ink-hooks.mjs')).href)});\n`);
const NO_INK = { NODE_OPTIONS: `--import ${pathToFileURL(join(tmp, 'no-ink.mjs')).href}` };

function chat(args: string[], input = '', env: NodeJS.ProcessEnv = {}) {
  return runCli(['chat', '-m', model, '--backend', 'cpu', ...args], { input, env });
}

test('piped: one reply per input line, plain text, speed on stderr, no escape codes, Ink never loaded', () => {
  const file = join(tmp, 'piped.json');
  const r = chat(['--temperature', '0', '-n', '24'], `Hello\n\nAnd then?\n/save ${file}\n`, NO_INK);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, ESCAPE);
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  const replies = saved.messages.filter((m: { role: string }) => m.role === 'assistant').map((m: { content: string }) => m.content);
  assert.equal(replies.length, 2, 'the empty line sent nothing');
  assert.equal(r.stdout, `${replies[0]}\n${replies[1]}\n`);
  const stats = r.stderr.split('\n').filter((l) => l.startsWith('cpu: reply'));
  assert.equal(stats.length, 2);
  assert.match(stats[0]!, /^cpu: reply \d+ tokens, [\d.,]+ tok\/s; first token after [\d.]+ m?s; prompt \d+ tokens \(\d+ prefilled, 0 from the cache\); context \d+\/512; stop: /);
  const cached = Number(/(\d+) from the cache/.exec(stats[1]!)![1]);
  assert.ok(cached > 5, stats[1]);
  assert.match(r.stderr, new RegExp(`saved 4 messages to ${file.replace(/[.\\/]/g, '\\$&')}`));
});

test("turn 2's greedy reply is what `xllama generate` continues the rendered history with", () => {
  const file = join(tmp, 'turns.json');
  const r = chat(['--temperature', '0', '-n', '32', '--system', 'A short story.'], `Once there was a dog.\nWhat did it do?\n/save ${file}\n`);
  assert.equal(r.status, 0, r.stderr);
  const { messages } = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(messages.length, 5);
  const history = new ChatTemplate(PLAIN_TEMPLATE, { bosToken: '<s>', eosToken: '</s>' }, 'plain').render(messages.slice(0, 4));
  assert.equal(history, `A short story.\n\nUser: Once there was a dog.\nAssistant: ${messages[2].content}\nUser: What did it do?\nAssistant:`);
  const g = runCli(['generate', '-m', model, '--backend', 'cpu', '-p', history, '--temperature', '0', '-n', '32', '--stop', '\nUser:', '--json']);
  assert.equal(g.status, 0, g.stderr);
  assert.equal(JSON.parse(g.stdout).text.trim(), messages[4].content);
});

test('--prompt: one message, its reply on stdout, exit 0; stdin is not read', () => {
  const r = chat(['--prompt', 'Tell me a story.', '--temperature', '0', '-n', '16', '--seed', '7'], 'this line is not a message\n', NO_INK);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.endsWith('\n') && r.stdout.trim().length > 0);
  assert.equal(r.stdout.split('\n').length >= 2, true);
  assert.equal((r.stderr.match(/^cpu: reply/gm) ?? []).length, 1);
});

test('a message longer than the context is refused in one line and the chat goes on', () => {
  const long = 'the big dog ran home '.repeat(120);
  const r = chat(['--temperature', '0', '-n', '8'], `${long}\n/nope\nHi\n`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^xllama: the message is \d+ tokens, longer than the whole context \(512 tokens\); it was not sent$/m);
  assert.match(r.stderr, /^xllama: unknown command \/nope; commands: \/reset \/system \/save \/load \/regen \/help \/exit \(\/help says more\)$/m);
  assert.equal((r.stderr.match(/^cpu: reply/gm) ?? []).length, 1);
  const once = chat(['--prompt', long]);
  assert.equal(once.status, 2);
  assert.match(once.stderr, /^xllama: the message is \d+ tokens, longer than the whole context \(512 tokens\); it was not sent\n$/);
});

test('a small context: the oldest turns leave it, and stderr says so', () => {
  const lines = Array.from({ length: 5 }, (_, i) => `Tell me about the red ball number ${i}.`).join('\n');
  const r = chat(['--temperature', '0', '-n', '12', '--max-seq-len', '80'], `${lines}\n`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((r.stderr.match(/^cpu: reply/gm) ?? []).length, 5);
  assert.match(r.stderr, /context full: the (oldest turn|\d+ oldest turns) left the context/);
});

const BAD: [string, string[], RegExp][] = [
  ['unknown template', ['--template', 'vicuna'], /^xllama: --template: unknown template 'vicuna' \(use llama-2, llama-3, chatml, mistral, zephyr, plain\)$/],
  ['two system prompts', ['--system', 'a', '--system-file', 'b'], /^xllama: --system and --system-file: give one of them$/],
  ['missing system file', ['--system-file', '/nonexistent/system.txt'], /^xllama: --system-file: \/nonexistent\/system\.txt: no such file$/],
  ['system file a folder', ['--system-file', '/'], /^xllama: --system-file: \/: is a folder, not a text file$/],
  ['system file a device', ['--system-file', '/dev/zero'], /^xllama: --system-file: \/dev\/zero: not a regular file$/],
  ['zero max tokens', ['-n', '0'], /^xllama: -n\/--max-tokens: must be >= 1, got 0$/],
  ['bad temperature', ['--temperature', 'hot'], /^xllama: --temperature: expected a number, got 'hot'$/],
  ['empty prompt', ['--prompt', ' '], /^xllama: --prompt: the message is empty$/],
  ['template without a system role', ['--template', 'mistral', '--system', 'Be kind.'],
    /^xllama: --system: the chat template takes no system prompt \(choose another --template\): built-in mistral template: chat template: Conversation roles must alternate/],
  ['context beyond the model', ['--max-seq-len', '4096'], /^xllama: --max-seq-len: 4096 is more than the model's max_position_embeddings \(512\)$/],
  ['model and dummy', ['--dummy', 'tiny'], /^xllama: give either -m\/--model DIR or --dummy NAME, not both$/],
];

for (const [what, args, message] of BAD) {
  test(`bad input, one line and exit 2: ${what}`, () => {
    const r = chat(args, 'Hi\n');
    assert.equal(r.status, 2, r.stderr);
    assert.ok(r.stderr.endsWith('\n') && r.stderr.indexOf('\n') === r.stderr.length - 1, `one line: ${r.stderr}`);
    assert.match(r.stderr.trimEnd(), message);
    assert.equal(r.stdout, '');
  });
}

test('--system-file: its trimmed text is the system prompt; a FIFO, an empty or a binary file is refused at once', () => {
  const prompt = join(tmp, 'system.txt');
  writeFileSync(prompt, '\n  A short story.  \n');
  const file = join(tmp, 'system-file.json');
  const r = chat(['--temperature', '0', '-n', '8', '--system-file', prompt], `Hi\n/save ${file}\n`);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).messages[0], { role: 'system', content: 'A short story.' });
  const fifo = join(tmp, 'system.fifo');
  execFileSync('mkfifo', [fifo]);  // no writer: a blocking read would wait for ever
  const cases: [string, string | Buffer, RegExp][] = [
    [fifo, '', /^xllama: --system-file: .*system\.fifo: not a regular file\n$/],
    [join(tmp, 'empty.txt'), '  \n', /^xllama: --system-file: .*empty\.txt: the file holds only whitespace\n$/],
    [join(tmp, 'binary.bin'), Buffer.from([0x41, 0, 0x42]), /^xllama: --system-file: .*binary\.bin: not a text file \(a NUL byte at offset 1\)\n$/],
  ];
  for (const [path, content, message] of cases) {
    if (path !== fifo) writeFileSync(path, content);
    const bad = chat(['--system-file', path, '--prompt', 'Hi']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, message);
    assert.equal(bad.stdout, '');
  }
});

test('bad input: a missing model folder; --dummy without a GPU', () => {
  const missing = runCli(['chat', '-m', join(tmp, 'no-model'), '--prompt', 'Hi']);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^xllama: .*no-model.*\n$/);
  const dummy = runCli(['chat', '--dummy', 'tiny', '--prompt', 'Hi'], { env: { CUDA_VISIBLE_DEVICES: '' } });
  assert.equal(dummy.status, 2);
  assert.match(dummy.stderr, /^xllama: dummy model tiny needs a CUDA GPU: .+\n$/);
});

// Issue 14.2: the prompt from -p, -f FILE, -p - / -f - (stdin) or piped stdin; an empty prompt starts
// from BOS. Checked against llama2.c's greedy ids in reference.json (BOS, then 200 greedy tokens).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures, runCli } from '../helpers/run-cli.js';

const model = join(fixtures, 'models', 'stories260K');
const reference = JSON.parse(readFileSync(join(model, 'reference.json'), 'utf8'));
const greedy201 = reference.sequences.find((s: { name: string }) => s.name === 'greedy201').ids as number[];
const PROMPT = 'Once upon a time';
const PROMPT_IDS = greedy201.slice(0, 5); // BOS + "Once upon a time"
const N = 12;

const tmp = mkdtempSync(join(tmpdir(), 'xllama-prompt-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function gen(args: string[], input?: string) {
  const r = runCli(['generate', '-m', model, '--backend', 'cpu', '--temperature', '0', '-n', String(N), '--json', ...args], { input });
  return { ...r, out: r.status === 0 ? JSON.parse(r.stdout) as { promptIds: number[]; generatedIds: number[]; text: string } : null };
}

function assertPromptIsOnceUponATime(r: ReturnType<typeof gen>): void {
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.out!.promptIds, PROMPT_IDS);
  assert.deepEqual(r.out!.generatedIds, greedy201.slice(5, 5 + N));
}

test('-f FILE: the file is the prompt (its one trailing newline dropped)', () => {
  const file = join(tmp, 'prompt.txt');
  writeFileSync(file, `${PROMPT}\n`);
  assertPromptIsOnceUponATime(gen(['-f', file]));
  const crlf = join(tmp, 'prompt-crlf.txt');
  writeFileSync(crlf, `${PROMPT}\r\n`);
  assertPromptIsOnceUponATime(gen(['--file', crlf]));
});

test('piped stdin is the prompt when neither -p nor -f is given', () => {
  assertPromptIsOnceUponATime(gen([], `${PROMPT}\n`));
});

test("-p - and -f - read the prompt from stdin", () => {
  assertPromptIsOnceUponATime(gen(['-p', '-'], `${PROMPT}\n`));
  assertPromptIsOnceUponATime(gen(['-f', '-'], PROMPT));
});

test('-p wins over piped stdin (stdin is not read)', () => {
  assertPromptIsOnceUponATime(gen(['-p', PROMPT], 'something else entirely'));
});

test("an empty prompt starts from BOS: llama2.c's greedy story", () => {
  const fromEmptyStdin = gen([], '');
  assert.equal(fromEmptyStdin.status, 0, fromEmptyStdin.stderr);
  assert.deepEqual(fromEmptyStdin.out!.promptIds, [1]);
  assert.deepEqual(fromEmptyStdin.out!.generatedIds, greedy201.slice(1, 1 + N));
  assert.ok(fromEmptyStdin.out!.text.startsWith('Once upon a time'));
  const fromEmptyFlag = gen(['-p', '']);
  assert.equal(fromEmptyFlag.status, 0, fromEmptyFlag.stderr);
  assert.deepEqual(fromEmptyFlag.out!.generatedIds, fromEmptyStdin.out!.generatedIds);
  const emptyFile = join(tmp, 'empty.txt');
  writeFileSync(emptyFile, '\n');
  assert.deepEqual(gen(['-f', emptyFile]).out!.promptIds, [1]);
});

const folder = join(tmp, 'a-folder');
mkdirSync(folder);
const binary = join(tmp, 'binary.bin');
writeFileSync(binary, Buffer.from([0xff, 0xfe, 0x00, 0x81, 0x20]));
const withNul = join(tmp, 'nul.txt');
writeFileSync(withNul, 'Once\0upon');

const BAD: [string, string[], Buffer | undefined, RegExp][] = [
  ['a missing -f file', ['-f', join(tmp, 'no-such.txt')], undefined, /-f\/--file: .*no-such\.txt: no such file/],
  ['-f on a folder', ['-f', folder], undefined, /-f\/--file: .*a-folder: is a folder, not a text file/],
  ['-f on a binary file', ['-f', binary], undefined, /-f\/--file: .*binary\.bin: not a (UTF-8 )?text file/],
  ['-f on a file with NUL bytes', ['-f', withNul], undefined, /-f\/--file: .*nul\.txt: not a text file \(a NUL byte at offset 4\)/],
  ['-p and -f together', ['-p', PROMPT, '-f', binary], undefined, /-p\/--prompt and -f\/--file: give the prompt one way/],
  ['stdin that is not UTF-8', [], Buffer.from([0xff, 0xfe]), /^xllama: stdin: not a UTF-8 text file\n$/],
];

for (const [name, args, input, message] of BAD) {
  test(`bad prompt input exits 2 with one line: ${name}`, () => {
    const r = runCli(['generate', '-m', model, '--backend', 'cpu', ...args], { input });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^xllama: [^\n]+\n$/);
    assert.match(r.stderr, message);
  });
}

// Tokenizers whose tokenizer.json carries its own regular expressions: their encode (and decode) run on a worker
// with a deadline. The ids and text are the library's own (built here directly, on this thread, as the reference),
// and a pattern that backtracks without end is a one-line UserError instead of a hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../../cli/errors.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';
import { IsolatedTokenizer, workerExecArgv } from '../../cli/engine/isolated-tokenizer.js';
import { stepsWithFileRegex, withDefaults } from '../../cli/engine/hf-tokenizer-build.js';
import { storiesDir } from './fixture-tokenizers.js';
import { readTokenizerFiles } from '../../cli/engine/loader/tokenizer-config.js';

const storiesJson = JSON.parse(readFileSync(join(storiesDir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
const storiesConfig = JSON.parse(readFileSync(join(storiesDir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
const NO_IDS = { bosTokenId: null, eosTokenIds: [] };

/** stories260K's tokenizer with a Split pre-tokenizer on `pattern` (and, given, a Replace decoder on `decoderPattern`). */
function withPatterns(pattern: string, decoderPattern?: string): Record<string, unknown> {
  const json: Record<string, unknown> = {
    ...storiesJson, pre_tokenizer: { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
  };
  if (decoderPattern) {
    json.decoder = { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { Regex: decoderPattern }, content: '' }, storiesJson.decoder] };
  }
  return json;
}

test('the steps that carry a regular expression of the file are found, and only those', () => {
  assert.deepEqual([...stepsWithFileRegex(storiesJson)], []);  // Replace with a String pattern
  assert.deepEqual([...stepsWithFileRegex(withPatterns('\\s+'))], ['pre_tokenizer']);
  assert.deepEqual([...stepsWithFileRegex(withPatterns('\\s+', 'x+'))], ['pre_tokenizer', 'decoder']);
  // A file that is not an object has none (its own check then says what is wrong with it).
  for (const notObject of [null, [1], 'x', 3]) assert.deepEqual([...stepsWithFileRegex(notObject as never)], []);
});

test('on the worker: the same ids and text as the library gives on this thread', () => {
  const json = withPatterns(" ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 'zzz');
  const reference = new HfTokenizer(withDefaults(json), storiesConfig);
  const tok = new TextTokenizer(json, storiesConfig, NO_IDS, 'tokenizer.json');
  const long = readFileSync(join(storiesDir, 'stories.txt'), 'utf8').slice(0, 20_000);
  for (const text of ['Once upon a time, there was a girl named Lily. 12345!', '  spaces\n\nand lines  ', 'é中文🙂', long]) {
    const ids = reference.encode(text, { add_special_tokens: false }).ids;
    assert.deepEqual(tok.encode(text), ids);
    assert.equal(tok.decode(ids, { skipSpecial: false }), reference.decode(ids, { skip_special_tokens: false }));
  }
});

test('a pattern that backtracks without end: the call is stopped at its deadline, and so is every later one', () => {
  const json = withPatterns('(a+)+$');
  const tok = new IsolatedTokenizer(JSON.stringify(json), storiesConfig, 'hostile/tokenizer.json', { buildMs: 20_000, baseMs: 300, perItemMs: 0 });
  assert.ok(tok.encode('Once upon a time', false).length > 0, 'ordinary text still encodes');
  const t0 = performance.now();
  assert.throws(() => tok.encode(`${'a'.repeat(40)}b`, false),
    /^Error: the tokenizer ran for more than 0.3 s on a 41-character text: a regular expression of the file backtracks without end$/);
  assert.ok(performance.now() - t0 < 5_000, `${performance.now() - t0} ms`);
  assert.throws(() => tok.encode('Once', false), /backtracks without end/);
});

test('through TextTokenizer: one UserError naming the file, for encode and for the trial at build time', () => {
  const tok = new TextTokenizer(withPatterns('(a+)+$'), storiesConfig, NO_IDS, 'hostile/tokenizer.json');
  const t0 = performance.now();
  assert.throws(() => tok.encode(`${'a'.repeat(40)}b`), (err) => err instanceof UserError &&
    /^hostile\/tokenizer\.json: the tokenizer ran for more than 5 s on a 41-character text: a regular expression of the file backtracks without end$/.test(err.message));
  assert.ok(performance.now() - t0 < 30_000, `${performance.now() - t0} ms`);
  // One that backtracks on the trial text itself stops the build.
  const slowToBuild = new IsolatedTokenizer(JSON.stringify(withPatterns('([\\s\\S]+)+X')), storiesConfig, 'hostile/tokenizer.json',
    { buildMs: 300, baseMs: 300, perItemMs: 0 });
  assert.throws(() => slowToBuild.waitUntilBuilt(), (err) => err instanceof UserError &&
    /^hostile\/tokenizer\.json: the tokenizer ran for more than 0.3 s on building it and trying it on a test text: /.test(err.message));
});

test('a broken pattern is the build error the main thread would give, naming the step', () => {
  assert.throws(() => new TextTokenizer(withPatterns('(unclosed'), storiesConfig, NO_IDS, 'bad/tokenizer.json'),
    (err) => err instanceof UserError && /^bad\/tokenizer\.json: pre_tokenizer does not work \(/.test(err.message));
});

test('read from a folder, the worker starts before the file is parsed, and gives the library\'s ids; without patterns none runs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xllama-early-worker-'));
  try {
    const files = (json: Record<string, unknown>) => {
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(storiesConfig));
      return readTokenizerFiles(dir);
    };
    const text = 'Once upon a time, there was a girl named Lily. 12345!';
    const patterned = withPatterns(" ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
    const reference = new HfTokenizer(withDefaults(patterned), storiesConfig).encode(text, { add_special_tokens: false }).ids;
    assert.deepEqual(TextTokenizer.fromFiles(files(patterned), NO_IDS).encode(text), reference);
    // "Regex" in the text but in no step (a token named so): the early worker is stopped, the build is direct.
    const named = { ...storiesJson, added_tokens: [...(storiesJson.added_tokens as unknown[]), { id: 512, content: 'Regex', special: false }] };
    assert.deepEqual(TextTokenizer.fromFiles(files(named), NO_IDS).encode('Once upon a time'),
      new HfTokenizer(withDefaults(named), storiesConfig).encode('Once upon a time', { add_special_tokens: false }).ids);
    // A file that fails to parse, or a check, after the worker started: the one-line error, the worker stopped.
    writeFileSync(join(dir, 'tokenizer.json'), `${JSON.stringify(patterned).slice(0, -1)},`);
    assert.throws(() => TextTokenizer.fromFiles(readTokenizerFiles(dir), NO_IDS), /tokenizer\.json: not valid JSON/);
    const deep = { ...patterned, normalizer: JSON.parse(`${'['.repeat(40)}${']'.repeat(40)}`) };
    assert.throws(() => TextTokenizer.fromFiles(files(deep), NO_IDS), /normalizer nests objects and lists more than 32 levels deep/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the worker starts under `node --input-type=module -e`: its options are this process\'s but for --input-type', () => {
  assert.deepEqual(workerExecArgv(['--input-type=module', '--max-old-space-size=4096', '--input-type', 'commonjs', '--no-warnings']),
    ['--max-old-space-size=4096', '--no-warnings']);
  const dir = mkdtempSync(join(tmpdir(), 'xllama-worker-argv-'));
  try {
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(withPatterns('\\s+|\\S+')));
    const tokenizerUrl = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '../../cli/engine/tokenizer.js')).href;
    const script = `const { TextTokenizer } = await import(${JSON.stringify(tokenizerUrl)});
      const json = JSON.parse((await import('node:fs')).readFileSync(${JSON.stringify(join(dir, 'tokenizer.json'))}, 'utf8'));
      const tok = new TextTokenizer(json, ${JSON.stringify(storiesConfig)}, { bosTokenId: null, eosTokenIds: [] }, 'tokenizer.json');
      console.log(JSON.stringify(tok.encode('Once upon a time')));`;
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).length > 0);
    assert.ok(performance.now() - t0 < 10_000, `${performance.now() - t0} ms: the build waited for a worker that never started`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

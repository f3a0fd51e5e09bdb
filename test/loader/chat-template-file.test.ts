// chat_template.jinja: the file transformers (4.47 on) saves a chat template to, and reads in preference to
// tokenizer_config.json's chat_template. GPTQModel checkpoints saved with a recent transformers carry one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/run-cli.js';
import { assertCliRefused } from '../helpers/assert-refused.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';
import { FP16, copyFixture, editJson } from './model-dir.js';

const CHATML = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const ZEPHYR = "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + eos_token }}{% endfor %}";

function folderWith(jinja: string | null, inConfig: string | null): string {
  const dir = copyFixture(FP16);
  editJson(join(dir, 'tokenizer_config.json'), (c) => {
    if (inConfig === null) delete c.chat_template;
    else c.chat_template = inConfig;
  });
  if (jinja !== null) writeFileSync(join(dir, 'chat_template.jinja'), jinja);
  return dir;
}

const templateOf = (dir: string) => {
  const spec = loadModelSpec(dir);
  const tok = TextTokenizer.fromFiles(spec.tokenizer, spec);
  return { text: tok.chatTemplate, source: tok.chatTemplate === null ? null : tok.chatTemplateSource };
};

test('chat_template.jinja is the template, over tokenizer_config.json\'s; without it the config\'s is', () => {
  const both = folderWith(CHATML, ZEPHYR);
  assert.deepEqual(templateOf(both), { text: CHATML, source: join(both, 'chat_template.jinja') });
  const configOnly = folderWith(null, ZEPHYR);
  assert.deepEqual(templateOf(configOnly), { text: ZEPHYR, source: join(configOnly, 'tokenizer_config.json') });
  // An empty file is no template (transformers would refuse to chat); the config's stands.
  assert.deepEqual(templateOf(folderWith(' \n', ZEPHYR)).text, ZEPHYR);
  assert.deepEqual(templateOf(folderWith('', null)), { text: null, source: null });
});

test('info names the file that holds the chat template, in text and JSON', () => {
  const cases: [string | null, string | null, string | null][] = [
    [CHATML, null, 'chat_template.jinja'], [CHATML, ZEPHYR, 'chat_template.jinja'], [null, ZEPHYR, 'tokenizer_config.json'], [null, null, null],
  ];
  for (const [jinja, inConfig, file] of cases) {
    const dir = folderWith(jinja, inConfig);
    const text = runCli(['info', dir]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`chat template ${file === null ? 'none' : `in ${file.replace('.', '\\.')}`}$`, 'm'));
    const json = runCli(['info', dir, '--json']);
    assert.equal(json.status, 0, json.stderr);
    const t = JSON.parse(json.stdout).tokenizer;
    assert.equal(t.chatTemplate, file !== null);
    assert.equal(t.chatTemplateFile, file);
  }
});

test('chat renders chat_template.jinja, and its errors name that file; generate does not need it', () => {
  // The config's template is fine; the file's raises. chat must have used the file.
  const dir = folderWith("{{ raise_exception('this came from the jinja file') }}", CHATML);
  assertCliRefused(['chat', '-m', dir, '--backend', 'cpu', '--prompt', 'Hi'], 'chat_template.jinja', 'this came from the jinja file');
  const broken = folderWith('{% if %}', CHATML);
  assertCliRefused(['info', broken], `${join(broken, 'chat_template.jinja')}: chat_template does not parse`);
  const gen = runCli(['generate', '-m', broken, '--backend', 'cpu', '-p', 'Once', '-n', '2']);
  assert.equal(gen.status, 0, gen.stderr);
  const ok = runCli(['chat', '-m', folderWith(CHATML, null), '--backend', 'cpu', '--prompt', 'Hi', '-n', '4', '--temperature', '0']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(ok.stdout.length > 0, 'a reply');
});

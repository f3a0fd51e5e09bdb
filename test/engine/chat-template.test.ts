import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { ChatTemplate, PLAIN_TEMPLATE, pickTemplate, type ChatMessage } from '../../cli/engine/chat-template.js';
import { UserError } from '../../cli/errors.js';
import { fixtureTokenizer } from './fixture-tokenizers.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';

/** Real chat_template strings (ollama's test data), one `{family: template}` object per line. */
const entries = readFileSync(join(fixtures, 'chat-templates', 'templates.jsonl'), 'utf8')
  .split('\n').filter((l) => l.trim()).map((l) => Object.entries(JSON.parse(l) as Record<string, string>)[0]!);

function templateOf(family: string, mustContain: string): string {
  const hit = entries.find(([name, tpl]) => name === family && tpl.includes(mustContain));
  assert.ok(hit, `no ${family} template containing ${mustContain}`);
  return hit[1];
}

const TOKENS = { bosToken: '<s>', eosToken: '</s>' };
const SYSTEM: ChatMessage = { role: 'system', content: 'You are terse.' };
const TURNS: ChatMessage[] = [
  { role: 'user', content: 'Hi!' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'Name a color.' },
];

test('Llama-2-chat: system prompt folded into the first [INST], BOS per turn, EOS after answers', () => {
  const t = new ChatTemplate(templateOf('llama2-chat', 'content | trim'), TOKENS, 'llama2-chat');
  assert.equal(t.render([SYSTEM, ...TURNS]),
    '<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] Name a color. [/INST]');
  assert.equal(t.render(TURNS), '<s>[INST] Hi! [/INST] Hello. </s><s>[INST] Name a color. [/INST]');
});

test('Mistral-instruct: [INST] turns, and raise_exception becomes a one-line UserError', () => {
  const t = new ChatTemplate(templateOf('mistral-instruct', "eos_token}}"), TOKENS, 'mistral/tokenizer_config.json');
  assert.equal(t.render(TURNS), '<s>[INST] Hi! [/INST]Hello.</s>[INST] Name a color. [/INST]');
  assert.throws(() => t.render([SYSTEM, ...TURNS]), (err: unknown) =>
    err instanceof UserError && err.message ===
      'mistral/tokenizer_config.json: chat template: Conversation roles must alternate user/assistant/user/assistant/...');
});

test('ChatML: with and without the generation prompt', () => {
  const t = new ChatTemplate(templateOf('chatml', "{% for message in messages %}{{'<|im_start|>'"), TOKENS, 'chatml');
  const body = '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n' +
    '<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n';
  assert.equal(t.render([SYSTEM, ...TURNS]), `${body}<|im_start|>assistant\n`);
  assert.equal(t.render([SYSTEM, ...TURNS], { addGenerationPrompt: false }), body);
});

test('Zephyr: newlines after block tags are trimmed as transformers does (trim_blocks)', () => {
  const t = new ChatTemplate(templateOf('zephyr', "{% elif message['role'] == 'system' %}"), TOKENS, 'zephyr');
  assert.equal(t.render([SYSTEM, ...TURNS]),
    '<|system|>\nYou are terse.</s>\n<|user|>\nHi!</s>\n<|assistant|>\nHello.</s>\n<|user|>\nName a color.</s>\n<|assistant|>\n');
});

test('a rendered Llama-2 prompt tokenizes with BOS ids from the text, not added twice', () => {
  const tok = fixtureTokenizer('llama2');
  const t = new ChatTemplate(templateOf('llama2-chat', 'content | trim'), tok, 'llama2-chat');
  const ids = tok.encode(t.render([{ role: 'user', content: 'Hi!' }]));
  // <s> ▁[ INST ] ▁Hi ! ▁[ / INST ] — the special token in the text becomes id 1.
  assert.equal(ids[0], 1);
  assert.equal(ids.filter((id) => id === 1).length, 1);
  assert.equal(tok.decode(ids), '[INST] Hi! [/INST]');
});

test('the plain format for models without a template; a template that does not parse is named', () => {
  const plain = new ChatTemplate(PLAIN_TEMPLATE, TOKENS, 'built-in plain chat format');
  assert.equal(plain.render([SYSTEM, ...TURNS]), 'You are terse.\n\nUser: Hi!\nAssistant: Hello.\nUser: Name a color.\nAssistant:');
  assert.throws(() => new ChatTemplate('{% for %}', TOKENS, 'bad.json'), /bad.json: chat_template does not parse/);
});

test('a list of named templates picks "default"', () => {
  assert.equal(pickTemplate([{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }]), 'D');
  assert.equal(pickTemplate('S'), 'S');
  assert.equal(pickTemplate(undefined), null);
});

test("the tokenizer exposes the config's chat_template, rendered with its own BOS/EOS", () => {
  const dir = join(fixtures, 'tokenizers', 'mistral');
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  assert.equal(fixtureTokenizer('mistral').chatTemplate, null);
  const text = templateOf('mistral-instruct', "eos_token}}");
  const tok = new TextTokenizer(json, { ...config, chat_template: [{ name: 'default', template: text }] },
    { bosTokenId: null, eosTokenIds: [] });
  assert.equal(tok.chatTemplate, text);
  const template = new ChatTemplate(text, tok, 'mistral');
  const ids = tok.encode(template.render(TURNS.slice(0, 2)));
  assert.equal(ids[0], tok.bosId);
  assert.equal(ids.at(-1), tok.eosIds[0]);
});

// Chat templates: every real template in fixtures/chat-templates renders as Hugging Face transformers renders
// it (hf-renders.jsonl, made by scripts/chat-template-references.py with jinja2 set up as transformers sets it
// up); the built-in templates are those published strings; which format a model gets; BOS in chat prompts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { ChatTemplate, PLAIN_TEMPLATE, type ChatMessage } from '../../cli/engine/chat-template.js';
import { BUILTIN_TEMPLATES, chatPromptIds, resolveChatFormat } from '../../cli/engine/chat-templates.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';
import { UserError } from '../../cli/errors.js';
import { fixtureTokenizer, storiesTokenizer } from '../engine/fixture-tokenizers.js';

const dir = join(fixtures, 'chat-templates');
const jsonl = (file: string) => readFileSync(join(dir, file), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const templates = (jsonl('templates.jsonl') as Record<string, string>[]).map((e) => Object.entries(e)[0]!);

interface HfRender {
  template: number;
  family: string;
  conversation: string;
  add_generation_prompt: boolean;
  text?: string;
  error?: string;
}
const renders = jsonl('hf-renders.jsonl') as HfRender[];

// The conversations of scripts/chat-template-references.py.
const SYSTEM: ChatMessage = { role: 'system', content: 'You are terse.' };
const U1: ChatMessage = { role: 'user', content: 'Hi!' };
const A1: ChatMessage = { role: 'assistant', content: ' Hello there. ' };
const U2: ChatMessage = { role: 'user', content: 'Two lines:\nnaïve — 日本語 "quoted" <b>' };
const A2: ChatMessage = { role: 'assistant', content: 'Done.' };
const CONVERSATIONS: Record<string, ChatMessage[]> = {
  'one-turn': [U1],
  'system-one-turn': [SYSTEM, U1],
  'multi-turn': [U1, A1, U2],
  'system-multi-turn': [SYSTEM, U1, A1, U2],
  complete: [SYSTEM, U1, A1, U2, A2],
};

test('every fixture template renders every conversation exactly as transformers does, errors included', () => {
  assert.equal(renders.length, templates.length * Object.keys(CONVERSATIONS).length * 2);
  const tokens = { bosToken: '<s>', eosToken: '</s>' };
  let errors = 0;
  for (const r of renders) {
    const [family, source] = templates[r.template]!;
    assert.equal(family, r.family);
    const t = new ChatTemplate(source, tokens, family);
    const what = `${r.template} ${family} ${r.conversation} add_generation_prompt=${r.add_generation_prompt}`;
    const render = () => t.render(CONVERSATIONS[r.conversation]!, { addGenerationPrompt: r.add_generation_prompt });
    if (r.error !== undefined) {
      errors++;
      assert.throws(render, (err: unknown) => err instanceof UserError && err.message.endsWith(`chat template: ${r.error}`), what);
    } else {
      assert.equal(render(), r.text, what);
    }
  }
  assert.ok(errors > 0 && errors < renders.length / 4, `${errors} renders raise`);
});

test('the built-in templates are the published strings, byte for byte', () => {
  const published: Record<string, [string, string]> = {
    'llama-2': ['llama2-chat', 'content.strip()'],
    'llama-3': ['llama3-instruct', '<|eot_id|>'],
    chatml: ['chatml', "{% for message in messages %}{{'<|im_start|>' + message['role']"],
    mistral: ['mistral-instruct', "{{ message['content'] + eos_token}}"],
    zephyr: ['zephyr', "'<|system|>\n'"],
  };
  for (const [name, [family, marker]] of Object.entries(published)) {
    const source = BUILTIN_TEMPLATES[name as keyof typeof BUILTIN_TEMPLATES].template;
    assert.ok(templates.some(([f, t]) => f === family && t.includes(marker) && t === source), `${name} is a published ${family} template`);
  }
  assert.equal(BUILTIN_TEMPLATES.plain.template, PLAIN_TEMPLATE);
});

/** Llama 2's tokenizer files with a chat_template added. */
function llama2With(chatTemplate: string): TextTokenizer {
  const files = join(fixtures, 'tokenizers', 'llama2');
  const json = JSON.parse(readFileSync(join(files, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(files, 'tokenizer_config.json'), 'utf8'));
  return new TextTokenizer(json, { ...config, chat_template: chatTemplate }, { bosTokenId: null, eosTokenIds: [] });
}

test("a model's own chat_template comes first; --template overrides it; unknown names are refused", () => {
  const own = llama2With(BUILTIN_TEMPLATES.zephyr.template);
  const model = resolveChatFormat(own, { modelName: 'Whatever-7B', source: 'm/tokenizer_config.json' });
  assert.equal(model.name, 'model');
  assert.equal(model.template.render([U1]), '<|user|>\nHi!</s>\n<|assistant|>\n');
  const flag = resolveChatFormat(own, { template: 'chatml', modelName: 'x', source: 's' });
  assert.equal(flag.name, 'chatml');
  assert.equal(flag.description, 'chatml (--template)');
  assert.throws(() => resolveChatFormat(own, { template: 'vicuna', modelName: 'x', source: 's' }),
    /^UserError: --template: unknown template 'vicuna' \(use llama-2, llama-3, chatml, mistral, zephyr, plain\)$/);
});

test('a model without a template: guessed from its folder name, else plain', () => {
  const tok = fixtureTokenizer('llama2');
  assert.equal(tok.chatTemplate, null);
  const guess = (modelName: string) => resolveChatFormat(tok, { modelName, source: 's' });
  // The real TheBloke/Llama-2-13B-chat-GPTQ tokenizer_config.json has no chat_template.
  assert.equal(guess('TheBloke_Llama-2-13B-chat-GPTQ').name, 'llama-2');
  assert.equal(guess('TheBloke_Llama-2-13B-chat-GPTQ').description, 'llama-2 (guessed from the folder name)');
  assert.equal(guess('Mistral-7B-Instruct-v0.2-GPTQ').name, 'mistral');
  assert.equal(guess('TinyLlama-1.1B-Chat-v1.0-GPTQ').name, 'zephyr');
  const plain = guess('stories260K');
  assert.equal(plain.name, 'plain');
  assert.equal(plain.description, 'plain (the model has no chat_template)');
  assert.deepEqual(plain.stopStrings, ['\nUser:']);
});

test('end-of-turn markers stop as tokens where the vocabulary has them, else as text', () => {
  const tok = fixtureTokenizer('llama2');
  const chatml = resolveChatFormat(tok, { template: 'chatml', modelName: 'x', source: 's' });
  // Llama 2's vocabulary has no <|im_end|>: the marker is matched in the text.
  assert.deepEqual(chatml.stopTokenIds, []);
  assert.deepEqual(chatml.stopStrings, ['<|im_end|>', '<|im_start|>']);
  const llama2 = resolveChatFormat(tok, { template: 'llama-2', modelName: 'x', source: 's' });
  assert.deepEqual(llama2.stopStrings, ['[INST]']);
});

test('chat prompt ids: BOS once, whether the template writes it or the tokenizer adds it', () => {
  const tok = fixtureTokenizer('llama2');
  assert.equal(tok.addBos, true);
  const llama2 = new ChatTemplate(BUILTIN_TEMPLATES['llama-2'].template, tok, 'llama-2');
  const withBos = chatPromptIds(tok, llama2.render([U1]));
  assert.deepEqual(withBos, tok.encode('[INST] Hi! [/INST]', { addSpecial: true }));
  assert.equal(withBos.filter((id) => id === tok.bosId).length, 1);
  // Later turns' BOS tokens written by the template stay (one per [INST]).
  const two = chatPromptIds(tok, llama2.render([U1, A1, U2]));
  assert.equal(two.filter((id) => id === tok.bosId).length, 2);
  const plain = new ChatTemplate(PLAIN_TEMPLATE, tok, 'plain');
  const text = plain.render([U1]);
  assert.deepEqual(chatPromptIds(tok, text), tok.encode(text, { addSpecial: true }));
  assert.equal(chatPromptIds(tok, text)[0], tok.bosId);
  // A tokenizer that adds no BOS gets none; and never an EOS at the end of a prompt.
  const files = join(fixtures, 'tokenizers', 'llama2');
  const json = JSON.parse(readFileSync(join(files, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(files, 'tokenizer_config.json'), 'utf8'));
  const noBos = new TextTokenizer(json, { ...config, add_bos_token: false, add_eos_token: true }, { bosTokenId: null, eosTokenIds: [] });
  const ids = chatPromptIds(noBos, text);
  assert.notEqual(ids[0], noBos.bosId);
  assert.notEqual(ids.at(-1), noBos.eosIds[0]);
  assert.deepEqual(ids, noBos.encode(text));
  // stories260K (add_bos_token true, no template): BOS in front of the plain format.
  const stories = storiesTokenizer();
  assert.equal(chatPromptIds(stories, text)[0], 1);
});

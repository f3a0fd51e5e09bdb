// The chat format of a session: which Jinja template renders the conversation (the model's own
// tokenizer_config.json chat_template, or a built-in one for models without it), and which tokens or strings
// end the assistant's turn.
import { UserError } from '../errors.js';
import { ChatTemplate, PLAIN_TEMPLATE } from './chat-template.js';
import type { TextTokenizer } from './tokenizer.js';

// Built-in templates: the published chat_template strings, byte for byte as the models' tokenizer_config.json
// files carry them (the same strings are in fixtures/chat-templates/templates.jsonl; a test checks both).
/** meta-llama/Llama-2-*-chat-hf. */
const LLAMA_2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
/** meta-llama/Meta-Llama-3-*-Instruct. */
const LLAMA_3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
/** ChatML (OpenHermes, Qwen, Yi, ...). */
const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
/** mistralai/Mistral-7B-Instruct-v0.2 (no system role: Mistral's template refuses one). */
const MISTRAL = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
/** HuggingFaceH4/zephyr-7b-beta, TinyLlama-1.1B-Chat. */
const ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

interface BuiltinFormat {
  template: string;
  /** Markers that end the turn: a stop token where the vocabulary has them as tokens, else a stop string. */
  endOfTurn: string[];
  /** Text that means the model has started the next turn itself (models that never emit EOS). */
  stopStrings: string[];
}

export const BUILTIN_TEMPLATES = {
  'llama-2': { template: LLAMA_2, endOfTurn: [], stopStrings: ['[INST]'] },
  'llama-3': { template: LLAMA_3, endOfTurn: ['<|eot_id|>'], stopStrings: ['<|start_header_id|>'] },
  chatml: { template: CHATML, endOfTurn: ['<|im_end|>'], stopStrings: ['<|im_start|>'] },
  mistral: { template: MISTRAL, endOfTurn: [], stopStrings: ['[INST]'] },
  zephyr: { template: ZEPHYR, endOfTurn: [], stopStrings: ['<|user|>'] },
  plain: { template: PLAIN_TEMPLATE, endOfTurn: [], stopStrings: ['\nUser:'] },
} as const satisfies Record<string, BuiltinFormat>;

export type BuiltinTemplateName = keyof typeof BUILTIN_TEMPLATES;
export const BUILTIN_TEMPLATE_NAMES = Object.keys(BUILTIN_TEMPLATES) as BuiltinTemplateName[];

/** End-of-turn tokens of common chat models; a model's own template stops at those its vocabulary has. */
const KNOWN_END_OF_TURN = ['<|im_end|>', '<|eot_id|>', '<|eom_id|>', '<|end|>', '<end_of_turn>', '<|end_of_turn|>', '<|endoftext|>'];

export interface ChatFormat {
  /** A built-in template's name, or 'model' for the model's own chat_template. */
  name: BuiltinTemplateName | 'model';
  /** For the header: the name and where it came from. */
  description: string;
  template: ChatTemplate;
  /** Ids that end a reply besides the tokenizer's EOS ids. */
  stopTokenIds: number[];
  stopStrings: string[];
}

export interface FormatChoice {
  /** --template NAME, if given. */
  template?: string;
  /** The model folder's name (or the dummy preset's): some models without a template are known by it. */
  modelName: string;
  /** Where the model's own template comes from, for messages. */
  source: string;
}

export function parseTemplateName(value: string): BuiltinTemplateName {
  if ((BUILTIN_TEMPLATE_NAMES as string[]).includes(value)) return value as BuiltinTemplateName;
  throw new UserError(`--template: unknown template '${value}' (use ${BUILTIN_TEMPLATE_NAMES.join(', ')})`);
}

/** A template for a model that has none: by its special tokens, then by its folder name, else plain. */
function guessTemplate(tokenizer: TextTokenizer, modelName: string): { name: BuiltinTemplateName; why: string } | null {
  if (tokenizer.tokenToId('<|im_start|>') !== undefined) return { name: 'chatml', why: 'its vocabulary has <|im_start|>' };
  if (tokenizer.tokenToId('<|start_header_id|>') !== undefined) return { name: 'llama-3', why: 'its vocabulary has <|start_header_id|>' };
  const byName: [RegExp, BuiltinTemplateName][] = [
    [/llama-?2.*-chat/i, 'llama-2'],
    [/llama-?3.*instruct/i, 'llama-3'],
    [/mistral.*instruct/i, 'mistral'],
    [/zephyr|tinyllama.*chat/i, 'zephyr'],
  ];
  for (const [re, name] of byName) if (re.test(modelName)) return { name, why: 'guessed from the folder name' };
  return null;
}

function stopTokens(tokenizer: TextTokenizer, markers: readonly string[]): { ids: number[]; missing: string[] } {
  const ids: number[] = [];
  const missing: string[] = [];
  for (const m of markers) {
    // A marker the tokenizer reads as that one token (as the template writes it) stops as a token.
    const id = tokenizer.tokenToId(m);
    if (id !== undefined && tokenizer.encode(m).includes(id)) ids.push(id);
    else missing.push(m);
  }
  return { ids, missing };
}

function builtinFormat(tokenizer: TextTokenizer, name: BuiltinTemplateName, description: string): ChatFormat {
  const b: BuiltinFormat = BUILTIN_TEMPLATES[name];
  const eot = stopTokens(tokenizer, b.endOfTurn);
  return {
    name, description,
    template: new ChatTemplate(b.template, tokenizer, `built-in ${name} template`),
    stopTokenIds: eot.ids,
    stopStrings: [...eot.missing, ...b.stopStrings],
  };
}

/** --template if given, else the model's own chat_template, else a guess, else plain. */
export function resolveChatFormat(tokenizer: TextTokenizer, choice: FormatChoice): ChatFormat {
  if (choice.template !== undefined) {
    const name = parseTemplateName(choice.template);
    return builtinFormat(tokenizer, name, `${name} (--template)`);
  }
  if (tokenizer.chatTemplate) {
    return {
      name: 'model', description: "the model's chat_template",
      template: new ChatTemplate(tokenizer.chatTemplate, tokenizer, choice.source),
      stopTokenIds: stopTokens(tokenizer, KNOWN_END_OF_TURN).ids,
      stopStrings: [],
    };
  }
  const guess = guessTemplate(tokenizer, choice.modelName);
  if (guess) return builtinFormat(tokenizer, guess.name, `${guess.name} (${guess.why})`);
  return builtinFormat(tokenizer, 'plain', 'plain (the model has no chat_template)');
}

const bosPolicy = new WeakMap<TextTokenizer, boolean>();

/** Whether the tokenizer puts BOS in front of a text (add_bos_token, or its post-processor when that is unset). */
function addsBos(tokenizer: TextTokenizer): boolean {
  let adds = bosPolicy.get(tokenizer);
  if (adds === undefined) {
    adds = tokenizer.addBos ?? (tokenizer.bosId !== null && tokenizer.encode('a', { addSpecial: true })[0] === tokenizer.bosId);
    bosPolicy.set(tokenizer, adds);
  }
  return adds;
}

/**
 * Ids of a rendered conversation: the special tokens the template wrote are parsed as tokens, and BOS is put in
 * front as the model's tokenizer does unless the template wrote it already (never EOS: the reply follows).
 */
export function chatPromptIds(tokenizer: TextTokenizer, text: string): number[] {
  const ids = tokenizer.encode(text);
  const bos = tokenizer.bosId;
  if (bos !== null && ids[0] !== bos && addsBos(tokenizer)) ids.unshift(bos);
  return ids;
}

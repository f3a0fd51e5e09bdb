// Renders a conversation with the model's own chat template (tokenizer_config.json's `chat_template`,
// a Jinja template) through @huggingface/jinja, the way transformers' apply_chat_template does, within bounds on
// the work and memory a template may take (bounded-jinja.ts): model folders come from the internet.
import { Template } from '@huggingface/jinja';
import { UserError } from '../errors.js';
import { renderBounded } from './bounded-jinja.js';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface RenderOptions {
  /** Append the opening of the assistant's turn (default true). */
  addGenerationPrompt?: boolean;
}

/** What a template needs from the tokenizer. */
export interface TemplateTokens {
  bosToken: string | null;
  eosToken: string | null;
}

/** A named template, or an object with `{name, template}` entries (newer tokenizer_config.json files). */
export function pickTemplate(value: unknown, name = 'default'): string | null {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const entry = value.find((e) => e && typeof e === 'object' && (e as { name?: unknown }).name === name);
    const tpl = (entry as { template?: unknown } | undefined)?.template;
    return typeof tpl === 'string' ? tpl : null;
  }
  return null;
}

export class ChatTemplate {
  private readonly template: Template;

  /** @param source where the template came from, for error messages. */
  constructor(templateText: string, private readonly tokens: TemplateTokens, private readonly source: string) {
    try {
      this.template = new Template(templateText);
    } catch (err) {
      throw new UserError(`${source}: chat_template does not parse (${(err as Error).message})`);
    }
  }

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    try {
      // @huggingface/jinja defines raise_exception itself: it throws an Error with the template's message.
      return renderBounded(this.template, {
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.tokens.bosToken ?? '',
        eos_token: this.tokens.eosToken ?? '',
      });
    } catch (err) {
      throw new UserError(`${this.source}: chat template: ${String((err as Error).message).split('\n')[0]}`);
    }
  }
}

/** Fallback for models without a template: labelled turns and no special tokens (encode it with addSpecial). */
export const PLAIN_TEMPLATE =
  "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}" +
  "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n' }}" +
  "{% else %}{{ 'Assistant: ' + message['content'] + '\\n' }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

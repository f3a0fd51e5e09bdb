// Turns the user's prompt text into ids and checks that it fits the context before a model is opened.
import { UserError } from '../errors.js';
import type { TextTokenizer } from './tokenizer.js';

/**
 * Ids of a plain-text prompt, with BOS as the model's tokenizer adds it. An empty prompt is BOS alone:
 * the model starts from scratch (stories260K then tells a story).
 */
export function promptIds(tokenizer: TextTokenizer, text: string): number[] {
  if (text.length === 0) {
    if (tokenizer.bosId === null) {
      throw new UserError("-p/--prompt: the prompt is empty and this model's tokenizer has no BOS token to start from");
    }
    return [tokenizer.bosId];
  }
  const ids = tokenizer.encode(text, { addSpecial: true });
  if (ids.length === 0) throw new UserError('-p/--prompt: the prompt has no tokens');
  return ids;
}

/** The prompt must leave room for at least one generated token. */
export function checkPromptFits(ids: readonly number[], maxSeqLen: number, limitName: string): void {
  if (ids.length >= maxSeqLen) {
    throw new UserError(`-p/--prompt: the prompt is ${ids.length} tokens; ${limitName} is ${maxSeqLen}, ` +
      'which leaves no room to generate');
  }
}

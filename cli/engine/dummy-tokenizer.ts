// Text for --dummy models (random weights built on the GPU): a real tokenizer of the same vocabulary size,
// so chat and ppl can run on them to measure speed. The text they produce is meaningless by design.
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { packageRoot } from '../native/addon.js';
import { readTokenizerFiles } from './loader/tokenizer-config.js';
import { TextTokenizer } from './tokenizer.js';

/** Shipped tokenizers by vocabulary size: Llama 2's (32000; the llama-7b/13b/70b presets) and stories260K's (512; tiny). */
const TOKENIZER_DIRS: Record<number, string> = {
  32000: join('fixtures', 'tokenizers', 'llama2'),
  512: join('fixtures', 'models', 'stories260K'),
};

export function dummyTokenizer(name: string, vocabSize: number): TextTokenizer {
  const rel = TOKENIZER_DIRS[vocabSize];
  if (!rel) {
    const sizes = Object.keys(TOKENIZER_DIRS).join(', ');
    throw new UserError(`--dummy ${name}: no tokenizer ships for a ${vocabSize}-token vocabulary (dummies with ${sizes} tokens work)`);
  }
  return TextTokenizer.fromFiles(readTokenizerFiles(join(packageRoot, rel)), { bosTokenId: null, eosTokenIds: [] });
}

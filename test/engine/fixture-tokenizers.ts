// Tokenizers of the fixture folders, built the way the CLI builds them (loader files → TextTokenizer).
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { readTokenizerFiles } from '../../cli/engine/loader/tokenizer-config.js';
import { loadModelSpec } from '../../cli/engine/loader/index.js';
import { TextTokenizer } from '../../cli/engine/tokenizer.js';

const cache = new Map<string, TextTokenizer>();

/** fixtures/tokenizers/NAME (tokenizer files only, no config.json). */
export function fixtureTokenizer(name: 'llama2' | 'mistral'): TextTokenizer {
  let tok = cache.get(name);
  if (!tok) {
    const files = readTokenizerFiles(join(fixtures, 'tokenizers', name));
    tok = TextTokenizer.fromFiles(files, { bosTokenId: null, eosTokenIds: [] });
    cache.set(name, tok);
  }
  return tok;
}

export const storiesDir = join(fixtures, 'models', 'stories260K');

export function storiesTokenizer(): TextTokenizer {
  let tok = cache.get('stories');
  if (!tok) {
    const spec = loadModelSpec(storiesDir);
    tok = TextTokenizer.fromFiles(spec.tokenizer, spec);
    cache.set('stories', tok);
  }
  return tok;
}

// stories260K with a 16384-position context (RoPE has no table to outgrow): a generation that runs for
// minutes on the CPU, so a test can close its stdout or press Ctrl+C while it is surely mid-way. Its greedy
// run from "Once upon a time" makes 16000 tokens without an end-of-sequence token (checked once, 6 min).
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fixtures } from '../helpers/run-cli.js';

const FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

export function longContextModel(): string {
  const dir = mkdtempSync(join(tmpdir(), 'xllama-long-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of FILES) copyFileSync(join(fixtures, 'models', 'stories260K', f), join(dir, f));
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  config.max_position_embeddings = 16384;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

/** generate flags for a long greedy run on one thread (the other test files keep the second core). */
export const LONG_RUN = ['--backend', 'cpu', '--threads', '1', '--temperature', '0', '-n', '16000', '-p', 'Once upon a time'];

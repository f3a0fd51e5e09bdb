// Test helpers: copies of the fixture models in a tmp folder, to edit or damage.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fixtures } from '../helpers/run-cli.js';

export const FP16 = 'stories260K';
export const G32 = 'stories260K-gptq-4bit-g32';
export const G64_ACT = 'stories260K-gptq-4bit-g64-actorder';

export const fixtureModel = (name: string): string => join(fixtures, 'models', name);

const made: string[] = [];
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** A fresh copy of a fixture model (without the large reference files), removed after the test file. */
export function copyFixture(name: string): string {
  const root = mkdtempSync(join(tmpdir(), 'xllama-loader-'));
  made.push(root);
  const dir = join(root, name);
  cpSync(fixtureModel(name), dir, {
    recursive: true,
    filter: (src) => !/(reference\.json|calibration\.json|stories\.txt|\.txt)$/.test(src),
  });
  return dir;
}

export function readJson(path: string): Record<string, any> {
  return JSON.parse(readFileSync(path, 'utf8'));
}

export function editJson(path: string, edit: (obj: Record<string, any>) => void): void {
  const obj = readJson(path);
  edit(obj);
  writeFileSync(path, JSON.stringify(obj, null, 2));
}

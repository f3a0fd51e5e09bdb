// Which xllama this is: the package version, and the git commit the TypeScript was built from
// (dist/build-info.json, written by scripts/write-build-info.mjs at `npm run build:ts`, so it travels
// with dist/ to machines that have no .git).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './native/addon.js';

export interface BuildInfo {
  version: string;
  /** Short commit hash, with "-dirty" when the tree had uncommitted changes; null when unknown. */
  commit: string | null;
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export function buildInfo(): BuildInfo {
  const pkg = readJson(join(packageRoot, 'package.json'));
  const stamp = readJson(join(packageRoot, 'dist', 'build-info.json'));
  return {
    version: typeof pkg?.version === 'string' ? pkg.version : 'unknown',
    commit: typeof stamp?.commit === 'string' ? stamp.commit : null,
  };
}

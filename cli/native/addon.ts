// Loads the compiled Node-API addon (build/Release/xllama.node) once, lazily.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import type { NativeAddon } from './types.js';

/** The package root: dist/cli/native/addon.js lives three levels below it. */
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const candidates = [
    process.env.XLLAMA_ADDON,
    join(packageRoot, 'build', 'Release', 'xllama.node'),
    join(packageRoot, 'build', 'Debug', 'xllama.node'),
  ].filter((p): p is string => Boolean(p));
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    throw new UserError(`native addon not found (looked for ${candidates.join(', ')}); run \`npm install\` to build it`);
  }
  const require = createRequire(import.meta.url);
  try {
    cached = require(path) as NativeAddon;
  } catch (err) {
    throw new UserError(`native addon ${path} failed to load: ${(err as Error).message.split('\n')[0]}`);
  }
  return cached;
}

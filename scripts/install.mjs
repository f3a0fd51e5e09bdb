#!/usr/bin/env node
// npm's install step. An installed package whose prebuilt addon (or an earlier local build) loads here needs
// nothing more; otherwise the addon is built from the package's sources by scripts/build-addon.mjs, which
// says in one line what is missing when it can't. A source checkout (it has test/, which the package never
// ships) always builds, and so do explicit build settings (XLLAMA_CUDA, XLLAMA_CUDA_ARCH, XLLAMA_CUBLAS,
// XLLAMA_BUILD_FROM_SOURCE=1): that is how `XLLAMA_CUDA_ARCH=89 npm rebuild xllama` rebuilds.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const locator = join(root, 'dist', 'cli', 'native', 'addon.js');
const sourceCheckout = existsSync(join(root, 'test'));
const buildAsked = process.env.XLLAMA_BUILD_FROM_SOURCE === '1' ||
  ['XLLAMA_CUDA', 'XLLAMA_CUDA_ARCH', 'XLLAMA_CUBLAS'].some((k) => process.env[k]);

async function usablePrebuilt() {
  if (sourceCheckout || buildAsked || !existsSync(locator)) return false;
  const { addonCandidates, loadFirstAddon, describeAddonOrigin } = await import(pathToFileURL(locator).href);
  let found;
  try {
    found = loadFirstAddon(addonCandidates(root, {}));
  } catch {
    return false;  // none fits: build one
  }
  process.stdout.write(`xllama: using the ${describeAddonOrigin(found.origin)}\n`);
  if (!found.addon.buildInfo().backends.includes('cuda') && existsSync('/proc/driver/nvidia/version')) {
    process.stdout.write('xllama: this machine has an NVIDIA GPU and this addon is CPU-only: `xllama build --cuda` ' +
      'builds the CUDA backend (needs the CUDA toolkit)\n');
  }
  return true;
}

if (!(await usablePrebuilt())) {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-addon.mjs')], { cwd: root, stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}

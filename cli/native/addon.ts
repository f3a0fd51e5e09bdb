// Finds and loads the Node-API addon once, lazily, the way prebuilt-binary packages do (node-gyp-build's
// order): XLLAMA_ADDON when set; else a local build (build/Release, made by `xllama build`, by the install
// script when no prebuild fitted, or in a source checkout); else the package's prebuild for this platform
// (prebuilds/<platform>-<arch>[-cuda]/xllama.node). A candidate that exists but fails to load (another
// libc, a missing shared library) is skipped for the next one, and the error lists why each failed.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import type { NativeAddon } from './types.js';

/** The package root: dist/cli/native/addon.js lives three levels below it. */
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export type AddonKind = 'env' | 'local' | 'prebuilt';

export interface AddonCandidate {
  kind: AddonKind;
  path: string;
  /** Prebuilds: the folder name under prebuilds/, e.g. "linux-x64-cuda". */
  tag?: string;
}

/** Where the loaded addon came from, or why none could be loaded. */
export type AddonOrigin = AddonCandidate | { kind: 'missing'; reason: string };

/** Folder names of the prebuilds that fit this machine, best first. */
export function prebuildTags(platform: string = process.platform, arch: string = process.arch,
    nvidiaDriver: boolean = hasNvidiaDriver()): string[] {
  const cpu = `${platform}-${arch}`;
  // A CUDA build also runs without a GPU (on the CPU backend), so both fit; the driver decides the order.
  return nvidiaDriver ? [`${cpu}-cuda`, cpu] : [cpu, `${cpu}-cuda`];
}

function hasNvidiaDriver(): boolean {
  return process.platform === 'linux' && existsSync('/proc/driver/nvidia/version');
}

/** Every place an addon may be, in the order they are tried (existing or not). */
export function addonCandidates(root: string = packageRoot, env: NodeJS.ProcessEnv = process.env,
    tags: string[] = prebuildTags()): AddonCandidate[] {
  if (env.XLLAMA_ADDON) return [{ kind: 'env', path: env.XLLAMA_ADDON }];
  return [
    { kind: 'local', path: join(root, 'build', 'Release', 'xllama.node') },
    { kind: 'local', path: join(root, 'build', 'Debug', 'xllama.node') },
    ...tags.map((tag) => ({ kind: 'prebuilt' as const, tag, path: join(root, 'prebuilds', tag, 'xllama.node') })),
  ];
}

/** The first candidate that loads, or a UserError saying what was tried and how to get an addon. */
export function loadFirstAddon(candidates: AddonCandidate[]): { addon: NativeAddon; origin: AddonCandidate } {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const c of candidates) {
    if (!existsSync(c.path)) {
      if (c.kind === 'env') throw new UserError(`XLLAMA_ADDON: ${c.path} does not exist`);
      continue;
    }
    try {
      return { addon: require(c.path) as NativeAddon, origin: c };
    } catch (err) {
      failures.push(`${c.path} failed to load: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const howTo = 'build one with `xllama build` (needs CMake 3.18+ and a C++17 compiler; see README "Install")';
  if (failures.length > 0) throw new UserError(`no native addon could be loaded (${failures.join('; ')}); ${howTo}`);
  throw new UserError(`no native addon for ${process.platform}-${process.arch}: this package has no prebuilt ` +
    `addon for it and there is no local build; ${howTo}`);
}

let loaded: { addon: NativeAddon; origin: AddonCandidate } | undefined;

export function loadAddon(): NativeAddon {
  loaded ??= loadFirstAddon(addonCandidates());
  return loaded.addon;
}

/** Which addon this process uses (loading it if needed), or why there is none; never throws a UserError. */
export function addonOrigin(): AddonOrigin {
  try {
    loadAddon();
    return loaded!.origin;
  } catch (err) {
    if (err instanceof UserError) return { kind: 'missing', reason: err.message };
    throw err;
  }
}

/** One line for `xllama --version`: "prebuilt linux-x64 (/…/xllama.node)", "local build (…)", … */
export function describeAddonOrigin(origin: AddonOrigin): string {
  switch (origin.kind) {
    case 'missing': return `none (${origin.reason})`;
    case 'env': return `XLLAMA_ADDON (${origin.path})`;
    case 'local': return `local build (${origin.path})`;
    case 'prebuilt': return `prebuilt ${origin.tag} (${origin.path})`;
  }
}

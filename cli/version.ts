// `xllama --version`: what llama-cli --version tells too — the version, the commit it was built from,
// what the native addon was built with (backends, CUDA runtime), and the Node.js it runs on.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadAddon, packageRoot } from './native/addon.js';

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function readTrimmed(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** HEAD's commit from a checkout's .git (a folder, or a worktree's "gitdir:" file), without running git. */
export function checkoutCommit(root: string): string | null {
  const dotGit = join(root, '.git');
  if (!existsSync(dotGit)) return null;
  let gitDir = dotGit;
  if (statSync(dotGit).isFile()) {
    const pointer = readTrimmed(dotGit)?.match(/^gitdir:\s*(.+)$/);
    if (!pointer) return null;
    gitDir = resolve(root, pointer[1]!);
  }
  const head = readTrimmed(join(gitDir, 'HEAD'));
  if (!head) return null;
  if (!head.startsWith('ref: ')) return /^[0-9a-f]{40,64}$/.test(head) ? head : null;
  const ref = head.slice(5);
  // Worktrees keep HEAD in their own folder and the refs in the shared one ("commondir").
  const common = readTrimmed(join(gitDir, 'commondir'));
  const commonDir = common ? resolve(gitDir, common) : gitDir;
  for (const dir of [gitDir, commonDir]) {
    const loose = readTrimmed(join(dir, ref));
    if (loose && /^[0-9a-f]{40,64}$/.test(loose)) return loose;
  }
  const packed = readTrimmed(join(commonDir, 'packed-refs')) ?? '';
  for (const line of packed.split('\n')) {
    const [sha, name] = line.trim().split(' ');
    if (name === ref && sha && /^[0-9a-f]{40,64}$/.test(sha)) return sha;
  }
  return null;
}

/** The commit: live from .git in a checkout, else as recorded when dist/ was built (scripts/record-commit.mjs). */
export function sourceCommit(root: string = packageRoot): string {
  const live = checkoutCommit(root);
  if (live) return live.slice(0, 10);
  return readTrimmed(join(root, 'dist', 'cli', 'commit.txt')) || 'unknown';
}

function backendsLine(): string {
  try {
    const sys = loadAddon().systemInfo();
    return sys.cudaCompiled ? `backends: cpu, cuda (CUDA runtime ${sys.cudaRuntime})` : 'backends: cpu (built without CUDA)';
  } catch (err) {
    return `backends: unknown (${(err as Error).message})`;
  }
}

export function versionText(): string {
  const lines = [
    `xllama ${packageVersion()} (commit ${sourceCommit()})`,
    backendsLine(),
    // MERGE(install): add here `addon: ${describeAddonOrigin(addonOrigin())}` from cli/native/addon.ts
    // (prebuilt or local build, and its path) once the install branch is in.
    `node ${process.version} ${process.platform}-${process.arch}`,
  ];
  return `${lines.join('\n')}\n`;
}

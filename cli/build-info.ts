// Which xllama this is: the package version, and the git commit the TypeScript was built from
// (dist/build-info.json, written by scripts/write-build-info.mjs at `npm run build:ts`, so it travels
// with dist/ to machines that have no .git). In a checkout, HEAD is read from .git as it is now, since a
// commit made after the last build would make the recorded one stale.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
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

function readTrimmed(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

const SHA = /^[0-9a-f]{40,64}$/;

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
  if (!head.startsWith('ref: ')) return SHA.test(head) ? head : null;
  const ref = head.slice(5);
  // Worktrees keep HEAD in their own folder and the refs in the shared one ("commondir").
  const common = readTrimmed(join(gitDir, 'commondir'));
  const commonDir = common ? resolve(gitDir, common) : gitDir;
  for (const dir of [gitDir, commonDir]) {
    const loose = readTrimmed(join(dir, ref));
    if (loose && SHA.test(loose)) return loose;
  }
  for (const line of (readTrimmed(join(commonDir, 'packed-refs')) ?? '').split('\n')) {
    const [sha, name] = line.trim().split(' ');
    if (name === ref && sha && SHA.test(sha)) return sha;
  }
  return null;
}

/** HEAD now in a checkout (the recorded commit, with its "-dirty", when it is the same), else the recorded one. */
function currentCommit(root: string, recorded: string | null): string | null {
  const head = checkoutCommit(root);
  if (!head) return recorded;
  if (recorded && head.startsWith(recorded.replace(/-dirty$/, ''))) return recorded;
  return head.slice(0, 12);
}

export function buildInfo(): BuildInfo {
  const pkg = readJson(join(packageRoot, 'package.json'));
  const stamp = readJson(join(packageRoot, 'dist', 'build-info.json'));
  return {
    version: typeof pkg?.version === 'string' ? pkg.version : 'unknown',
    commit: currentCommit(packageRoot, typeof stamp?.commit === 'string' ? stamp.commit : null),
  };
}

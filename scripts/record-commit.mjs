// Records the commit dist/ is built from in dist/cli/commit.txt, for `xllama --version` where there is no
// .git to read (an installed package). `git describe --always --dirty`: a tag if there is one, else the
// short hash, "-dirty" with uncommitted changes. Outside a checkout of xllama itself (a build from a
// tarball, perhaps inside someone else's repository) it records nothing.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';

const out = 'dist/cli/commit.txt';
try {
  if (!existsSync('.git')) throw new Error('not a checkout');
  const described = execFileSync('git', ['describe', '--always', '--dirty', '--abbrev=10'], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'],
  }).trim();
  mkdirSync('dist/cli', { recursive: true });
  writeFileSync(out, `${described}\n`);
} catch {
  rmSync(out, { force: true });
}

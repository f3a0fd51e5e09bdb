// What `npm pack` puts in the package (issue 17): what a user needs — the launcher, the compiled CLI, the
// addon's sources and build scripts (for source builds and `xllama build`), prebuilt addons, the bundled demo
// model — and nothing else: no tests, test fixtures, device scripts, source maps or development tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { repoRoot } from '../helpers/run-cli.js';

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [relative(repoRoot, p)];
  });
}

const demoModel = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']
  .map((f) => `fixtures/models/stories260K/${f}`);
const allowed: RegExp[] = [
  /^(package\.json|README\.md|CHANGELOG\.md|CMakeLists\.txt)$/,
  /^bin\/xllama\.js$/,
  /^dist\/cli\/.+\.js$/,
  /^dist\/build-info\.json$/,  // the commit that --version and bench's footer name, where there is no .git
  /^(addon|cuda)\/.+\.(cc|cu|cuh|h)$/,
  /^scripts\/(build-addon|cuda-arch|install)\.mjs$/,
  /^prebuilds\/[a-z0-9]+-[a-z0-9]+(-cuda)?\/xllama\.node$/,
  /^fixtures\/models\/README\.md$/,  // where the demo model comes from, and its licence
  ...demoModel.map((f) => new RegExp(`^${f.replace(/\./g, '\\.')}$`)),
];

test('npm pack --dry-run: everything a user needs, nothing else', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);

  const stray = files.filter((f) => !allowed.some((re) => re.test(f)));
  assert.deepEqual(stray, [], 'files that should not be in the package');

  const needed = [
    'package.json', 'bin/xllama.js', 'CMakeLists.txt', 'scripts/build-addon.mjs', 'scripts/cuda-arch.mjs',
    'scripts/install.mjs', 'README.md', 'dist/build-info.json', ...demoModel,
    // every addon and CUDA source, so a source build from the package is complete
    ...walk(join(repoRoot, 'addon')), ...walk(join(repoRoot, 'cuda')),
    // the whole compiled CLI (build:ts has run before the tests)
    ...walk(join(repoRoot, 'dist', 'cli')).filter((f) => f.endsWith('.js')),
  ];
  const missing = needed.filter((f) => !files.includes(f));
  assert.deepEqual(missing, [], 'files missing from the package');
  assert.ok(files.includes('dist/cli/commands/build.js'));
});

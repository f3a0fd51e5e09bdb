// How the addon is found (cli/native/addon.ts): XLLAMA_ADDON, else a local build, else the package's prebuild
// for this platform (the CUDA one first where an NVIDIA driver is present); a file that fails to load is
// passed over for the next; with none, one line says how to get one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/run-cli.js';
import { addonCandidates, describeAddonOrigin, loadFirstAddon, prebuildTags } from '../../cli/native/addon.js';
import { UserError } from '../../cli/errors.js';

const builtAddon = join(repoRoot, 'build', 'Release', 'xllama.node');

test('prebuild folders: the CUDA one first only where an NVIDIA driver is present', () => {
  assert.deepEqual(prebuildTags('linux', 'x64', true), ['linux-x64-cuda', 'linux-x64']);
  assert.deepEqual(prebuildTags('linux', 'arm64', false), ['linux-arm64', 'linux-arm64-cuda']);
});

test('order: XLLAMA_ADDON alone when set; else local builds, then prebuilds', () => {
  assert.deepEqual(addonCandidates('/pkg', { XLLAMA_ADDON: '/x/xllama.node' }), [{ kind: 'env', path: '/x/xllama.node' }]);
  assert.deepEqual(addonCandidates('/pkg', {}, ['linux-x64', 'linux-x64-cuda']).map((c) => [c.kind, c.path]), [
    ['local', '/pkg/build/Release/xllama.node'],
    ['local', '/pkg/build/Debug/xllama.node'],
    ['prebuilt', '/pkg/prebuilds/linux-x64/xllama.node'],
    ['prebuilt', '/pkg/prebuilds/linux-x64-cuda/xllama.node'],
  ]);
});

test('a candidate that fails to load is passed over; the next one that loads is used and reported', (t) => {
  const pkg = mkdtempSync(join(tmpdir(), 'xllama-locator-'));
  t.after(() => rmSync(pkg, { recursive: true, force: true }));
  mkdirSync(join(pkg, 'build', 'Release'), { recursive: true });
  writeFileSync(join(pkg, 'build', 'Release', 'xllama.node'), 'not a shared library');
  mkdirSync(join(pkg, 'prebuilds', 'linux-x64'), { recursive: true });
  copyFileSync(builtAddon, join(pkg, 'prebuilds', 'linux-x64', 'xllama.node'));
  const { addon, origin } = loadFirstAddon(addonCandidates(pkg, {}, ['linux-x64-cuda', 'linux-x64']));
  assert.deepEqual(origin, { kind: 'prebuilt', tag: 'linux-x64', path: join(pkg, 'prebuilds', 'linux-x64', 'xllama.node') });
  assert.ok(addon.buildInfo().backends.includes('cpu'));
  assert.equal(describeAddonOrigin(origin), `prebuilt linux-x64 (${origin.path})`);
});

test('nothing loadable: one UserError naming each failure and `xllama build`', (t) => {
  const pkg = mkdtempSync(join(tmpdir(), 'xllama-locator-'));
  t.after(() => rmSync(pkg, { recursive: true, force: true }));
  assert.throws(() => loadFirstAddon(addonCandidates(pkg, {}, ['linux-x64'])), (err: unknown) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /^no native addon for \w+-\w+: this package has no prebuilt addon for it and there is no local build; build one with `xllama build`/);
    return true;
  });
  mkdirSync(join(pkg, 'prebuilds', 'linux-x64'), { recursive: true });
  writeFileSync(join(pkg, 'prebuilds', 'linux-x64', 'xllama.node'), 'not a shared library');
  assert.throws(() => loadFirstAddon(addonCandidates(pkg, {}, ['linux-x64'])),
    /^UserError: no native addon could be loaded \(.*prebuilds\/linux-x64\/xllama\.node failed to load: .*\); build one with `xllama build`/);
  assert.throws(() => loadFirstAddon(addonCandidates(pkg, { XLLAMA_ADDON: join(pkg, 'nope.node') })),
    /^UserError: XLLAMA_ADDON: .*nope\.node does not exist$/);
  assert.equal(describeAddonOrigin({ kind: 'missing', reason: 'why' }), 'none (why)');
  assert.equal(describeAddonOrigin({ kind: 'local', path: '/p/build/Release/xllama.node' }), 'local build (/p/build/Release/xllama.node)');
});

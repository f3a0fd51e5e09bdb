// Issue 17 end to end, as a user installs xllama: `npm pack`, then `npm install -g` of the tarball into a
// temporary prefix, its dependencies from a local registry (no network), then the installed `xllama` runs:
// --version, info on a fixture, generate on the bundled demo model (against the transformers reference).
// The package's prebuild is this checkout's addon (the mechanism is the one a user gets: prebuilds/ in the
// tarball, the install script choosing it, the loader finding it). Then the paths without a prebuild: one line
// when nothing can build it, and `xllama build` compiling the installed sources.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures, repoRoot } from '../helpers/run-cli.js';
import { startLocalRegistry, type LocalRegistry } from '../helpers/local-registry.js';
import { loadAddon } from '../../cli/native/addon.js';

const reference = JSON.parse(readFileSync(join(fixtures, 'models', 'stories260K', 'reference.json'), 'utf8'));
const greedy201 = reference.sequences.find((s: { name: string }) => s.name === 'greedy201').ids as number[];
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const linux = process.platform === 'linux';

let work = '';
let registry: LocalRegistry | undefined;
let installed = '';  // <prefix>/lib/node_modules/xllama
let xllamaBin = '';  // <prefix>/bin/xllama
let installLog: SpawnSyncReturns<string>;

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd ?? work, timeout: opts.timeout ?? 180_000,
    env: { ...process.env, FORCE_COLOR: '0', ...opts.env } });
}
function ok(r: SpawnSyncReturns<string>, what: string): SpawnSyncReturns<string> {
  assert.equal(r.status, 0, `${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}
const xllama = (args: string[], env: NodeJS.ProcessEnv = {}) => sh(xllamaBin, args, { env });

/** Like sh(), without blocking the event loop (the local registry answers from this process). */
function shAsync(cmd: string, args: string[]): Promise<SpawnSyncReturns<string>> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd: work, env: { ...process.env, FORCE_COLOR: '0' }, timeout: 300_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (status, signal) =>
      done({ status, signal, stdout, stderr, pid: child.pid ?? 0, output: [null, stdout, stderr] }));
  });
}

before(async () => {
  if (!linux) return;
  work = mkdtempSync(join(tmpdir(), 'xllama-install-'));
  const npm = (args: string[], cwd = work) => ok(sh('npm', [...args, '--no-audit', '--no-fund', '--no-update-notifier'],
    { cwd }), `npm ${args[0]}`);
  // 1. The package as `npm pack` makes it from this checkout (dist/ is built before the tests run).
  const packed = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], repoRoot).stdout);
  ok(sh('tar', ['-xzf', join(work, packed[0].filename), '-C', work]), 'tar');
  // 2. Its prebuild, placed by the publisher's script (prepack runs it in `npm pack`): this checkout's addon,
  // unless that links cuBLAS (not portable), in which case the script builds the CPU prebuild itself.
  const reuse = loadAddon().buildInfo().cublas ? [] : ['--from', join(repoRoot, 'build', 'Release', 'xllama.node')];
  ok(sh(process.execPath, [join(repoRoot, 'scripts', 'prebuild.mjs'), ...reuse, '--package-dir', join(work, 'package')],
    { timeout: 600_000 }), 'prebuild');
  rmSync(join(work, packed[0].filename));
  const tarball = join(work, JSON.parse(npm(['pack', './package', '--ignore-scripts', '--json']).stdout)[0].filename);
  // 3. The user's install: global, into an empty prefix, with a cache of its own.
  registry = await startLocalRegistry(repoRoot);
  installLog = await shAsync('npm', ['install', '-g', '--prefix', join(work, 'prefix'), '--registry', registry.url,
    '--cache', join(work, 'npm-cache'), '--foreground-scripts', '--no-audit', '--no-fund', '--no-update-notifier', tarball]);
  installed = join(work, 'prefix', 'lib', 'node_modules', 'xllama');
  xllamaBin = join(work, 'prefix', 'bin', 'xllama');
});

after(async () => {
  await registry?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('npm install -g of the packed tarball uses the prebuilt addon: nothing is compiled', { skip: !linux && 'Linux only' }, () => {
  ok(installLog, 'npm install -g');
  assert.match(installLog.stdout, /xllama: using the prebuilt linux-x64(-cuda)? \(.*prebuilds\/linux-x64(-cuda)?\/xllama\.node\)/);
  assert.ok(registry!.fetched.some((p) => p.startsWith('commander@')), 'dependencies came from the local registry');
  assert.ok(!existsSync(join(installed, 'build')), 'no local build was made');
  assert.ok(existsSync(xllamaBin));
});

test('the installed xllama: --version, info on a fixture, generate on the bundled demo model', { skip: !linux && 'Linux only' }, () => {
  // --version names the version, the commit recorded at build time (there is no .git here) and the prebuilt addon.
  const versionLines = ok(xllama(['--version']), '--version').stdout.trim().split('\n');
  assert.match(versionLines[0]!, new RegExp(`^xllama ${version.replace(/\./g, '\\.')} \\(commit [0-9a-f]{7,}(-dirty)?\\)$`));
  assert.match(versionLines[2]!, /^addon: prebuilt linux-x64(-cuda)? \(.*\/lib\/node_modules\/xllama\/prebuilds\/linux-x64(-cuda)?\/xllama\.node\)$/);

  const info = JSON.parse(ok(xllama(['info', join(fixtures, 'models', 'stories260K-gptq-4bit-g32'), '--json']), 'info').stdout);
  const quantize = JSON.parse(readFileSync(join(fixtures, 'models', 'stories260K-gptq-4bit-g32', 'quantize_config.json'), 'utf8'));
  assert.equal(info.quantization.bits, quantize.bits);
  assert.equal(info.quantization.groupSize, quantize.group_size);

  // The demo model shipped in the package, greedy: transformers' ids for 'Once upon a time'.
  const demo = join(installed, 'fixtures', 'models', 'stories260K');
  const gen = JSON.parse(ok(xllama(['generate', '-m', demo, '-p', 'Once upon a time', '-n', '40', '--temperature', '0',
    '--backend', 'cpu', '--json']), 'generate').stdout);
  assert.deepEqual(gen.promptIds, greedy201.slice(0, 5));
  assert.deepEqual(gen.generatedIds, greedy201.slice(5, 45));

  // Which addon the installed CLI loads (addonOrigin(), for --version).
  const origin = JSON.parse(ok(sh(process.execPath, ['--input-type=module', '-e',
    `import { addonOrigin } from ${JSON.stringify(join(installed, 'dist', 'cli', 'native', 'addon.js'))};` +
    'console.log(JSON.stringify(addonOrigin()))']), 'addonOrigin').stdout);
  assert.equal(origin.kind, 'prebuilt');
  assert.match(origin.path, /\/lib\/node_modules\/xllama\/prebuilds\/linux-x64(-cuda)?\/xllama\.node$/);
});

test('no prebuild and no CMake: the install step and the commands each say so in one line', { skip: !linux && 'Linux only' }, (t) => {
  const prebuilds = join(installed, 'prebuilds');
  renameSync(prebuilds, `${prebuilds}.off`);
  t.after(() => renameSync(`${prebuilds}.off`, prebuilds));
  // A PATH with Node and nothing else: no cmake, no compiler.
  const bare = join(work, 'bare-bin');
  mkdirSync(bare, { recursive: true });
  if (!existsSync(join(bare, 'node'))) symlinkSync(process.execPath, join(bare, 'node'));
  const install = sh(process.execPath, [join(installed, 'scripts', 'install.mjs')], { cwd: installed, env: { PATH: bare } });
  assert.equal(install.status, 2, install.stderr);
  assert.equal(install.stderr, 'xllama: cannot build the native addon: CMake was not found; install CMake 3.18 or newer ' +
    '(e.g. `sudo apt install cmake`, `brew install cmake` or `pip install cmake`) and run `xllama build`\n');
  assert.ok(!existsSync(join(installed, 'build')), 'nothing half-built');

  const gen = xllama(['generate', '-m', join(installed, 'fixtures', 'models', 'stories260K'), '-p', 'Once', '-n', '2']);
  assert.equal(gen.status, 2);
  assert.match(gen.stderr, /^xllama: no native addon for linux-x64: this package has no prebuilt addon for it and there is no local build; build one with `xllama build` \(needs CMake 3\.18\+ and a C\+\+17 compiler; see README "Install"\)\n$/);
});

test('xllama build: bad flags are one line; --cpu compiles the installed sources and is used from then on',
  { skip: !linux && 'Linux only' }, () => {
    for (const [args, message] of [
      [['--cuda', '--cpu'], /^xllama: --cuda and --cpu: choose one\n$/],
      [['--cuda-arch', '75'], /^xllama: --cuda-arch: 75 is older than compute capability 8\.0, the oldest xllama's kernels support\n$/],
      [['--cuda-arch', 'sm89'], /^xllama: --cuda-arch: "sm89" is not a CUDA architecture/],
    ] as [string[], RegExp][]) {
      const r = xllama(['build', ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.ok(!existsSync(join(installed, 'build')), 'a refused build compiles nothing');

    const build = ok(xllama(['build', '--cpu']), 'xllama build --cpu');
    assert.match(build.stdout, /^xllama: building the native addon: CPU backend, CUDA off; compiler output in .*\/build\/build\.log\n/);
    assert.match(build.stdout, /\nxllama: built .*\/lib\/node_modules\/xllama\/build\/Release\/xllama\.node in \d+(m \d+)?s: CPU backend.*; no CUDA backend \(CUDA off\)\n$/);
    assert.ok(!/warning|ptxas|Building CXX/.test(build.stdout + build.stderr), 'the compiler output stays in the log');
    assert.ok(readdirSync(join(installed, 'build')).includes('build.log'));

    const origin = JSON.parse(ok(sh(process.execPath, ['--input-type=module', '-e',
      `import { addonOrigin } from ${JSON.stringify(join(installed, 'dist', 'cli', 'native', 'addon.js'))};` +
      'console.log(JSON.stringify(addonOrigin()))']), 'addonOrigin').stdout);
    assert.deepEqual(origin, { kind: 'local', path: join(installed, 'build', 'Release', 'xllama.node') });
    const gen = JSON.parse(ok(xllama(['generate', '-m', join(installed, 'fixtures', 'models', 'stories260K'),
      '-p', 'Once upon a time', '-n', '20', '--temperature', '0', '--json']), 'generate').stdout);
    assert.deepEqual(gen.generatedIds, greedy201.slice(5, 25));
  });

#!/usr/bin/env node
// Fills prebuilds/ before `npm pack` / `npm publish` (the prepack script): addons a user's install loads
// without a compiler (cli/native/addon.ts looks for prebuilds/<platform>-<arch>[-cuda]/xllama.node).
//   node scripts/prebuild.mjs                  the CPU backend (build-prebuild-cpu/)
//   XLLAMA_PREBUILD_CUDA=1 … or --cuda         also the CUDA backend: portable architectures, no cuBLAS (so
//                                              it needs no CUDA library on the user's machine)
//   --from FILE                                take an addon built already instead of building (it must not
//                                              link cuBLAS); tagged -cuda when it has the CUDA backend
//   --package-dir DIR                          the package folder to fill (default: this one)
// prebuilds/ is cleared first, so the package holds exactly what this run made.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const valueOf = (flag) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
const packageDir = resolve(valueOf('--package-dir') ?? root);
const from = valueOf('--from');
const withCuda = args.includes('--cuda') || process.env.XLLAMA_PREBUILD_CUDA === '1';
const platform = `${process.platform}-${process.arch}`;

function fail(message) {
  process.stderr.write(`prebuild: ${message}\n`);
  process.exit(1);
}

function buildInfo(file) {
  const r = spawnSync(process.execPath, ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(file)}).buildInfo()))`],
    { encoding: 'utf8' });
  if (r.status !== 0) fail(`${file} does not load: ${r.stderr.trim().split('\n')[0]}`);
  return JSON.parse(r.stdout);
}

function place(file) {
  const info = buildInfo(file);
  if (info.cublas) fail(`${file} links cuBLAS, which users may not have; build it with --cublas off`);
  const tag = info.backends.includes('cuda') ? `${platform}-cuda` : platform;
  const dir = join(packageDir, 'prebuilds', tag);
  mkdirSync(dir, { recursive: true });
  copyFileSync(file, join(dir, 'xllama.node'));
  process.stdout.write(`prebuild: ${join(dir, 'xllama.node')} (${info.backends.join(' + ')}` +
    `${info.cudaArchitectures ? `: ${info.cudaArchitectures}` : ''})\n`);
}

function build(buildDir, buildArgs) {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-addon.mjs'), '--build-dir', buildDir, ...buildArgs],
    { cwd: root, stdio: 'inherit', env: { ...process.env, XLLAMA_CUDA: '', XLLAMA_CUDA_ARCH: '', XLLAMA_CUBLAS: '' } });
  if (r.status !== 0) fail(`the ${buildDir} build failed`);
  return join(root, buildDir, 'Release', 'xllama.node');
}

rmSync(join(packageDir, 'prebuilds'), { recursive: true, force: true });
if (from) {
  place(resolve(from));
} else {
  place(build('build-prebuild-cpu', ['--cuda', 'off']));
  if (withCuda) place(build('build-prebuild-cuda', ['--cuda', 'on', '--cuda-arch', 'portable', '--cublas', 'off']));
}

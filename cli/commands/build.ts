// `xllama build [--cuda | --cpu] [--cuda-arch LIST] [--verbose]`: rebuilds the native addon from the
// installed sources (e.g. after installing the CUDA toolkit, or for another GPU), as `node-llama-cpp source
// build` does. The loader prefers this local build to the package's prebuild. scripts/build-addon.mjs does
// the work (the same script npm's install step runs) and checks the tools and the architecture list.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { packageRoot } from '../native/addon.js';

interface BuildFlags {
  cuda?: boolean;
  cpu?: boolean;
  cudaArch?: string;
  verbose?: boolean;
}

function checkPackageFolder(): void {
  for (const part of ['CMakeLists.txt', 'addon', join('scripts', 'build-addon.mjs')]) {
    if (!existsSync(join(packageRoot, part))) {
      throw new UserError(`the addon's sources are missing from ${packageRoot} (no ${part}); reinstall xllama`);
    }
  }
  const buildDir = join(packageRoot, 'build');
  try {
    accessSync(existsSync(buildDir) ? buildDir : packageRoot, constants.W_OK);
  } catch {
    throw new UserError(`cannot write the build to ${buildDir}: run \`xllama build\` as the user who installed ` +
      'xllama (e.g. with sudo for a system-wide install)');
  }
}

export function buildArguments(flags: BuildFlags): string[] {
  if (flags.cuda && flags.cpu) throw new UserError('--cuda and --cpu: choose one');
  if (flags.cpu && flags.cudaArch !== undefined) throw new UserError('--cuda-arch: not with --cpu (a CPU-only build)');
  return [
    ...(flags.cuda ? ['--cuda', 'on'] : flags.cpu ? ['--cuda', 'off'] : []),
    ...(flags.cudaArch !== undefined ? ['--cuda-arch', flags.cudaArch] : []),
    ...(flags.verbose ? ['--verbose'] : []),
  ];
}

function runBuild(flags: BuildFlags): void {
  const args = buildArguments(flags);
  checkPackageFolder();
  const r = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'build-addon.mjs'), ...args],
    { cwd: packageRoot, stdio: 'inherit' });
  // The script has printed its own one-line outcome; end with its exit code (2: a setting or a missing
  // tool), which main() would otherwise replace with 0. This process wrote nothing, so nothing is cut short.
  process.exit(r.status ?? 1);
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('rebuild the native addon from the installed sources (with CUDA when a CUDA compiler is found)')
    .option('--cuda', 'require the CUDA backend (fail when no CUDA compiler is found)')
    .option('--cpu', 'build the CPU backend only')
    .option('--cuda-arch <list>', 'CUDA architectures, e.g. 89 or 80,86,90; "native" (this machine\'s GPUs) or ' +
      '"portable" (8.0 to 9.0 and PTX for newer); default: this machine\'s GPU, else portable')
    .option('--verbose', 'show the compiler output (XLLAMA_BUILD_VERBOSE=1 does the same)')
    .addHelpText('after', `
Needs CMake 3.18+ and a C++17 compiler; the CUDA backend also needs the CUDA toolkit (nvcc).
Examples:
  $ xllama build --cuda                       after installing the CUDA toolkit
  $ xllama build --cuda --cuda-arch 89        for an RTX 4090 / L40 (compute capability 8.9)
  $ xllama build --cpu                        CPU backend only (fastest build)`)
    .action((flags: BuildFlags) => runBuild(flags));
}

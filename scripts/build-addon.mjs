#!/usr/bin/env node
// Builds the native addon from this package's sources with cmake-js, offline (Node-API headers come from
// node_modules). Quiet: compiler output goes to <build dir>/build.log, and one line at the end says what was
// built. Run by `npm install` (source builds), `xllama build` and scripts/prebuild.mjs.
//   flag (overrides the environment)    environment
//   --cuda auto|on|off                  XLLAMA_CUDA          auto: CUDA when a CUDA compiler (nvcc) is found
//   --cuda-arch LIST|portable|native    XLLAMA_CUDA_ARCH     default: this machine's GPU, else portable
//   --cublas auto|off                   XLLAMA_CUBLAS        off: xllama's own tensor-core GEMM for prompts
//   --build-dir DIR                     XLLAMA_BUILD_DIR     default: build (where the loader looks)
//   --debug                             XLLAMA_BUILD_TYPE=Debug
//   --verbose                           XLLAMA_BUILD_VERBOSE=1   compiler output and ptxas statistics shown
// Exit code 0: built; 1: the build failed (the log's tail is shown); 2: a bad setting or a missing tool
// (one line: what is missing and how to get it).
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeArchitectures, parseArchList, parseNvccArchs } from './cuda-arch.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function fail(code, message) {
  process.stderr.write(`xllama: ${message}\n`);
  process.exit(code);
}

/** Settings from flags, else the environment; each bad value names where it came from. */
function readSettings(argv, env) {
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--verbose' || a === '--debug') flags[a.slice(2)] = true;
    else if (['--cuda', '--cuda-arch', '--cublas', '--build-dir'].includes(a)) {
      if (i + 1 >= argv.length) fail(2, `${a}: missing value`);
      flags[a.slice(2)] = argv[++i];
    } else fail(2, `build-addon: unknown argument ${a}`);
  }
  const pick = (flag, envName, fallback) =>
    flags[flag] !== undefined ? { value: String(flags[flag]), source: `--${flag}` }
      : env[envName] !== undefined && env[envName] !== '' ? { value: env[envName], source: envName }
        : { value: fallback, source: 'default' };
  const oneOf = (s, allowed) => {
    const v = s.value.toLowerCase();
    if (!allowed.includes(v)) fail(2, `${s.source} must be ${allowed.join(', ').replace(/, (\w+)$/, ' or $1')} (got "${s.value}")`);
    return v;
  };
  const arch = pick('cuda-arch', 'XLLAMA_CUDA_ARCH', '');
  const archError = arch.value ? parseArchList(arch.value, arch.source).error : undefined;
  if (archError) fail(2, archError);
  return {
    cuda: oneOf(pick('cuda', 'XLLAMA_CUDA', 'auto'), ['auto', 'on', 'off']),
    cublas: oneOf(pick('cublas', 'XLLAMA_CUBLAS', 'auto'), ['auto', 'off']),
    arch,
    buildDir: resolve(root, pick('build-dir', 'XLLAMA_BUILD_DIR', 'build').value),
    debug: Boolean(flags.debug) || (env.XLLAMA_BUILD_TYPE ?? '').toLowerCase() === 'debug',
    verbose: Boolean(flags.verbose) || !['', '0', undefined].includes(env.XLLAMA_BUILD_VERBOSE),
  };
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  return r.status === 0 ? r.stdout : undefined;
}

/** The tools a build needs; a missing one ends here with one line saying how to get it. */
function checkTools(settings) {
  const cmake = onPath('cmake');
  if (!cmake) {
    fail(2, 'cannot build the native addon: CMake was not found; install CMake 3.18 or newer ' +
      '(e.g. `sudo apt install cmake`, `brew install cmake` or `pip install cmake`) and run `xllama build`');
  }
  const version = /cmake version (\d+)\.(\d+)/.exec(run(cmake, ['--version']) ?? '');
  if (!version || Number(version[1]) * 100 + Number(version[2]) < 318) {
    fail(2, `cannot build the native addon: ${cmake} is CMake ${version ? `${version[1]}.${version[2]}` : '(unknown version)'}` +
      ', and 3.18 or newer is needed (e.g. `pip install cmake`)');
  }
  const cxx = process.env.CXX ? process.env.CXX.split(' ')[0] : ['c++', 'g++', 'clang++'].find(onPath);
  if (!cxx || (process.env.CXX && !onPath(cxx) && !existsSync(cxx))) {
    fail(2, 'cannot build the native addon: no C++ compiler was found; install one with C++17 support ' +
      '(e.g. `sudo apt install g++`, or Xcode\'s command line tools on macOS) or set CXX');
  }
  try {
    require.resolve('cmake-js/bin/cmake-js');
  } catch {
    fail(2, `cannot build the native addon: cmake-js is missing; run \`npm install\` in ${root}`);
  }
  if (settings.cuda === 'off') return { nvcc: undefined };
  const nvcc = process.env.CUDACXX || onPath('nvcc') ||
    (existsSync('/usr/local/cuda/bin/nvcc') ? '/usr/local/cuda/bin/nvcc' : undefined);
  if (!nvcc && settings.cuda === 'on') {
    fail(2, 'cannot build the CUDA backend: no CUDA compiler (nvcc) was found; install the CUDA toolkit ' +
      '(12.0 or newer) and put its bin folder on PATH, or set CUDACXX');
  }
  return { nvcc };
}

/** CMake's XLLAMA_CUDA_ARCH value, and a note on where it came from. */
function chooseArchitectures(settings, nvcc) {
  const nvccArchs = nvcc ? parseNvccArchs(run(nvcc, ['--list-gpu-arch']) ?? '') : [];
  const smi = () => run('nvidia-smi', ['--query-gpu=name,compute_cap', '--format=csv,noheader']) ?? '';
  if (settings.arch.value) {
    const parsed = parseArchList(settings.arch.value, settings.arch.source, nvccArchs);
    if (parsed.error) fail(2, parsed.error);
    if (parsed.archs !== 'native') return { archs: parsed.archs, why: `from ${settings.arch.source}` };
    const native = nativeArchitectures(smi(), nvccArchs);
    if (!native.archs) fail(2, `${settings.arch.source} native: no supported GPU found (${native.notes.join('; ') || 'nvidia-smi lists none'})`);
    return { archs: native.archs, why: "this machine's GPU" };
  }
  const native = nativeArchitectures(smi(), nvccArchs);
  for (const note of native.notes) process.stderr.write(`xllama: note: ${note}\n`);
  if (native.archs) return { archs: native.archs, why: "this machine's GPU" };
  return { archs: 'portable', why: 'no GPU here: every supported generation' };
}

function formatSeconds(s) {
  return s < 60 ? `${Math.round(s)}s` : `${Math.floor(s / 60)}m ${String(Math.round(s % 60)).padStart(2, '0')}s`;
}

/** Runs cmake-js; quiet unless verbose, with a one-line step counter on a terminal. */
function cmakeJs(args, env, logFd, verbose) {
  return new Promise((done) => {
    const child = spawn(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), ...args],
      { cwd: root, env, stdio: verbose ? 'inherit' : ['ignore', 'pipe', 'pipe'] });
    const progress = process.stderr.isTTY;
    const onData = (chunk) => {
      const text = chunk.toString();
      writeSync(logFd, text);
      const steps = [...text.matchAll(/^\[\s*(\d+)\/(\d+)\]/gm)].pop();
      if (progress && steps) process.stderr.write(`\r  compiling: step ${steps[1]} of ${steps[2]}   `);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('close', (code) => {
      if (progress && !verbose) process.stderr.write('\r\x1b[K');
      done(code ?? 1);
    });
  });
}

/** What the built binary says it holds, from a fresh process (also proves it loads). */
function describeBuilt(nodeFile) {
  const r = spawnSync(process.execPath, ['-e',
    `process.stdout.write(JSON.stringify(require(${JSON.stringify(nodeFile)}).buildInfo()))`], { encoding: 'utf8' });
  if (r.status !== 0) return { error: (r.stderr.trim().split('\n').find((l) => /Error/.test(l)) ?? r.stderr.trim()).slice(0, 300) };
  return { info: JSON.parse(r.stdout) };
}

function summary(info, settings, nvcc) {
  const simd = info.avx512Kernels ? 'AVX2 and AVX-512' : info.avx2Kernels ? 'AVX2' : '';
  const cpu = `CPU backend${simd ? ` (${simd} kernels)` : ''}`;
  if (!info.backends.includes('cuda')) {
    const why = settings.cuda === 'off' ? 'CUDA off' : nvcc ? 'CMake found no usable CUDA compiler' :
      'no CUDA compiler found: install the CUDA toolkit, then run `xllama build --cuda`';
    return `${cpu}; no CUDA backend (${why})`;
  }
  const gemm = info.cublas ? 'prompt GEMMs on cuBLAS' : "prompt GEMMs on xllama's tensor-core kernel (no cuBLAS)";
  return `${cpu} + CUDA ${info.cudaRuntime} backend for ${info.cudaArchitectures}; ${gemm}`;
}

async function main() {
  const settings = readSettings(process.argv.slice(2), process.env);
  const { nvcc } = checkTools(settings);
  const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? String(availableParallelism()) };
  if (nvcc && !process.env.CUDACXX && !onPath('nvcc')) env.CUDACXX = nvcc;
  const arch = nvcc ? chooseArchitectures(settings, nvcc) : { archs: 'portable', why: '' };
  mkdirSync(settings.buildDir, { recursive: true });
  const logPath = join(settings.buildDir, 'build.log');
  const cudaText = settings.cuda === 'off' ? 'CUDA off' : !nvcc ? 'no CUDA compiler found' :
    `CUDA for ${arch.archs === 'portable' ? 'sm_80 sm_86 sm_89 sm_90 + compute_90 PTX' : arch.archs} (${arch.why})`;
  process.stdout.write(`xllama: building the native addon: CPU backend, ${cudaText}` +
    `${settings.verbose ? '' : `; compiler output in ${logPath}`}\n`);

  const common = ['--out', settings.buildDir, `--CDXLLAMA_CUDA=${settings.cuda.toUpperCase()}`,
    `--CDXLLAMA_CUDA_ARCH=${arch.archs}`, `--CDXLLAMA_CUBLAS=${settings.cublas.toUpperCase()}`,
    `--CDXLLAMA_VERBOSE_PTXAS=${settings.verbose ? 'ON' : 'OFF'}`, ...(settings.debug ? ['--debug'] : [])];
  const logFd = openSync(logPath, 'w');
  const started = Date.now();
  let code = await cmakeJs(['configure', ...common], env, logFd, settings.verbose);
  if (code === 0) code = await cmakeJs(['build', ...common], env, logFd, settings.verbose);
  closeSync(logFd);
  const elapsed = formatSeconds((Date.now() - started) / 1000);
  if (code !== 0) {
    if (!settings.verbose) {
      const tail = readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-30).join('\n');
      process.stderr.write(`${tail}\n`);
    }
    fail(1, `the native addon build failed after ${elapsed} (full log: ${logPath}; XLLAMA_BUILD_VERBOSE=1 shows it as it runs)`);
  }
  const nodeFile = join(settings.buildDir, settings.debug ? 'Debug' : 'Release', 'xllama.node');
  const built = describeBuilt(nodeFile);
  if (built.error) fail(1, `built ${nodeFile} in ${elapsed}, but it does not load: ${built.error}`);
  process.stdout.write(`xllama: built ${nodeFile} in ${elapsed}: ${summary(built.info, settings, nvcc)}\n`);
}

await main();

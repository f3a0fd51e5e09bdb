// Builds the native addon with cmake-js, offline (Node-API headers come from node_modules).
//   XLLAMA_CUDA=auto|on|off   (default auto: CUDA when a CUDA compiler is found)
//   XLLAMA_CUDA_ARCH=90       (CMAKE_CUDA_ARCHITECTURES; default 90 for Hopper)
//   XLLAMA_BUILD_TYPE=Release|Debug
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const cuda = (process.env.XLLAMA_CUDA ?? 'auto').toLowerCase();
if (!['auto', 'on', 'off'].includes(cuda)) {
  console.error(`build-addon: XLLAMA_CUDA must be auto, on or off (got "${process.env.XLLAMA_CUDA}")`);
  process.exit(2);
}
const arch = process.env.XLLAMA_CUDA_ARCH ?? '90';
const buildType = process.env.XLLAMA_BUILD_TYPE ?? 'Release';
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'compile', '--out', 'build', `--CDXLLAMA_CUDA=${cuda.toUpperCase()}`,
  `--CDXLLAMA_CUDA_ARCH=${arch}`, ...(buildType === 'Debug' ? ['--debug'] : [])];
const parallel = process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? '4';
const result = spawnSync(process.execPath, args, {
  stdio: 'inherit',
  env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: parallel },
});
process.exit(result.status ?? 1);

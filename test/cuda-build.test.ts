// CI has nvcc but no GPU: the CUDA kernels must still compile into the addon (npm install builds them),
// for every architecture of the default list (so a kernel that doesn't compile for sm_80 fails CI),
// together with the kernel check program that the GPU machine runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './helpers/run-cli.js';
import { loadAddon } from '../cli/native/addon.js';

const nvccFound = spawnSync('nvcc', ['--version'], { encoding: 'utf8' }).status === 0;
const gpuFound = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' }).status === 0;
const cudaWanted = (process.env.XLLAMA_CUDA ?? 'auto').toLowerCase() !== 'off';

test('where nvcc exists, the addon is built with the CUDA kernels and the kernel check program', (t) => {
  if (!nvccFound || !cudaWanted) {
    t.skip(nvccFound ? 'XLLAMA_CUDA=off' : 'no nvcc on PATH');
    return;
  }
  assert.equal(loadAddon().systemInfo().cudaCompiled, true);
  assert.ok(existsSync(join(repoRoot, 'build', 'xllama_kernel_check')) ||
    existsSync(join(repoRoot, 'build', 'Release', 'xllama_kernel_check')), 'xllama_kernel_check was not built');
});

test('a default build on a machine without a GPU holds every supported architecture, and PTX for newer GPUs', (t) => {
  if (!nvccFound || !cudaWanted || gpuFound || process.env.XLLAMA_CUDA_ARCH) {
    t.skip('needs the default CUDA build on a machine without a GPU (as CI is)');
    return;
  }
  const info = loadAddon().buildInfo();
  assert.deepEqual(info.backends, ['cpu', 'cuda']);
  assert.equal(info.cudaArchitectures, 'sm_80 sm_86 sm_89 sm_90 compute_90');
});

// Which CUDA architectures a build targets (scripts/cuda-arch.mjs): the build machine's GPU when it has a
// supported one, else the portable list; explicit lists are checked before anything is compiled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../helpers/run-cli.js';

interface ArchModule {
  parseArchList(value: string, source: string, nvccArchs?: number[]): { archs?: string; error?: string };
  parseNvccArchs(output: string): number[];
  nativeArchitectures(smi: string, nvccArchs?: number[]): { archs: string; notes: string[] };
}
const arch = (await import(pathToFileURL(join(repoRoot, 'scripts', 'cuda-arch.mjs')).href)) as ArchModule;
// `nvcc --list-gpu-arch` of CUDA 13.0, as printed.
const nvcc13 = arch.parseNvccArchs('compute_75\ncompute_80\ncompute_86\ncompute_87\ncompute_88\ncompute_89\n' +
  'compute_90\ncompute_100\ncompute_110\ncompute_103\ncompute_120\ncompute_121\n');

test('nvcc --list-gpu-arch is read as compute capabilities', () => {
  assert.deepEqual(nvcc13, [75, 80, 86, 87, 88, 89, 90, 100, 110, 103, 120, 121]);
});

test("the build machine's GPUs decide the architectures; none (or only unsupported ones) means portable", () => {
  assert.deepEqual(arch.nativeArchitectures('NVIDIA H200, 9.0\n', nvcc13), { archs: '90', notes: [] });
  // Two kinds of GPU: one architecture each, sorted, duplicates once.
  assert.equal(arch.nativeArchitectures('NVIDIA GeForce RTX 4090, 8.9\nNVIDIA A100-SXM4-80GB, 8.0\n' +
    'NVIDIA GeForce RTX 4090, 8.9\n', nvcc13).archs, '80;89');
  // Turing is below the supported range: skipped with a note (the caller then builds the portable list).
  const turing = arch.nativeArchitectures('Tesla T4, 7.5\n', nvcc13);
  assert.equal(turing.archs, '');
  assert.match(turing.notes[0], /Tesla T4 \(compute capability 7\.5\) is older than xllama supports/);
  // A GPU newer than this nvcc knows: skipped with a note (the portable list's PTX JIT-runs on it).
  const newer = arch.nativeArchitectures('NVIDIA GeForce RTX 5090, 12.0\n', [75, 80, 86, 89, 90]);
  assert.equal(newer.archs, '');
  assert.match(newer.notes[0], /cannot compile for NVIDIA GeForce RTX 5090 \(120\)/);
  // No nvidia-smi output at all (no GPU, no driver).
  assert.deepEqual(arch.nativeArchitectures(''), { archs: '', notes: [] });
});

test('explicit lists: commas, semicolons or spaces; -real/-virtual kept; keywords pass through', () => {
  assert.deepEqual(arch.parseArchList('89', '--cuda-arch'), { archs: '89' });
  assert.deepEqual(arch.parseArchList('80,86; 90-real 80-virtual', '--cuda-arch', nvcc13), { archs: '80;86;90-real;80-virtual' });
  assert.deepEqual(arch.parseArchList('portable', 'XLLAMA_CUDA_ARCH'), { archs: 'portable' });
  assert.deepEqual(arch.parseArchList('native', 'XLLAMA_CUDA_ARCH'), { archs: 'native' });
});

test('bad lists are one message naming the flag or variable', () => {
  assert.match(arch.parseArchList('75', '--cuda-arch').error!, /^--cuda-arch: 75 is older than compute capability 8\.0/);
  assert.match(arch.parseArchList('sm_89', 'XLLAMA_CUDA_ARCH').error!, /^XLLAMA_CUDA_ARCH: "sm_89" is not a CUDA architecture/);
  assert.match(arch.parseArchList(' , ', '--cuda-arch').error!, /^--cuda-arch: expected CUDA architectures/);
  assert.match(arch.parseArchList('95', '--cuda-arch', nvcc13).error!, /^--cuda-arch: this nvcc cannot compile for 95/);
});

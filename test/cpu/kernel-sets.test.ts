// On a processor with AVX-512 the CPU backend runs kernels_avx512.cc's GPTQ decode kernel and prompt GEMM, so the
// tests that hold a decode step to the batched forward's bits never reach the AVX2 kernels there. These run them
// again with the set capped at AVX2 (XLLAMA_CPU_KERNELS=avx2), and hold the two sets to the same bits. Elsewhere the
// other tests already run the AVX2 (or scalar) kernels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAddon } from '../../cli/native/addon.js';

const here = dirname(fileURLToPath(import.meta.url));
const exactnessTests = ['synthetic.test.js', 'weight-formats.test.js', 'kv-cache.test.js'].map((f) => join(here, f));

test('capped at AVX2, decode steps still give exactly the batched logits', (t) => {
  if (loadAddon().cpuKernels() !== 'avx512') {
    t.skip(`this processor runs the ${loadAddon().cpuKernels()} kernels, which the other tests check`);
    return;
  }
  // (NODE_TEST_CONTEXT, set by this test's own runner, would make the child report to it instead of in TAP.)
  const env: NodeJS.ProcessEnv = { ...process.env, XLLAMA_CPU_KERNELS: 'avx2' };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=tap', ...exactnessTests], {
    encoding: 'utf8', env, timeout: 300_000,
  });
  assert.equal(r.status, 0, r.stdout.slice(-4000) + r.stderr.slice(-2000));
  assert.match(r.stdout, /# pass [1-9]/);
  assert.match(r.stdout, /# fail 0/);
});

test('AVX-512 and AVX2 kernels give the same logits, bit for bit', (t) => {
  if (loadAddon().cpuKernels() !== 'avx512') {
    t.skip(`this processor runs the ${loadAddon().cpuKernels()} kernels only`);
    return;
  }
  const child = join(here, 'kernel-sets-child.js');
  const run = (kernels: string | undefined) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (kernels) env.XLLAMA_CPU_KERNELS = kernels;
    else delete env.XLLAMA_CPU_KERNELS;
    const r = spawnSync(process.execPath, [child], { encoding: 'utf8', env, timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { kernels: string; digests: Record<string, string> };
  };
  const wide = run(undefined), narrow = run('avx2');
  assert.equal(wide.kernels, 'avx512');
  assert.equal(narrow.kernels, 'avx2');
  assert.equal(Object.keys(wide.digests).length, 4);
  assert.deepEqual(wide.digests, narrow.digests);
});

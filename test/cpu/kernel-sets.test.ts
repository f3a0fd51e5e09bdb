// On a processor with AVX-512 the CPU backend decodes GPTQ with kernels_avx512.cc, so the tests that hold a decode
// step to the batched forward's bits never reach the AVX2 decode kernels there. This runs them again with the set
// capped at AVX2 (XLLAMA_CPU_KERNELS=avx2). Elsewhere those tests already run the AVX2 (or scalar) kernels.
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

// The portable (non-AVX2) kernels, forced with XLLAMA_CPU_KERNELS=scalar in a child process, must meet the
// same references: they are what runs on CPUs without AVX2 (and on ARM).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const child = join(dirname(fileURLToPath(import.meta.url)), 'scalar-kernels-child.js');

test('scalar kernels: reference logits, top-1 and greedy continuations for all three models', () => {
  const r = spawnSync(process.execPath, [child], { encoding: 'utf8', env: { ...process.env, XLLAMA_CPU_KERNELS: 'scalar' }, timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { kernels: string; results: Record<string, { worst: number; top1Mismatches: number; greedyMatches: boolean }> };
  assert.equal(out.kernels, 'scalar');
  assert.equal(Object.keys(out.results).length, 3);
  for (const [name, res] of Object.entries(out.results)) {
    assert.ok(res.worst <= 1e-3, `${name}: relative logit error ${res.worst}`);
    assert.equal(res.top1Mismatches, 0, name);
    assert.ok(res.greedyMatches, `${name}: greedy continuation`);
  }
});

// Issue 14.9 (--version says the commit, backends and CUDA version) and 14.10 (without -m, the bundled
// demo model runs at once, and says so on stderr).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtures, repoRoot, runCli } from '../helpers/run-cli.js';
import { addonOrigin, describeAddonOrigin, loadAddon } from '../../cli/native/addon.js';

test('--version: version and commit, the backends compiled in with the CUDA runtime, the addon loaded, Node.js', () => {
  const r = runCli(['--version']);
  assert.equal(r.status, 0, r.stderr);
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  const [first, backends, addon, node] = r.stdout.trimEnd().split('\n');
  const commit = first!.match(/^xllama (\S+) \(commit (\S+)\)$/);
  assert.ok(commit, first);
  assert.equal(commit[1], pkg.version);
  let head: string | null = null;
  try {
    head = execFileSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // Not a git checkout (a package): the commit recorded at build time, or 'unknown'.
  }
  if (head) assert.ok(head.startsWith(commit[2]!.replace(/-dirty$/, '')), `${commit[2]} is not HEAD ${head}`);
  const built = loadAddon().buildInfo();
  if (built.backends.includes('cuda')) {
    assert.ok(backends!.startsWith(`backends: cpu, cuda (CUDA runtime ${built.cudaRuntime}; ${built.cudaArchitectures}; `), backends);
  } else {
    assert.equal(backends, 'backends: cpu (built without CUDA)');
  }
  assert.equal(addon, `addon: ${describeAddonOrigin(addonOrigin())}`);
  assert.equal(node, `node ${process.version} ${process.platform}-${process.arch}`);
});

test('generate without -m runs the bundled stories260K and says so in one stderr line', () => {
  const r = runCli(['generate', '--backend', 'cpu', '-p', 'Once upon a time', '-n', '196', '--temperature', '0']);
  assert.equal(r.status, 0, r.stderr);
  const expected = readFileSync(join(fixtures, 'models', 'stories260K', 'llama2c_expected_greedy_200.txt'), 'utf8');
  assert.equal(`Once upon a time${r.stdout}`, `${expected}\n`);
  const lines = r.stderr.split('\n');
  assert.equal(lines[0], 'no -m given: using the bundled demo model stories260K; pass -m DIR for yours');
  assert.match(lines[1]!, /^cpu: prompt 5 tokens/);
});

test("the package ships the demo model's files", () => {
  const files = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).files as string[];
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    assert.ok(files.includes(`fixtures/models/stories260K/${f}`), f);
  }
});

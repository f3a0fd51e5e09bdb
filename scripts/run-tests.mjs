// Runs every compiled test file under dist/test with Node's test runner.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...collect(path));
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out.sort();
}

const files = collect('dist/test');
const extra = process.argv.slice(2);
// Ink draws no live frames when it believes it runs in CI (CI set): the UI tests render into fake terminals and
// read those frames, so they run as on a developer's machine whether or not CI is set around them.
const env = { ...process.env };
delete env.CI;
delete env.CONTINUOUS_INTEGRATION;
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...extra, ...files], { stdio: 'inherit', env });
process.exit(result.status ?? 1);

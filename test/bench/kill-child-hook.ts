// Loaded with `node --import` into a bench run by bench-cli.test.ts (bench passes its Node options on to
// its children): the child (`bench-run`) whose arguments contain $XLLAMA_TEST_KILL_MODEL kills itself with
// SIGKILL, as the kernel's out-of-memory killer would, right after it reports starting its
// $XLLAMA_TEST_KILL_AT_TEST-th test. Every other process runs untouched.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const mark = process.env.XLLAMA_TEST_KILL_MODEL;
const at = Number(process.env.XLLAMA_TEST_KILL_AT_TEST ?? '1');

if (mark && process.argv.includes('bench-run') && process.argv.some((a) => a.includes(mark))) {
  const writeSync = fs.writeSync as (fd: number, data: unknown, ...rest: unknown[]) => number;
  let starts = 0;
  (fs as { writeSync: unknown }).writeSync = (fd: number, data: unknown, ...rest: unknown[]): number => {
    const n = writeSync(fd, data, ...rest);
    if (typeof data === 'string' && data.includes('"type":"start"') && ++starts === at) process.kill(process.pid, 'SIGKILL');
    return n;
  };
  syncBuiltinESMExports();  // so `import { writeSync } from 'node:fs'` sees the wrapper too
}

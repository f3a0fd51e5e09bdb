#!/usr/bin/env node
// Launcher: the CLI lives in dist/ (built by `npm install`).
import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('xllama: not built yet; run `npm install` in the package folder');
  } else {
    console.error(`xllama: ${err && err.message ? err.message : err}`);
  }
  process.exit(1);
});

// The copy bandwidth bench divides by comes from a process of its own (cli/bench/copy-bandwidth.ts): its one
// line is read strictly, so a failed or odd child leaves the floor columns n/a rather than wrong; and with no GPU
// in the configuration no process is started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { measureCopyBandwidthApart, parseBandwidthLine } from '../../cli/bench/copy-bandwidth.js';

test('the child line: each well-formed device kept, in order', () => {
  assert.deepEqual(parseBandwidthLine('[{"device":0,"bytesPerSec":4.24e12},{"device":1,"bytesPerSec":3.1e12}]\n'),
    [{ device: 0, bytesPerSec: 4.24e12 }, { device: 1, bytesPerSec: 3.1e12 }]);
});

test('the child line: malformed entries are left out, anything but an array gives none', () => {
  const mixed = '[{"device":0,"bytesPerSec":0},{"device":-1,"bytesPerSec":1e12},{"device":1.5,"bytesPerSec":1e12},' +
    '{"device":2,"bytesPerSec":"fast"},null,7,{"device":3,"bytesPerSec":2e12}]';
  assert.deepEqual(parseBandwidthLine(mixed), [{ device: 3, bytesPerSec: 2e12 }]);
  for (const text of ['', 'not json', '{"device":0,"bytesPerSec":1e12}', 'null', '[1e999]'])
    assert.deepEqual(parseBandwidthLine(text), [], text);
});

test('no devices: no figures', () => {
  assert.deepEqual(measureCopyBandwidthApart([]), []);
});

test('the child prints one JSON line and skips what is not a device index', () => {
  const child = fileURLToPath(new URL('../../cli/bench/copy-bandwidth-child.js', import.meta.url));
  const run = spawnSync(process.execPath, [child, 'x,-1,1.5'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, '[]\n');
});

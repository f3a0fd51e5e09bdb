// The GPUs' copy bandwidth, the floor bench's "bw use" divides by, measured in a process of its own. Measured in
// the process that then decodes, its copies on CUDA's legacy stream left every later decode step of that process
// ~1.6% slower (7B on the H200: 810 t/s against 823; docs/PERF-NOTES.md, session 39), so bench's own measurement
// lowered the speed it reported. A short-lived process (copy-bandwidth-child.ts) measures while the model's
// process waits; the model stays loaded, so the copies need 2 GiB free on each GPU beside it, as before.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface DeviceBandwidth {
  device: number;
  bytesPerSec: number;
}

/** Longer than a CUDA context's start and 12 GiB of copies take on any GPU: a hung driver ends here. */
const CHILD_TIMEOUT_MS = 120_000;

const CHILD = fileURLToPath(new URL('./copy-bandwidth-child.js', import.meta.url));

/** Bandwidth of each device that answered; a device without a figure is left out (its columns read n/a). */
export function measureCopyBandwidthApart(devices: readonly number[]): DeviceBandwidth[] {
  if (devices.length === 0) return [];
  const run = spawnSync(process.execPath, [CHILD, devices.join(',')], {
    encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'ignore'],
  });
  if (run.status !== 0 || typeof run.stdout !== 'string') return [];
  return parseBandwidthLine(run.stdout);
}

/** The child's one line, [{device, bytesPerSec}], kept only where it is well formed. */
export function parseBandwidthLine(text: string): DeviceBandwidth[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.filter((x): x is DeviceBandwidth =>
    typeof x === 'object' && x !== null && Number.isInteger(x.device) && x.device >= 0 &&
    typeof x.bytesPerSec === 'number' && Number.isFinite(x.bytesPerSec) && x.bytesPerSec > 0);
}

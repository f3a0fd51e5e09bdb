// Entry of the process copy-bandwidth.ts starts: `node copy-bandwidth-child.js 0,1` measures each listed GPU's
// device-to-device copy bandwidth and prints one JSON line, [{device, bytesPerSec}], leaving out a GPU that
// could not be measured (e.g. too little free memory for the 2 GiB it copies).
import { loadAddon } from '../native/addon.js';

const devices = (process.argv[2] ?? '').split(',').filter(Boolean).map(Number);
const addon = loadAddon();
const measured: { device: number; bytesPerSec: number }[] = [];
for (const device of devices) {
  if (!Number.isInteger(device) || device < 0) continue;
  try {
    measured.push({ device, bytesPerSec: addon.measureCopyBandwidth(device) });
  } catch {
    // left out: the parent reads its columns as n/a
  }
}
process.stdout.write(`${JSON.stringify(measured)}\n`);

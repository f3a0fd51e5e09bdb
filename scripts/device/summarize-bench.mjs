// Prints one line per model from `xllama bench --json` output (JSON lines): the numbers the README quotes.
import { readFileSync } from 'node:fs';

const rows = readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const f = (v, d = 0) => (v == null ? 'n/a' : v.toFixed(d));
for (const r of rows) {
  const mem = r.memory;
  const gib = (mem.weightsBytes + mem.kvCacheBytes + mem.scratchBytes) / 2 ** 30;
  const dec = r.decode.map((d) => `decode@${d.context} ${f(d.tokensPerSec, 1)} t/s (${f(d.bandwidthUse * 100)}% of copy bw, floor ${f(d.bandwidthFloorTokensPerSec)})`);
  const pre = r.prefill.map((p) => `pp${p.tokens} ${f(p.tokensPerSec)} t/s`);
  console.log(`${r.model} on ${r.gpu} (copy ${f(r.copyBandwidthGBs)} GB/s): load ${f(r.loadSeconds, 2)} s, ` +
    `memory ${gib.toFixed(2)} GiB at ${r.maxSeqLen} positions; ${[...dec, ...pre].join('; ')}`);
}

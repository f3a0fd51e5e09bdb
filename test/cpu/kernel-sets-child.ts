// Child process for kernel-sets.test.ts: a digest of the logits each fixture model gives, batched and decoded a
// token at a time, with whatever kernel set XLLAMA_CPU_KERNELS leaves this process.
import { createHash } from 'node:crypto';
import { loadAddon } from '../../cli/native/addon.js';
import { MODELS, loadReference, openModel } from './reference.js';

const digests: Record<string, string> = {};
for (const name of [...MODELS, 'random-hd128-gptq-4bit-g128']) {
  const ids = loadReference(name).sequences[0].ids.slice(0, 40);
  const model = await openModel(name);
  try {
    const hash = createHash('sha256');
    const batched = await model.forward(ids, 0, true);
    hash.update(new Uint8Array(batched.buffer, batched.byteOffset, batched.byteLength));
    await model.trimCache(0);
    for (let t = 0; t < 8; t++) {
      const one = await model.forward([ids[t]], t);
      hash.update(new Uint8Array(one.buffer, one.byteOffset, one.byteLength));
    }
    digests[name] = hash.digest('hex');
  } finally {
    model.close();
  }
}
process.stdout.write(JSON.stringify({ kernels: loadAddon().cpuKernels(), digests }));

// Child process for scalar-kernels.test.ts: runs the reference checks with whatever kernels this process
// picked and prints them with the results as JSON.
import { loadAddon } from '../../cli/native/addon.js';
import { MODELS, argmax, greedy, loadReference, openModel, relError, row } from './reference.js';

const results: Record<string, { worst: number; top1Mismatches: number; greedyMatches: boolean }> = {};
for (const name of MODELS) {
  const ref = loadReference(name);
  const model = await openModel(name);
  let worst = 0, top1Mismatches = 0;
  for (const seq of ref.sequences) {
    const logits = await model.forward(seq.ids, 0, true);
    for (let t = 0; t < seq.ids.length; t++) {
      const r = row(logits, model.vocabSize, t);
      worst = Math.max(worst, relError(r, seq.top5[t]));
      if (argmax(r) !== seq.top5[t][0][0]) top1Mismatches++;
    }
  }
  const g = ref.greedy.from_golden;
  const greedyMatches = JSON.stringify(await greedy(model, g.prompt, g.n_new)) === JSON.stringify(g.new_ids);
  model.close();
  results[name] = { worst, top1Mismatches, greedyMatches };
}
console.log(JSON.stringify({ kernels: loadAddon().cpuKernels(), results }));

// KV-cache behaviour: decoding one token at a time, trimming, chunked prompts and the sampling hook all
// agree with one batched forward; bad input is a one-line UserError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserError } from '../../cli/errors.js';
import { NativeModel } from '../../cli/engine/native-model.js';
import { argmax, loadReference, openModel, row } from './reference.js';
import {
  DEFAULT_SAMPLING, Sampler, likelyCandidates, minPFilter, pickIndex, softmax, topKCandidates, topPFilter, typicalFilter,
  type Candidates, type SamplingParams,
} from '../../cli/engine/sampler.js';

const NAME = 'stories260K-gptq-4bit-g64-actorder';
const ids = loadReference(NAME).sequences.find((s) => s.name === 'golden')!.ids;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

// Every row is computed the same way whatever the batch, chunk or thread count, so these agree exactly.
test('token-by-token decode gives exactly the logits of one batched forward', async () => {
  const model = await openModel(NAME);
  try {
    const batched = await model.forward(ids, 0, true);
    await model.trimCache(0);
    for (let t = 0; t < ids.length; t++) {
      const one = await model.forward([ids[t]], t);
      assert.equal(maxAbsDiff(one, row(batched, model.vocabSize, t)), 0, `position ${t}`);
      assert.equal(model.cacheLength, t + 1);
    }
  } finally {
    model.close();
  }
});

test('trimming the cache and re-running reproduces exactly the same logits', async () => {
  const model = await openModel(NAME);
  try {
    const full = await model.forward(ids, 0, false);
    assert.equal(model.cacheLength, ids.length);
    await model.trimCache(10);
    assert.equal(model.cacheLength, 10);
    assert.equal(maxAbsDiff(await model.forward(ids.slice(10), 10), full), 0);
    // pos below the cache length trims implicitly.
    assert.equal(maxAbsDiff(await model.forward(ids.slice(20), 20), full), 0);
    assert.equal(model.cacheLength, ids.length);
  } finally {
    model.close();
  }
});

test('a prompt split into small chunks matches one chunk exactly, on one thread and on several', async () => {
  const one = await openModel(NAME, { maxChunkTokens: 512, threads: 1 });
  const chunked = await openModel(NAME, { maxChunkTokens: 7, threads: 3 });
  try {
    const a = await one.forward(ids, 0, true);
    const b = await chunked.forward(ids, 0, true);
    assert.equal(maxAbsDiff(a, b), 0);
  } finally {
    one.close();
    chunked.close();
  }
});

test('forwardSample picks the argmax when greedy and a top-k token when sampling', async () => {
  const model = await openModel(NAME);
  try {
    const logits = await model.forward(ids, 0);
    const greedyId = await model.forwardSample(ids, 0, { temperature: 0, topK: 0, uniform: 0.5 });
    assert.equal(greedyId, argmax(logits));
    // softmax over the top 3 (in float64 here); a uniform draw picks the first id whose cumulative mass
    // exceeds it, so draws in each third of the mass land on a known id, in order.
    const top3 = Array.from(logits.keys()).sort((x, y) => logits[y] - logits[x]).slice(0, 3);
    const w = top3.map((i) => Math.exp(logits[i] - logits[top3[0]]));
    const total = w.reduce((a, b) => a + b, 0);
    const cum = [w[0] / total, (w[0] + w[1]) / total];
    const draws: [number, number][] = [[cum[0] / 2, top3[0]], [(cum[0] + cum[1]) / 2, top3[1]], [(cum[1] + 1) / 2, top3[2]]];
    for (const [u, expected] of draws) {
      const id = await model.forwardSample(ids, 0, { temperature: 1, topK: 3, uniform: u });
      assert.equal(id, expected, `uniform ${u.toFixed(4)}`);
    }
    // Temperature sharpens: at T = 0.05 nearly all mass is on the argmax, so a mid draw takes it.
    assert.equal(await model.forwardSample(ids, 0, { temperature: 0.05, topK: 3, uniform: 0.5 }), top3[0]);
  } finally {
    model.close();
  }
});

type DrawSetting = [temperature: number, topK: number, topP: number, minP: number, typicalP?: number];

/** What the host sampler keeps (cli/engine/sampler.ts: Sampler.sample's steps, not the backend's rule), most likely first. */
function hostKept(logits: Float32Array, [temperature, topK, topP, minP, typicalP = 1]: DrawSetting): Candidates {
  const invT = 1 / temperature;
  // Temperature alone: every id, most likely first, as the backend takes them (Sampler.sample walks them in id order:
  // the same distribution, another id for the same draw).
  if (topK === 0 && topP === 1 && minP === 0 && typicalP === 1) return likelyCandidates(logits, invT, 0);
  const candidates = topK > 0
    ? (({ ids: i, logits: l }) => ({ ids: i, logits: l.map((v) => v * invT) }))(topKCandidates(logits, topK))
    : typicalP < 1 ? likelyCandidates(logits, invT, 0)  // the entropy is over every candidate
      : likelyCandidates(logits, invT, minP > 0 ? minP : 1e-4, topP < 1 ? topP : 0);
  return typicalFilter(minPFilter(topPFilter(candidates, topP), minP), typicalP);
}

/** Draws in the middle of each twentieth of the kept mass (none within rounding of a boundary): the backend's pick
 * must be the host sampler's. Returns how many draws were checked and how many candidates the host kept. */
async function checkDraws(model: NativeModel, logits: Float32Array, setting: DrawSetting): Promise<{ checked: number; kept: number }> {
  const [temperature, topK, topP, minP, typicalP = 1] = setting;
  const kept = hostKept(logits, setting);
  const probs = softmax(kept.logits);
  let cum = 0, checked = 0;
  const bounds = probs.map((p) => (cum += p));
  for (let i = 0; i < 20; i++) {
    const uniform = (i + 0.5) / 20;
    if (bounds.some((b) => Math.abs(b - uniform) < 1e-5)) continue;  // float rounding may go either way
    const want = kept.ids[pickIndex(probs, uniform)];
    const got = await model.forwardSample(ids, 0, { temperature, topK, topP, minP, typicalP, uniform });
    assert.equal(got, want, `T ${temperature} top-k ${topK} top-p ${topP} min-p ${minP} typical-p ${typicalP} uniform ${uniform}`);
    checked++;
  }
  return { checked, kept: kept.ids.length };
}

// Runs body on a fresh model with the prompt's logits, its cache emptied again (each draw then starts at 0).
async function withPromptLogits(body: (model: NativeModel, logits: Float32Array) => Promise<void>): Promise<void> {
  const model = await openModel(NAME);
  try {
    const logits = await model.forward(ids, 0);
    await model.trimCache(0);
    await body(model, logits);
  } finally {
    model.close();
  }
}

test('forwardSample with top-p and min-p after top-k picks what the host sampler picks', () => withPromptLogits(async (model, logits) => {
  let cutBinds = 0;
  for (const setting of [[0.8, 40, 0.95, 0.05], [1.5, 40, 0.5, 0], [1, 20, 1, 0.2], [0.6, 64, 0.9, 0.1]] as DrawSetting[]) {
    if ((await checkDraws(model, logits, setting)).kept < setting[1]) cutBinds++;
  }
  assert.ok(cutBinds >= 3, `top-p / min-p cut the candidates in ${cutBinds} of 4 settings`);
}));

test('forwardSample over the whole vocabulary (top-k 0) or a top-k above 64 picks what the host sampler picks', () => withPromptLogits(async (model, logits) => {
  let checked = 0, wide = 0;
  const settings: DrawSetting[] = [[0.8, 0, 0.95, 0.05], [1.5, 0, 0.5, 0], [1, 0, 1, 0.02], [1.2, 0, 1, 0], [3, 200, 0.99, 0.001], [4, 0, 0.98, 0]];
  for (const setting of settings) {
    const r = await checkDraws(model, logits, setting);
    checked += r.checked;
    if (r.kept > 64) wide++;  // more than the GPU's top-k lists hold
  }
  assert.ok(checked >= 100, `${checked} draws checked`);
  assert.ok(wide >= 3, `${wide} settings kept more than 64 candidates`);
}));

test('forwardSample with typical-p (after top-k, top-p and min-p, or over the whole vocabulary) picks what the host sampler picks', () => withPromptLogits(async (model, logits) => {
  let checked = 0, cutBinds = 0;
  const settings: DrawSetting[] = [[0.8, 40, 0.95, 0.05, 0.5], [1.5, 40, 1, 0, 0.3], [1, 64, 0.9, 0, 0.8], [1.2, 0, 1, 0, 0.6], [2, 0, 0.98, 0.001, 0.4]];
  for (const setting of settings) {
    const r = await checkDraws(model, logits, setting);
    checked += r.checked;
    if (r.kept < hostKept(logits, [setting[0], setting[1], setting[2], setting[3]]).ids.length) cutBinds++;
  }
  assert.ok(checked >= 80, `${checked} draws checked`);
  assert.equal(cutBinds, settings.length, 'typical-p cut the candidates in every setting');
  await assert.rejects(model.forwardSample([1], 0, { temperature: 1, topK: 3, uniform: 0.5, typicalP: 0 }),
    oneLineUserError(/typical-p must be in \(0, 1\] \(got 0\)/));
}));

test('forwardSample with penalties picks what the host sampler picks, step after step, from the history it keeps', async () => {
  const model = await openModel(NAME);
  try {
    const prompt = ids.slice(0, 6);
    // The history holds the tokens the model would say next (its greedy continuation), so the penalties bite.
    const seq0 = [...prompt];
    for (let i = 0; i < 12; i++) seq0.push(argmax(await model.forward(seq0, 0)));
    const history = seq0.slice(prompt.length);
    const settings: Partial<SamplingParams>[] = [
      { temperature: 0, repeatPenalty: 5 },
      { temperature: 0, frequencyPenalty: 2, presencePenalty: 2 },
      { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 3, frequencyPenalty: 1, presencePenalty: 0.5 },
    ];
    let changed = 0;
    for (const setting of settings) {
      const params: SamplingParams = { ...DEFAULT_SAMPLING, ...setting };
      // The host sampler as generation runs it without a backend history: penalties applied here to full logits.
      const here = new Sampler(params, 3), onBackend = new Sampler(params, 3), plain = new Sampler({ ...params, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0 }, 3);
      for (const s of [here, onBackend, plain]) s.observePrompt(history);
      await model.setTokenHistory(history, []);
      onBackend.penaltiesOnBackend();
      const seq = [...prompt];
      for (let step = 0; step < 12; step++) {
        const logits = await model.forward(seq, 0);
        const unpenalized = plain.sample(Float32Array.from(logits));
        const want = here.sample(logits);
        const draw = onBackend.backendSampling();
        assert.ok(draw, 'the draw goes to the backend');
        const got = await model.forwardSample(seq, 0, draw);
        assert.equal(got, want, `${JSON.stringify(setting)} step ${step}`);
        changed += got !== unpenalized ? 1 : 0;
        for (const s of [here, onBackend, plain]) s.accept(got);
        seq.push(got);
      }
    }
    assert.ok(changed >= 3, `the penalties changed ${changed} of 36 picks`);
    await assert.rejects(model.forwardSample([1], 0, { temperature: 0, topK: 0, uniform: 0, repeatPenalty: 1.1 }),
      oneLineUserError(/penalties need a sampled pick/));
    await assert.rejects(model.forwardSample([1], 0, { temperature: 1, topK: 3, uniform: 0.5, frequencyPenalty: 3 }),
      oneLineUserError(/frequency-penalty must be in \[-2, 2\] \(got 3\)/));
  } finally {
    model.close();
  }
});

test('concurrent forwards on one model run one at a time and close during a forward is safe', async () => {
  const model = await openModel(NAME);
  const a = model.forward(ids, 0, true);
  const b = model.forward(ids.slice(0, 5), 0, false);
  const [la, lb] = await Promise.all([a, b]);
  assert.equal(maxAbsDiff(row(la, model.vocabSize, 4), lb), 0);
  const pending = model.forward(ids, 0, true);
  model.close();
  await assert.rejects(pending, (e: unknown) => e instanceof UserError && /closed/.test((e as Error).message));
  assert.throws(() => model.cacheLength, UserError);
});

function oneLineUserError(pattern: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'));
    assert.match(e.message, pattern);
    return true;
  };
}

test('bad input is a one-line UserError: token ids, context overflow, positions', async () => {
  const model = await openModel(NAME, { maxSeqLen: 40 });
  try {
    assert.equal(model.maxSeqLen, 40);
    await assert.rejects(model.forward([1, 512], 0), oneLineUserError(/token id 512 at index 1 .*vocabulary/));
    await assert.rejects(model.forward([-1], 0), oneLineUserError(/token id -1/));
    await assert.rejects(model.forward(ids.concat(ids), 0), oneLineUserError(/maximum sequence length of 40/));
    await assert.rejects(model.forward([1], 5), oneLineUserError(/position 5 is past/));
    await assert.rejects(model.forward([], 0), oneLineUserError(/at least one token/));
    await assert.rejects(model.forward([1.5], 0), oneLineUserError(/not an integer/));
    const draw = { temperature: 1, topK: 3, uniform: 0.5 };
    await assert.rejects(model.forwardSample([1], 0, { ...draw, topP: 0 }), oneLineUserError(/top-p must be in \(0, 1\] \(got 0\)/));
    await assert.rejects(model.forwardSample([1], 0, { ...draw, topP: NaN }), oneLineUserError(/top-p must be in/));
    await assert.rejects(model.forwardSample([1], 0, { ...draw, minP: 1.5 }), oneLineUserError(/min-p must be in \[0, 1\] \(got 1.5\)/));
    await assert.rejects(model.forwardSample([1], 0, { ...draw, repeatPenalty: 0 }), oneLineUserError(/repeat-penalty must be > 0 \(got 0; 1: off\)/));
    await assert.rejects(model.setTokenHistory([1, 2.5], []), oneLineUserError(/token at index 1 is not an integer id/));
    await model.setTokenHistory([-1, 1, 1e6], [3]);  // ids outside the vocabulary are ignored
    // A failed call leaves the model usable.
    assert.equal((await model.forward([1], 0)).length, model.vocabSize);
  } finally {
    model.close();
  }
});

test('memory() reports the weights and the float32 KV cache', async () => {
  const model = await openModel('stories260K', { maxSeqLen: 64 });
  try {
    const m = model.memory();
    assert.equal(m.kvCacheBytes, 5 * 64 * 32 * 4 * 2); // layers × positions × kv_dim × f32 × (K, V)
    assert.ok(m.weightsBytes > 400_000 && m.weightsBytes < 600_000, String(m.weightsBytes));
    assert.ok(m.scratchBytes > 0);
    assert.equal(model.backend, 'cpu');
  } finally {
    model.close();
  }
});

test('a cuda or dummy model where no GPU can run it is a one-line UserError saying why', async (t) => {
  const { loadAddon } = await import('../../cli/native/addon.js');
  const info = loadAddon().systemInfo();
  if (info.cudaCompiled && info.gpus.length > 0) {
    t.skip('this machine has a GPU');
    return;
  }
  // Without a CUDA build the reason names the build; with one but no GPU it is the runtime's own reason.
  const reason = info.cudaCompiled ? /needs a CUDA GPU: .+/ : /needs a CUDA GPU: .*no CUDA backend/;
  await assert.rejects(openModel(NAME, { backend: 'cuda' }), oneLineUserError(reason));
  await assert.rejects(NativeModel.openDummy('tiny'), oneLineUserError(reason));
});

test('an unknown dummy name is refused with the valid names, GPU or not', async () => {
  await assert.rejects(NativeModel.openDummy('llama-8b'),
    oneLineUserError(/--dummy: unknown model 'llama-8b' \(use one of llama-7b, llama-13b, llama3-8b, llama-70b, tiny\)/));
});

test('closeModel while a native forward is running defers the free until it finishes', async () => {
  const { loadAddon } = await import('../../cli/native/addon.js');
  const { loadModelSpec } = await import('../../cli/engine/loader/index.js');
  const { modelDir } = await import('./reference.js');
  const addon = loadAddon();
  const handle = await addon.loadModel(loadModelSpec(modelDir(NAME)), { backend: 'cpu', maxSeqLen: 0, threads: 0, device: 0, maxChunkTokens: 512 });
  const running = addon.forward(handle, Int32Array.from(ids), 0, true);
  addon.closeModel(handle);
  const logits = await running;
  assert.equal(logits.length, ids.length * 512);
  assert.throws(() => addon.cacheLength(handle), (e: Error & { code?: string }) => e.code === 'closed');
  addon.closeModel(handle); // closing twice is harmless
});

// The CI fuzz run (issue 16): a fixed seed, a few hundred damaged copies of the fixture models and damaged
// flags, each through the real `xllama info` and `xllama generate` (and `xllama chat` where the chat template or
// its tokens were damaged) under a time and memory watchdog. Every
// run must end in exit 0, or exit 2 with at most 3 lines naming the file, field or flag; never a signal, a
// timeout, more than 1 GiB, a stack trace or "internal error". `npm run fuzz -- --seed S --n N` runs more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeFailure, runCampaign } from './campaign.js';
import { MUTATIONS } from './mutations.js';

const SEED = 16;
const CASES = 240;

test(`fuzz: ${CASES} damaged model folders and flags (seed ${SEED}) keep the bad-input contract`, async () => {
  const { reports } = await runCampaign({ seed: SEED, n: CASES });
  const failed = reports.filter((r) => r.violations.length > 0);
  assert.equal(failed.length, 0, `${failed.length} cases broke the contract:\n${failed.map(describeFailure).join('\n')}`);

  // The campaign reached what it is meant to: every kind of damage, refusals and successes of both commands.
  assert.equal(reports.length, CASES);
  const kinds = new Set(reports.flatMap((r) => r.fuzzCase.kinds));
  assert.deepEqual(MUTATIONS.map((m) => m.name).filter((k) => !kinds.has(k)), [], 'mutation kinds never drawn');
  const runs = reports.flatMap((r) => r.runs);
  for (const command of ['info', 'generate', 'chat']) {
    for (const status of [0, 2]) {
      assert.ok(runs.some((r) => r.args[0] === command && r.status === status), `no ${command} run ended with exit ${status}`);
    }
  }
});

// prepareWhileOpening: the model's load and the tokenizer's work overlap, and each way either can fail leaves
// nothing open and reports the right error at the right time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prepareWhileOpening } from '../../cli/engine/open-while-preparing.js';

class FakeModel {
  closed = 0;
  close(): void {
    this.closed += 1;
  }
}

/** An open() whose load lands when `land` is called (or fails with `fail`), recording when it started. */
function pendingOpen(events: string[]) {
  const model = new FakeModel();
  let land!: () => void;
  let fail!: (err: Error) => void;
  const open = () => {
    events.push('open started');
    return new Promise<FakeModel>((resolve, reject) => {
      land = () => resolve(model);
      fail = reject;
    });
  };
  return { model, open, land: () => land(), fail: (err: Error) => fail(err) };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Runs `body`, then checks that no promise was rejected without a handler meanwhile. */
async function withoutUnhandledRejections(body: () => Promise<void>): Promise<void> {
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  process.on('unhandledRejection', onUnhandled);
  try {
    await body();
    await tick();
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
}

test('the load starts before the preparation, which runs while it is pending; both results come back', async () => {
  const events: string[] = [];
  const { model, open, land } = pendingOpen(events);
  const { prepared, opened } = await prepareWhileOpening(open, async () => {
    events.push('prepare');
    await tick();
    return 42;
  });
  assert.deepEqual(events, ['open started', 'prepare']);
  assert.equal(prepared, 42);
  land();
  assert.equal(await opened, model);
  assert.equal(model.closed, 0);
});

test('a failed preparation is thrown at once; the model is closed once its load lands, not before', async () => {
  const { model, open, land } = pendingOpen([]);
  await assert.rejects(prepareWhileOpening(open, () => {
    throw new Error('tokenizer.json: bad');
  }), /tokenizer\.json: bad/);
  await tick();
  assert.equal(model.closed, 0, 'still loading');
  land();
  await tick();
  assert.equal(model.closed, 1);
});

test('a failed preparation with a failed load: the preparation\'s error, and no unhandled rejection', () =>
  withoutUnhandledRejections(async () => {
    const { open, fail } = pendingOpen([]);
    await assert.rejects(prepareWhileOpening(open, async () => {
      fail(new Error('out of GPU memory'));
      await tick();
      throw new Error('the prompt is too long');
    }), /the prompt is too long/);
  }));

test('an open that fails before its load starts is reported before the preparation runs', async () => {
  let prepared = false;
  const open = async (): Promise<FakeModel> => {
    throw new Error('no CUDA GPU');
  };
  await assert.rejects(prepareWhileOpening(open, () => {
    prepared = true;
  }), /no CUDA GPU/);
  assert.equal(prepared, false);
});

test('a load that fails while the preparation runs is reported where the model is awaited, without an unhandled rejection', () =>
  withoutUnhandledRejections(async () => {
    const { open, fail } = pendingOpen([]);
    const { prepared, opened } = await prepareWhileOpening(open, async () => {
      fail(new Error('model.safetensors: truncated'));
      await tick();
      return 'ids';
    });
    assert.equal(prepared, 'ids');
    await tick();
    await assert.rejects(opened, /model\.safetensors: truncated/);
  }));

// bench checks --dummy names and plans their tests from cli/engine/dummy-models.ts, a mirror of the native
// presets (dummy_preset in addon/glue/model_binding.cc): the native side's own list must match it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DUMMY_NAMES } from '../../cli/engine/dummy-models.js';
import { loadAddon } from '../../cli/native/addon.js';

test('the --dummy names are the native presets', () => {
  // An unknown name is refused before any GPU work, in every build, with the list of presets.
  assert.throws(() => loadAddon().loadDummyModel('no-such-preset', { backend: 'cuda' }), (e: Error) => {
    const list = /unknown dummy model 'no-such-preset' \(([^)]*)\)/.exec(e.message)?.[1];
    assert.deepEqual(list?.split(', '), [...DUMMY_NAMES], e.message);
    return true;
  });
});

// The worker thread behind IsolatedTokenizer (isolated-tokenizer.ts): builds the tokenizer from tokenizer.json and
// answers encode and decode calls, each reply followed by a wake-up of the main thread, which waits for it.
import { workerData, type MessagePort } from 'node:worker_threads';
import type { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { buildChecked, firstLine, withDefaults } from './hf-tokenizer-build.js';

export interface WorkerSetup {
  /** tokenizer.json as text: a string crosses to a worker in a copy, an object in a much slower clone. */
  jsonText: string;
  config: Record<string, unknown>;
  source: string;
  port: MessagePort;
  /** Int32Array[2] over a SharedArrayBuffer: [0] set to 1 and notified when a reply has been posted; [1] set once
   *  this code runs. */
  done: SharedArrayBuffer;
}

export type WorkerCall = { op: 'build' } | { op: 'encode'; text: string; addSpecial: boolean }
  | { op: 'decode'; ids: number[]; skipSpecial: boolean };

export type WorkerReply = { ok: true; value: unknown } | { ok: false; error: string; userError: boolean };

const setup = workerData as WorkerSetup;
const done = new Int32Array(setup.done);
Atomics.store(done, 1, 1);  // running: a missing reply from here on is a call that did not finish
let tokenizer: HfTokenizer | null = null;

function answer(call: WorkerCall): unknown {
  if (call.op === 'build') {
    tokenizer = buildChecked(withDefaults(JSON.parse(setup.jsonText) as Record<string, unknown>), setup.config, setup.source);
    return null;
  }
  if (!tokenizer) throw new Error('the tokenizer was not built');
  if (call.op === 'encode') return tokenizer.encode(call.text, { add_special_tokens: call.addSpecial }).ids;
  return tokenizer.decode(call.ids, { skip_special_tokens: call.skipSpecial });
}

setup.port.on('message', (call: WorkerCall) => {
  let reply: WorkerReply;
  try {
    reply = { ok: true, value: answer(call) };
  } catch (err) {
    reply = { ok: false, error: firstLine(err), userError: (err as Error)?.name === 'UserError' };
  }
  setup.port.postMessage(reply);
  Atomics.store(done, 0, 1);
  Atomics.notify(done, 0);
});

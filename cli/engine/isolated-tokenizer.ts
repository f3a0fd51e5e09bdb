// A tokenizer whose tokenizer.json carries regular expressions of its own runs them on a worker thread, with a
// deadline on every call. JavaScript's regular expressions backtrack, and one like `(a+)+$` takes longer than the
// universe's age on forty characters; nothing can stop a match on the thread that runs it, but a worker can be
// terminated. The calls stay synchronous: the main thread waits on shared memory for the worker's reply.
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { UserError } from '../errors.js';
import type { WorkerCall, WorkerReply, WorkerSetup } from './tokenizer-worker.js';

/** How long a call may take: a base, plus a share per character or id (generous for a 1.3 MB ppl text). */
export interface TokenizerDeadlines {
  /** Starting the worker and building the tokenizer (a 128k vocabulary), with its trial encode. */
  buildMs: number;
  baseMs: number;
  perItemMs: number;
}

export const DEFAULT_DEADLINES: TokenizerDeadlines = { buildMs: 20_000, baseMs: 5_000, perItemMs: 0.05 };

/** The worker went past its deadline (then it is stopped, and every later call fails the same way). */
export class TokenizerTimeout extends Error {}

/**
 * The Node options the worker starts with: this process's, but for `--input-type`, which Node refuses for a worker
 * started from a file (under `node --input-type=module -e ...` the worker never started, and the build waited out
 * its deadline).
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    if (execArgv[i] === '--input-type') i++;  // its value is the next argument
    else if (!execArgv[i].startsWith('--input-type=')) kept.push(execArgv[i]);
  }
  return kept;
}

export class IsolatedTokenizer {
  private worker: Worker | null;
  private readonly port: MessagePort;
  /** [0]: a reply has been posted; [1]: the worker's code runs (its imports loaded). */
  private readonly done = new Int32Array(new SharedArrayBuffer(8));
  private stopped: string | null = null;
  private built = false;

  /**
   * Starts the worker and has it build the tokenizer, while this thread goes on; waitUntilBuilt() (or the first
   * call) waits for it and gives a failure as the UserError the main thread would give.
   */
  constructor(jsonText: string, config: Record<string, unknown>, private readonly source: string,
              private readonly deadlines: TokenizerDeadlines = DEFAULT_DEADLINES) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const setup: WorkerSetup = {
      jsonText, config, source, port: port2, done: this.done.buffer as SharedArrayBuffer,
    };
    this.worker = new Worker(new URL('./tokenizer-worker.js', import.meta.url), {
      workerData: setup, transferList: [port2], execArgv: workerExecArgv(process.execArgv),
    });
    // Neither may keep the process alive: a command ends when its work does.
    this.worker.unref();
    // Its failures reach the caller as a missing reply (the event comes only once this thread is free again).
    this.worker.on('error', () => undefined);
    this.port.unref();
    this.send({ op: 'build' });
  }

  waitUntilBuilt(): void {
    if (this.built) return;
    try {
      this.receive(this.deadlines.buildMs, 'building it and trying it on a test text');
      this.built = true;
    } catch (err) {
      this.stop(err instanceof Error ? err.message : String(err));
      if (err instanceof TokenizerTimeout) throw new UserError(`${this.source}: ${err.message}`);
      throw err;
    }
  }

  encode(text: string, addSpecial: boolean): number[] {
    return this.call({ op: 'encode', text, addSpecial }, this.deadline(text.length), `a ${text.length}-character text`) as number[];
  }

  decode(ids: number[], skipSpecial: boolean): string {
    return this.call({ op: 'decode', ids, skipSpecial }, this.deadline(ids.length), `${ids.length} ids`) as string;
  }

  private deadline(items: number): number {
    return this.deadlines.baseMs + items * this.deadlines.perItemMs;
  }

  private call(call: WorkerCall, deadlineMs: number, what: string): unknown {
    this.waitUntilBuilt();
    this.send(call);
    return this.receive(deadlineMs, what);
  }

  private send(call: WorkerCall): void {
    if (this.stopped !== null || !this.worker) throw new TokenizerTimeout(this.stopped ?? 'the tokenizer is stopped');
    Atomics.store(this.done, 0, 0);
    this.port.postMessage(call);
  }

  /** The reply to the call sent last, waiting up to deadlineMs for it. */
  private receive(deadlineMs: number, what: string): unknown {
    if (this.stopped !== null || !this.worker) throw new TokenizerTimeout(this.stopped ?? 'the tokenizer is stopped');
    Atomics.wait(this.done, 0, 0, deadlineMs);
    const reply = receiveMessageOnPort(this.port)?.message as WorkerReply | undefined;
    if (!reply) {
      const seconds = +(deadlineMs / 1000).toFixed(1);
      const reason = Atomics.load(this.done, 1) === 0
        ? `the tokenizer's worker thread did not start within ${seconds} s`
        : `the tokenizer ran for more than ${seconds} s on ${what}: a regular expression of the file backtracks without end`;
      this.stop(reason);
      throw new TokenizerTimeout(reason);
    }
    if (reply.ok) return reply.value;
    throw reply.userError ? new UserError(reply.error) : new Error(reply.error);
  }

  /** Ends the worker (terminating stops even a match in progress); later calls fail with `reason`. */
  stop(reason = 'the tokenizer is stopped'): void {
    this.stopped ??= reason;
    void this.worker?.terminate();
    this.worker = null;
  }
}

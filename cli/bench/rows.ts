// The rows of a bench run: one per configuration and test. A configuration's child process reports its
// tests as they finish; whatever it did not report when it ended (a crash, an out-of-memory kill, an
// error) still becomes a row saying so, so nothing asked for is ever silently missing.
import type { MemoryUse } from '../engine/model-handle.js';
import { meanSd, testName, type BenchTest, type TestKind } from '../engine/benchmark.js';
import type { ChildMessage, ConfigMessage } from './protocol.js';
import type { EngineAverages } from './utilization.js';

/** One configuration as the user asked for it: a model, a backend, a GPU placement. */
export interface Configuration {
  /** Shown in the model column: the folder's name, or "llama-7b (dummy)". */
  label: string;
  modelPath: string | null;
  dummy: string | null;
  backend: string;
  /** --gpu-split as given; 'none' when not split. */
  split: string;
  gpus: string | null;
}

/** ok: measured; skipped: does not fit; failed: the backend or the process failed; not-run: its process ended first. */
export type RowStatus = 'ok' | 'skipped' | 'failed' | 'not-run';

export interface BenchRow {
  model: string;
  modelPath: string | null;
  /** Weights in memory. */
  sizeBytes: number | null;
  params: number | null;
  /** The backend that ran (cpu, cuda), or the one asked for when the model never loaded. */
  backend: string;
  split: string;
  gpus: string | null;
  test: string;
  kind: TestKind;
  tokens: number;
  depth: number;
  repetitions: number;
  status: RowStatus;
  message: string | null;
  /** Tokens per second over the timed runs. */
  tokensPerSec: { mean: number; sd: number; samples: number[] } | null;
  loadSeconds: number | null;
  maxSeqLen: number | null;
  memory: MemoryUse | null;
  /** tg tests: bytes read per token, and bytes × t/s as a share of the measured copy bandwidth. */
  bytesPerToken: number | null;
  bandwidthUse: number | null;
  /** gpu-monitor's engine averages over the timed runs; null where no GPU was sampled. */
  engines: EngineAverages | null;
  gpuNames: string[];
  cuda: string | null;
}

/** Engine averages for a window on the GPUs with these PCI bus ids; null when nothing samples GPUs. */
export type EngineAverager = (busIds: string[], startMs: number, endMs: number) => EngineAverages | null;

/** Folds one child's messages into rows, handing each to `emit` as soon as it is known. */
export class ConfigurationRows {
  config: ConfigMessage | null = null;
  private readonly done = new Set<string>();
  private inFlight: string | null = null;
  private started = false;
  private failures = 0;

  constructor(private readonly c: Configuration, private readonly tests: BenchTest[], private readonly repetitions: number,
      private readonly averageEngines: EngineAverager, private readonly emit: (row: BenchRow) => void) {}

  /** Rows that failed or were not run. */
  get failed(): number {
    return this.failures;
  }

  accept(m: ChildMessage): void {
    switch (m.type) {
      case 'config': this.config = m; break;
      case 'start':
        this.inFlight = m.test;
        this.started = true;
        break;
      case 'skipped': this.finish(m.test, 'skipped', m.message); break;
      case 'test-failed': this.finish(m.test, 'failed', m.message); break;
      case 'result': {
        const { mean, sd } = meanSd(m.tokensPerSec);
        const busIds = this.config?.gpus.map((g) => g.pciBusId) ?? [];
        this.finish(m.test, 'ok', null, {
          tokensPerSec: { mean, sd, samples: m.tokensPerSec },
          bytesPerToken: m.bytesPerToken, bandwidthUse: m.bandwidthUse,
          engines: busIds.length > 0 ? this.averageEngines(busIds, m.startMs, m.endMs) : null,
        });
        break;
      }
      default: break;
    }
  }

  /** After the child has ended: `failure` (null when it finished cleanly) for every test it did not report. */
  close(failure: string | null): void {
    for (const t of this.tests) {
      const name = testName(t);
      if (this.done.has(name)) continue;
      if (failure === null) this.finish(name, 'failed', 'the benchmark process ended without reporting this test');
      // The test that was running, or all of them when the configuration failed before any test started.
      else if (name === this.inFlight || !this.started) this.finish(name, 'failed', failure);
      else this.finish(name, 'not-run', `${failure}, during an earlier test`);
    }
  }

  /** A configuration that never started (the run was interrupted first): every test not run. */
  notRun(reason: string): void {
    for (const t of this.tests) this.finish(testName(t), 'not-run', reason);
  }

  private finish(name: string, status: RowStatus, message: string | null, measured: Partial<BenchRow> = {}): void {
    const t = this.tests.find((x) => testName(x) === name);
    if (!t || this.done.has(name)) return;
    this.done.add(name);
    if (name === this.inFlight) this.inFlight = null;
    if (status === 'failed' || status === 'not-run') this.failures++;
    const cfg = this.config;
    this.emit({
      model: this.c.label, modelPath: this.c.modelPath,
      sizeBytes: cfg?.memory.weightsBytes ?? null, params: cfg?.params ?? null,
      backend: cfg?.backend ?? this.c.backend, split: this.c.split, gpus: this.c.gpus,
      test: name, kind: t.kind, tokens: t.tokens, depth: t.depth, repetitions: this.repetitions,
      status, message,
      tokensPerSec: null, loadSeconds: cfg?.loadSeconds ?? null, maxSeqLen: cfg?.maxSeqLen ?? null,
      memory: cfg?.memory ?? null, bytesPerToken: null, bandwidthUse: null, engines: null,
      gpuNames: cfg?.gpus.map((g) => g.name) ?? [], cuda: cfg?.cudaRuntime ?? null,
      ...measured,
    });
  }
}

// Progress of `xllama bench` on stderr, so the screen is never blank while it works: a spinner saying what
// runs now (on a terminal), and a line per finished test (above the spinner, or plain lines when piped).
import { statusText } from '../bench/output.js';
import type { BenchRow } from '../bench/rows.js';
import { startSpinner } from './spinner.js';

export class BenchProgress {
  private readonly spinner = startSpinner('bench: starting');
  private finished = 0;

  constructor(private readonly totalTests: number, private readonly repetitions: number) {}

  private count(): string {
    return `[${this.finished}/${this.totalTests}]`;
  }

  configuration(label: string): void {
    this.spinner.setText(`bench ${this.count()} ${label}: loading`);
  }

  run(label: string, test: string, run: number): void {
    this.spinner.setText(`bench ${this.count()} ${label} · ${test} · ${run === 0 ? 'warm-up' : `run ${run}/${this.repetitions}`}`);
  }

  row(label: string, r: BenchRow): void {
    this.finished++;
    const result = r.tokensPerSec ? `${r.tokensPerSec.mean.toFixed(2)} ± ${r.tokensPerSec.sd.toFixed(2)} t/s` : statusText(r);
    this.spinner.above(() => process.stderr.write(`bench ${this.count()} ${label} · ${r.test}: ${result}\n`));
  }

  /** Output written while the spinner runs (rows streamed to a terminal) goes above it. */
  above(write: () => void): void {
    this.spinner.above(write);
  }

  stop(): void {
    this.spinner.stop();
  }
}

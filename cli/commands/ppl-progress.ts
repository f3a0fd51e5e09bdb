// Progress of `xllama ppl` on stderr, with llama-perplexity's running values ([1]5.1234,[2]5.3012,…).
// A terminal gets one live line (chunks, speed, ETA and the latest values that fit), replaced at the end by
// the whole list; anything else (a pipe, a log) gets one plain line per chunk and no escape codes.
import { formatInteger } from '../format.js';
import type { PplProgress } from '../engine/perplexity.js';

export function formatEta(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** llama-perplexity's running value for chunk i (1-based). */
export const runningValue = (i: number, ppl: number) => `[${i}]${ppl.toFixed(4)}`;

export class PplProgressReporter {
  private readonly values: string[] = [];
  private readonly live: boolean;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {
    this.live = Boolean(out.isTTY) && out.columns > 0;
  }

  line(text: string): void {
    this.out.write(`${text}\n`);
  }

  update(p: PplProgress): void {
    this.values.push(runningValue(p.done, p.ppl));
    const status = `${p.done}/${p.total} chunks · ${formatInteger(p.evaluatedTokens / (p.elapsedMs / 1000))} tok/s · ` +
      `ETA ${formatEta(p.etaMs)}`;
    if (!this.live) {
      this.out.write(`${this.values[this.values.length - 1]} · ${status}\n`);
      return;
    }
    // The newest values that fit beside the status on one terminal line.
    const room = this.out.columns - 1 - status.length - 3;
    let shown = '';
    for (let i = this.values.length - 1; i >= 0; i--) {
      const next = shown ? `${this.values[i]},${shown}` : this.values[i];
      if (next.length > room) break;
      shown = next;
    }
    this.out.write(`\r\x1b[K${status}${shown ? ` · ${shown}` : ''}`);
  }

  /** On a terminal: the live line gives way to the whole list of running values. */
  finish(): void {
    if (this.live && this.values.length > 0) this.out.write(`\r\x1b[K${this.values.join(',')}\n`);
  }
}

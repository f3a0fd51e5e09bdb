// Holds back streamed text that could be the start of a stop string, so a stop string is never printed
// even when it arrives split over several tokens.

export interface StopCheck {
  /** Text that is safe to show now. */
  text: string;
  /** A stop string was found; `text` ends right before it. */
  stopped: boolean;
}

export class StopStringFilter {
  private held = '';
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  push(text: string): StopCheck {
    if (this.stops.length === 0) return { text, stopped: false };
    const buffer = this.held + text;
    let cut = -1;
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.held = '';
      return { text: buffer.slice(0, cut), stopped: true };
    }
    const keep = this.longestStopPrefixSuffix(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), stopped: false };
  }

  /** At the end of generation: the held-back text was not a stop string after all. */
  flush(): string {
    const out = this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of `buffer` that is a proper prefix of some stop string. */
  private longestStopPrefixSuffix(buffer: string): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, buffer.length); n > best; n--) {
        if (buffer.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

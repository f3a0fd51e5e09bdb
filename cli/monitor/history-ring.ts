// A fixed-size ring of recent values (oldest first when read), for sparklines.
export class HistoryRing {
  private readonly buf: (number | null)[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('HistoryRing capacity must be a positive integer');
    this.buf = new Array<number | null>(capacity).fill(null);
  }

  push(value: number | null): void {
    const at = (this.start + this.count) % this.capacity;
    this.buf[at] = value;
    if (this.count < this.capacity) this.count++;
    else this.start = (this.start + 1) % this.capacity;
  }

  get size(): number {
    return this.count;
  }

  /** Values oldest first; null where the engine had no reading. */
  values(): (number | null)[] {
    const out: (number | null)[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.buf[(this.start + i) % this.capacity]);
    return out;
  }
}

// Where snapshots come from: the live NVML collector, or a recorded trace played back.
import { UserError } from '../errors.js';
import type { MonitorAddon, MonitorSnapshot } from '../native/types.js';

export const MIN_INTERVAL_MS = 100; // GPM needs two samples at least 100 ms apart
export const MAX_INTERVAL_MS = 60_000;

export type SnapshotListener = (snapshot: MonitorSnapshot) => void;

export interface SnapshotSource {
  readonly kind: 'live' | 'replay';
  /** Starts emitting; `onEnd` is called once when a replay runs out (live sources never end). */
  start(onSnapshot: SnapshotListener, onEnd: () => void): void;
  stop(): void;
  setPaused(paused: boolean): void;
  /** Live: halve / double the sampling interval. Replay: double / halve the playback speed. */
  faster(): void;
  slower(): void;
  /** e.g. "every 500 ms" or "replay x2". */
  rateLabel(): string;
}

/** The collector cannot run here (no driver, no GPU): exit code 1, not a usage error. */
export class MonitorUnavailableError extends UserError {
  constructor(reason: string) {
    super(`gpu-monitor: no GPU to monitor: ${reason}`, 1);
  }
}

export class LiveSource implements SnapshotSource {
  readonly kind = 'live';
  private timer: NodeJS.Timeout | null = null;
  private lastSeq = -1;
  private listener: SnapshotListener | null = null;

  constructor(private readonly addon: MonitorAddon, private intervalMs: number) {}

  start(onSnapshot: SnapshotListener): void {
    this.listener = onSnapshot;
    this.restart();
  }

  private restart(): void {
    const started = this.addon.monitorStart(this.intervalMs);
    if (!started.ok) throw new MonitorUnavailableError(started.reason);
    this.lastSeq = -1;
    if (this.timer) clearInterval(this.timer);
    // Polling is a cheap copy of the collector's latest snapshot; the NVML calls run on its own thread.
    this.timer = setInterval(() => this.poll(), Math.max(20, Math.floor(this.intervalMs / 5)));
  }

  private poll(): void {
    const snap = this.addon.monitorSnapshot(this.lastSeq);
    if (!snap || snap.seq === this.lastSeq) return;
    this.lastSeq = snap.seq;
    this.listener?.(snap);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.addon.monitorStop();
  }

  setPaused(): void {
    // Sampling continues while paused (recording keeps going); the session stops updating the view.
  }

  faster(): void {
    this.setInterval(Math.max(MIN_INTERVAL_MS, Math.round(this.intervalMs / 2)));
  }

  slower(): void {
    this.setInterval(Math.min(MAX_INTERVAL_MS, this.intervalMs * 2));
  }

  private setInterval(ms: number): void {
    if (ms === this.intervalMs) return;
    this.intervalMs = ms;
    if (this.timer) this.restart();
  }

  rateLabel(): string {
    return `every ${this.intervalMs} ms`;
  }
}

/** Plays snapshots back at the recorded pace times `speed` (Infinity: as fast as possible). */
export class ReplaySource implements SnapshotSource {
  readonly kind = 'replay';
  private next = 0;
  private timer: NodeJS.Timeout | null = null;
  private paused = false;
  private running = false;
  private onSnapshot: SnapshotListener = () => {};
  private onEnd: () => void = () => {};

  constructor(private readonly snapshots: MonitorSnapshot[], private speed: number) {}

  start(onSnapshot: SnapshotListener, onEnd: () => void): void {
    this.onSnapshot = onSnapshot;
    this.onEnd = onEnd;
    this.running = true;
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (!this.running || this.paused) return;
    this.timer = setTimeout(() => this.emit(), delayMs);
  }

  private emit(): void {
    this.timer = null;
    if (!this.running || this.paused) return;
    if (this.next >= this.snapshots.length) {
      this.running = false;
      this.onEnd();
      return;
    }
    const snap = this.snapshots[this.next++];
    this.onSnapshot(snap);
    const following = this.snapshots[this.next];
    const gap = following ? Math.max(0, following.time - snap.time) : 0;
    this.schedule(Number.isFinite(this.speed) ? gap / this.speed : 0);
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  setPaused(paused: boolean): void {
    if (paused === this.paused) return;
    this.paused = paused;
    if (paused && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    } else if (!paused) {
      this.schedule(0);
    }
  }

  faster(): void {
    if (Number.isFinite(this.speed)) this.speed = Math.min(64, this.speed * 2);
  }

  slower(): void {
    if (Number.isFinite(this.speed)) this.speed = Math.max(1 / 16, this.speed / 2);
    else this.speed = 64;
  }

  rateLabel(): string {
    return Number.isFinite(this.speed) ? `replay x${+this.speed.toFixed(3)}` : 'replay (max speed)';
  }
}

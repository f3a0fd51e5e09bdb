// Wires a snapshot source to the recorder and the model, and hands views to whoever renders them
// (the Ink panel, the --json printer). Pausing freezes the view; recording continues.
import type { MonitorSnapshot } from '../native/types.js';
import { MonitorModel, type MonitorView } from './aggregate.js';
import type { SnapshotSource } from './sources.js';
import type { TraceWriter } from './trace.js';

export type ViewListener = (view: MonitorView) => void;

export class MonitorSession {
  private readonly model = new MonitorModel();
  private readonly viewListeners = new Set<ViewListener>();
  private readonly endListeners = new Set<() => void>();
  private pausedState = false;
  private latestView: MonitorView | null = null;

  constructor(readonly source: SnapshotSource, private readonly recorder: TraceWriter | null = null) {}

  get paused(): boolean {
    return this.pausedState;
  }

  get latest(): MonitorView | null {
    return this.latestView;
  }

  onView(listener: ViewListener): () => void {
    this.viewListeners.add(listener);
    return () => this.viewListeners.delete(listener);
  }

  onEnd(listener: () => void): () => void {
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  start(): void {
    this.source.start(
      (snap) => this.accept(snap),
      () => this.endListeners.forEach((l) => l()),
    );
  }

  stop(): void {
    this.source.stop();
    this.recorder?.close();
  }

  togglePause(): void {
    this.pausedState = !this.pausedState;
    this.source.setPaused(this.pausedState);
  }

  private accept(snap: MonitorSnapshot): void {
    this.recorder?.write(snap);
    if (this.pausedState) return;
    this.latestView = this.model.update(snap);
    const view = this.latestView;
    this.viewListeners.forEach((l) => l(view));
  }
}

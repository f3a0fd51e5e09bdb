// The interactive gpu-monitor: full-screen (alternate screen), follows terminal resizes, keys
// q quit, p pause, +/- interval, tab next GPU. Loaded only by dynamic import.
import { useEffect, useState } from 'react';
import { render, useApp, useInput, useStdout } from 'ink';
import type { MonitorView } from '../monitor/aggregate.js';
import type { MonitorSession } from '../monitor/session.js';
import { MonitorScreen } from './monitor-screen.js';

export function GpuMonitorApp({ session }: { session: MonitorSession }) {
  const { exit } = useApp();
  const { stdout } = useStdout();
  const [view, setView] = useState<MonitorView | null>(session.latest);
  const [selected, setSelected] = useState(0);
  const [paused, setPaused] = useState(session.paused);
  const [rate, setRate] = useState(session.source.rateLabel());
  const [size, setSize] = useState({ columns: stdout.columns ?? 100, rows: stdout.rows ?? 40 });

  const [ended, setEnded] = useState(false);
  useEffect(() => session.onView(setView), [session]);
  useEffect(() => session.onEnd(() => setEnded(true)), [session]);
  useEffect(() => {
    const onResize = () => setSize({ columns: stdout.columns ?? 100, rows: stdout.rows ?? 40 });
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);

  useInput((input, key) => {
    if (input === 'q' || key.escape) exit();
    else if (input === 'p' || input === ' ') {
      session.togglePause();
      setPaused(session.paused);
    } else if (input === '+' || input === '=') {
      session.source.faster();
      setRate(session.source.rateLabel());
    } else if (input === '-' || input === '_') {
      session.source.slower();
      setRate(session.source.rateLabel());
    } else if (key.tab) {
      const n = Math.max(1, view?.gpus.length ?? 1);
      setSelected((s) => (key.shift ? (s + n - 1) % n : (s + 1) % n));
    }
  });

  return (
    <MonitorScreen view={view} selected={selected} paused={paused} rateLabel={ended ? `${rate} · end of trace` : rate}
      columns={size.columns} rows={size.rows} />
  );
}

const ENTER_ALT_SCREEN = '\x1b[?1049h\x1b[H';
const LEAVE_ALT_SCREEN = '\x1b[?1049l';

/** Runs the panel until q or --duration (a finished replay stays on screen), restoring the screen after. */
export async function runMonitorApp(session: MonitorSession, durationMs: number | null): Promise<void> {
  session.start(); // throws (no driver, no GPU) before the screen is touched
  process.stdout.write(ENTER_ALT_SCREEN);
  const restore = () => process.stdout.write(LEAVE_ALT_SCREEN);
  process.once('exit', restore);
  const app = render(<GpuMonitorApp session={session} />, { exitOnCtrlC: true });
  const timer = durationMs === null ? null : setTimeout(() => app.unmount(), durationMs);
  try {
    await app.waitUntilExit();
  } finally {
    if (timer) clearTimeout(timer);
    session.stop();
    app.unmount();
    process.off('exit', restore);
    restore();
  }
}

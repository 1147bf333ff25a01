/**
 * PeriodTicker: wakes this thread's event loop every `periodUs`, finer than setTimeout (whose
 * 1 ms granularity fires 1.1 ms apart at best). A small worker sleeps to each period boundary in
 * Atomics.wait and bumps a shared counter; this side awaits the counter with Atomics.waitAsync and
 * calls `onWake`. Wakes coalesce: an owner busy for several periods gets one call, so `onWake`
 * reads the clock itself (as the virtual card and the receive tick do).
 *
 * It costs a thread and a wake per period (about 6 % of a core at 333 us here), so it is for the
 * low-latency paths that need it, never the default.
 */
import { startSiblingWorker } from '../sibling-worker.js';

export const TICK_COUNT = 0;
export const TICK_STOP = 1;

export interface PeriodTickerData {
  control: SharedArrayBuffer;
  periodUs: number;
}

export interface PeriodTicker {
  /** Wakes delivered so far. */
  readonly wakes: number;
  /** Resolves when the worker's loop runs (the first wake follows one period later). */
  readonly ready: Promise<void>;
  /** Why the worker failed, if it did (it then wakes no more). */
  readonly error: Error | null;
  stop(): void;
}

/** The smallest period accepted: below it the wake-up cost exceeds the period. */
export const MIN_TICK_PERIOD_US = 50;

export function startPeriodTicker(periodUs: number, onWake: () => void): PeriodTicker {
  if (!Number.isFinite(periodUs) || periodUs < MIN_TICK_PERIOD_US)
    throw new RangeError(`periodUs must be a number >= ${MIN_TICK_PERIOD_US}, got ${periodUs}`);
  const ctl = new Int32Array(new SharedArrayBuffer(8));
  const data: PeriodTickerData = { control: ctl.buffer as SharedArrayBuffer, periodUs };
  const worker = startSiblingWorker(import.meta.url, 'period-ticker-worker', data);
  // Like an interval timer, a running ticker keeps the process alive; stop() ends the worker.
  let error: Error | null = null;
  const ready = new Promise<void>((resolve) => {
    worker.once('message', () => resolve());
    worker.once('exit', () => resolve());
  });
  worker.on('error', (e) => {
    error = e;
  });
  let stopped = false;
  let seen = 0;
  let wakes = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const r = Atomics.waitAsync(ctl, TICK_COUNT, seen);
      if (r.async) await r.value;
      if (stopped) return;
      seen = Atomics.load(ctl, TICK_COUNT);
      wakes++;
      onWake();
    }
  };
  void loop();
  return {
    get wakes() {
      return wakes;
    },
    ready,
    get error() {
      return error;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      Atomics.store(ctl, TICK_STOP, 1);
      Atomics.notify(ctl, TICK_STOP);
      // Releases the pending waitAsync too.
      Atomics.add(ctl, TICK_COUNT, 1);
      Atomics.notify(ctl, TICK_COUNT);
    },
  };
}

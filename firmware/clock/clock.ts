/**
 * The ClockSource seam for timers. Services take "now" and timers from here so
 * unit tests run in virtual time (FakeClock) and never sleep.
 */
export interface TimerHandle {
  readonly id: number;
}

export interface ClockSource {
  /** Monotonic milliseconds (fractional), for scheduling and intervals. */
  monotonicMs(): number;
  /** Wall-clock milliseconds since the epoch, for records people read. */
  wallMs(): number;
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export function createSystemClock(): ClockSource {
  const timers = new Map<number, NodeJS.Timeout>();
  let next = 1;
  return {
    monotonicMs: () => performance.now(),
    wallMs: () => Date.now(),
    setTimeout(fn, delayMs) {
      const id = next++;
      const t = setTimeout(
        () => {
          timers.delete(id);
          fn();
        },
        Math.max(0, delayMs),
      );
      timers.set(id, t);
      return { id };
    },
    clearTimeout(handle) {
      const t = timers.get(handle.id);
      if (t) {
        clearTimeout(t);
        timers.delete(handle.id);
      }
    },
  };
}

/** Virtual time for unit tests: nothing fires until `advance` is called. */
export class FakeClock implements ClockSource {
  private now: number;
  private wallOffset: number;
  private seq = 1;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();

  constructor(startMs = 0, wallStartMs = Date.UTC(2026, 0, 1)) {
    this.now = startMs;
    this.wallOffset = wallStartMs - startMs;
  }

  monotonicMs(): number {
    return this.now;
  }

  wallMs(): number {
    return this.now + this.wallOffset;
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const id = this.seq++;
    this.pending.set(id, { at: this.now + Math.max(0, delayMs), fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    this.pending.delete(handle.id);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Move time forward, firing every timer due on the way, in order. */
  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, t] of this.pending) {
        if (t.at <= target && (t.at < nextAt || (t.at === nextAt && id < nextId))) {
          nextAt = t.at;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const t = this.pending.get(nextId)!;
      this.pending.delete(nextId);
      this.now = Math.max(this.now, t.at);
      t.fn();
    }
    this.now = target;
  }
}

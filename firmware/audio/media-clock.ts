/**
 * The MediaClock seam: PTP time for the audio engine, plus an honest lock status.
 *
 * PTP time here is TAI nanoseconds. Both bindings map it from the monotonic clock with one anchor
 * taken at creation (PTP = monotonic + anchor). ptp4l (software timestamps) or phc2sys (hardware)
 * discipline the system clock's frequency, and CLOCK_MONOTONIC follows that frequency without
 * ever stepping, so the mapping stays right while never jumping. Workers receive the anchor and
 * compute the same mapping from `process.hrtime.bigint()`.
 */
export type LockState = 'unlocked' | 'locking' | 'locked' | 'master';

export interface MediaClockStatus {
  state: LockState;
  source: 'free-running' | 'ptp4l';
  domain: number;
  /** Offset from the master in ns (ptp4l's master_offset), null when unknown. */
  offsetNs: number | null;
  pathDelayNs: number | null;
  /** Grandmaster clock identity as SDP writes it (`00-11-22-FF-FE-33-44-55`), null when none. */
  grandmaster: string | null;
  portState: string | null;
  /** Why the state is what it is, for people. */
  detail: string;
}

export type MediaClockEvent =
  | {
      event: 'state';
      from: LockState;
      to: LockState;
      cause: string;
      status: MediaClockStatus;
    }
  | {
      /**
       * The system clock was stepped under the mapping (by `stepNs`, the old mapping's error) and
       * `anchorNs` now maps it again. Streams started before keep the old mapping until reopened
       * (`AudioEngine.realign`).
       */
      event: 'realigned';
      stepNs: number;
      status: MediaClockStatus;
    };

export interface MediaClock {
  /** PTP (TAI) time now, ns. */
  nowNs(): bigint;
  /** ptpNs = monotonicNs (process.hrtime.bigint()) + anchorNs. */
  readonly anchorNs: bigint;
  status(): MediaClockStatus;
  onEvent(handler: (e: MediaClockEvent) => void): () => void;
  close(): Promise<void>;
}

/** TAI - UTC in seconds since 2017 (used until ptp4l tells us otherwise). */
export const TAI_UTC_OFFSET_S = 37;

/**
 * TAI minus the monotonic clock, ns, read from the system (wall) clock once. (It used to read the
 * monotonic clock, then `performance.timeOrigin + performance.now()`; `performance` loads lazily,
 * and on first use that took 1..2 ms, so the anchor came out that much ahead and two free-running
 * media clocks on one host disagreed: late packets at a 2 ms playout delay.) Node gives the wall
 * clock with no finer reading than `Date.now()` (whole ms), so this catches a tick of it: the
 * wall clock turned that millisecond between the call before and the call that saw it change.
 * A try counts only if those two calls lie within 20 us of monotonic time (not preempted, no
 * lazy initialisation in between); it spins at most about a millisecond per try.
 */
export function systemAnchorNs(): bigint {
  let fallback: bigint | null = null;
  for (let attempt = 0; attempt < 20; attempt++) {
    // Each Date.now() call is bracketed: it ran after `prevStart`. The first call that sees the
    // next millisecond ran before `end`, so the tick lies in [prevStart, end].
    let prevStart = process.hrtime.bigint();
    const d0 = Date.now();
    let start = prevStart;
    let d = d0;
    let end = prevStart;
    while (d === d0) {
      prevStart = start;
      start = process.hrtime.bigint();
      d = Date.now();
      end = process.hrtime.bigint();
    }
    const anchor =
      BigInt(d) * 1_000_000n + BigInt(TAI_UTC_OFFSET_S) * 1_000_000_000n - (prevStart + end) / 2n;
    if (end - prevStart <= 20_000n) return anchor;
    fallback ??= anchor;
  }
  return fallback!;
}

/**
 * How far a clock with `anchorNs` has drifted from the system clock now, ns (positive: the media
 * clock is ahead), to within about half a millisecond: one `Date.now()` reading between two
 * monotonic ones (no spinning; cheap enough for every poll). Null when the readings were more
 * than 20 us apart (preempted). A system clock stepped after the anchor was taken shows here.
 */
export function anchorSkewNs(anchorNs: bigint): bigint | null {
  const before = process.hrtime.bigint();
  const wallMs = Date.now();
  const after = process.hrtime.bigint();
  if (after - before > 20_000n) return null;
  // Date.now() truncates: the true wall time is wallMs + [0, 1) ms; take the middle.
  const wallNs = BigInt(wallMs) * 1_000_000n + 500_000n + BigInt(TAI_UTC_OFFSET_S) * 1_000_000_000n;
  return (before + after) / 2n + anchorNs - wallNs;
}

/** No PTP: the machine's own clock, always reported `unlocked`. */
export function createFreeRunningClock(domain = 0, anchorNs = systemAnchorNs()): MediaClock {
  const status: MediaClockStatus = Object.freeze({
    state: 'unlocked',
    source: 'free-running',
    domain,
    offsetNs: null,
    pathDelayNs: null,
    grandmaster: null,
    portState: null,
    detail: 'no ptp4l: free-running local clock',
  });
  return {
    anchorNs,
    nowNs: () => process.hrtime.bigint() + anchorNs,
    status: () => status,
    onEvent: () => () => undefined,
    close: async () => undefined,
  };
}

/** A clock for unit tests: time is whatever the test sets. */
export class FakeMediaClock implements MediaClock {
  readonly anchorNs = 0n;
  private current: MediaClockStatus;
  private readonly handlers = new Set<(e: MediaClockEvent) => void>();
  constructor(
    public now: bigint = 1_700_000_000_000_000_000n,
    state: LockState = 'unlocked',
  ) {
    this.current = {
      state,
      source: 'free-running',
      domain: 0,
      offsetNs: null,
      pathDelayNs: null,
      grandmaster: null,
      portState: null,
      detail: 'fake',
    };
  }
  nowNs(): bigint {
    return this.now;
  }
  status(): MediaClockStatus {
    return this.current;
  }
  set(status: Partial<MediaClockStatus>, cause = 'test'): void {
    const from = this.current.state;
    this.current = { ...this.current, ...status };
    if (from !== this.current.state)
      for (const h of this.handlers)
        h({ event: 'state', from, to: this.current.state, cause, status: this.current });
  }
  onEvent(handler: (e: MediaClockEvent) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
  async close(): Promise<void> {}
}

/**
 * Local media timestamp now (48 kHz, mod 2^32) for a clock with anchor `anchorNs`, read as often
 * as packets arrive without allocating: one exact BigInt reading at creation, then
 * `performance.now()` (the same monotonic clock, as a float) for the time since. Agrees with
 * `rtpTimestampAt(clock.nowNs())` to within one frame. For worker threads, which get the anchor.
 */
export function monotonicTsSource(anchorNs: bigint): () => number {
  const p0 = performance.now();
  const ptp0 = process.hrtime.bigint() + anchorNs;
  const sample0 = (ptp0 * 48000n) / 1_000_000_000n;
  // Fraction of a sample already past at ptp0, in samples.
  const frac0 = Number(ptp0 * 48000n - sample0 * 1_000_000_000n) / 1e9;
  const base = Number(sample0 % 0x1_0000_0000n);
  return () => (base + Math.floor(frac0 + (performance.now() - p0) * 48)) >>> 0;
}

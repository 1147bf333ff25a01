/**
 * The announce schedule, as pure arithmetic: announcements sit on a fixed grid
 * `anchor + k * period` of the monotonic clock, so timer lateness never
 * accumulates into drift. A tick that wakes after one or more grid points were
 * missed (the event loop stalled) sends once and moves to the next grid point
 * in the future: no bursts of catch-up packets.
 */
export interface ScheduleStep {
  /** Index of the grid point this send belongs to. */
  index: number;
  /** Monotonic time of the next grid point after `now`. */
  nextAt: number;
  /** Grid points skipped because the wake-up came late. */
  missed: number;
}

export function scheduleStep(
  anchorMs: number,
  periodMs: number,
  lastIndex: number,
  nowMs: number,
): ScheduleStep {
  if (!(periodMs > 0)) throw new RangeError('period must be positive');
  const due = Math.max(lastIndex + 1, Math.floor((nowMs - anchorMs) / periodMs));
  const index = Math.max(due, 0);
  const missed = Math.max(0, index - (lastIndex + 1));
  const nextIndex = Math.max(index + 1, Math.floor((nowMs - anchorMs) / periodMs) + 1);
  return { index, nextAt: anchorMs + nextIndex * periodMs, missed };
}

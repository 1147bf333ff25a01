/**
 * Progress while a drill runs: a one-line bar redrawn in place on a TTY,
 * plain lines (at most one every few seconds, and on every step change) when
 * the output is a file or a CI log.
 */
export interface ProgressCounts {
  step: string;
  done: number;
  total: number;
  up: number;
  peripherals: number;
  failed: number;
}

/** Pure: the bar text for a width. */
export function renderBar(c: ProgressCounts, width = 30, elapsedMs = 0): string {
  const frac = c.total > 0 ? Math.min(1, c.done / c.total) : 0;
  const filled = Math.round(frac * width);
  return (
    `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(frac * 100)).padStart(3)}% ` +
    `${c.step} ${c.done}/${c.total} · up ${c.up}/${c.peripherals}` +
    (c.failed ? ` · ${c.failed} failed` : '') +
    ` · ${(elapsedMs / 1000).toFixed(0)} s`
  );
}

export class Progress {
  private last = '';
  private lastPlainAt = 0;
  private lastStep = '';
  private lastFinished = '';
  private readonly started: number;

  constructor(
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number } = process.stderr,
    private readonly enabled = true,
    private readonly now: () => number = Date.now,
    private readonly plainEveryMs = 5000,
  ) {
    this.started = now();
  }

  update(c: ProgressCounts): void {
    if (!this.enabled) return;
    const line = renderBar(c, 30, this.now() - this.started);
    if (this.out.isTTY) {
      if (line === this.last) return;
      this.last = line;
      const cols = this.out.columns ?? 100;
      this.out.write(`\r${line.slice(0, cols - 1).padEnd(Math.min(cols - 1, this.last.length))}\x1b[K`);
      return;
    }
    const t = this.now();
    const finished = c.done === c.total && this.lastFinished !== c.step;
    if (c.step !== this.lastStep || t - this.lastPlainAt >= this.plainEveryMs || finished) {
      if (finished) this.lastFinished = c.step;
      this.last = line;
      this.lastStep = c.step;
      this.lastPlainAt = t;
      this.out.write(line + '\n');
    }
  }

  /** A message above the bar. */
  note(msg: string): void {
    if (!this.enabled) return;
    this.out.write(this.out.isTTY ? `\r\x1b[K${msg}\n` : msg + '\n');
    if (this.out.isTTY && this.last) this.out.write(this.last);
  }

  end(): void {
    if (this.enabled && this.out.isTTY && this.last) this.out.write('\n');
  }
}

/**
 * The systemd watchdog (WatchdogSec=): WATCHDOG=1 at half the period, but only
 * while the runtime's health checks pass. A wedged runtime stops pinging and
 * systemd restarts it (Restart=on-failure).
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { Logger } from '../log/logger.js';
import type { HealthResult } from './health.js';

export type { HealthResult } from './health.js';

/** setTimeout's ceiling; a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The ping interval systemd asks for, in ms: half of WATCHDOG_USEC, as
 * sd_watchdog_enabled(3) advises. null when the watchdog is off for us:
 * WATCHDOG_USEC missing, not a positive integer, or WATCHDOG_PID set to
 * another process.
 */
export function watchdogIntervalMs(
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
): number | null {
  const usecText = env['WATCHDOG_USEC'];
  if (usecText === undefined || !/^\d+$/.test(usecText)) return null;
  const pidText = env['WATCHDOG_PID'];
  if (pidText !== undefined && pidText !== '') {
    if (!/^\d+$/.test(pidText) || Number(pidText) !== pid) return null;
  }
  const usec = Number(usecText);
  if (!Number.isSafeInteger(usec) || usec <= 0) return null;
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.floor(usec / 2000)));
}

/** What the pinger needs from SystemdNotifier. */
export interface WatchdogNotifier {
  watchdog(): Promise<unknown>;
  status(text: string): Promise<unknown>;
}

export interface WatchdogPingerOptions {
  notifier: WatchdogNotifier;
  clock: ClockSource;
  /** From watchdogIntervalMs(). */
  intervalMs: number;
  healthCheck: () => HealthResult | Promise<HealthResult>;
  logger: Logger;
  /** STATUS= text sent when health comes back. Default 'running'. */
  healthyStatus?: string;
}

type Health = 'healthy' | 'unhealthy';

function isPromiseLike<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

export class WatchdogPinger {
  private readonly options: WatchdogPingerOptions;
  private timer: TimerHandle | null = null;
  private anchorMs = 0;
  private tickIndex = 0;
  private running = false;
  private checking = false;
  private health: Health = 'healthy';
  private lastCause = '';
  private pingCount = 0;
  private withheldCount = 0;
  private skippedCount = 0;

  constructor(options: WatchdogPingerOptions) {
    if (!Number.isFinite(options.intervalMs) || options.intervalMs <= 0) {
      throw new RangeError(`watchdog interval must be positive, got ${options.intervalMs}`);
    }
    this.options = options;
  }

  /** WATCHDOG=1 messages requested. */
  get pings(): number {
    return this.pingCount;
  }

  /** Ticks where the health check failed and no ping went out. */
  get withheld(): number {
    return this.withheldCount;
  }

  /** Ticks dropped because the previous check was still running or the loop was late. */
  get skipped(): number {
    return this.skippedCount;
  }

  get state(): Health {
    return this.health;
  }

  /** Ticks at start + n·interval (n ≥ 1); late ticks never shift later ones. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.anchorMs = this.options.clock.monotonicMs();
    this.tickIndex = 0;
    this.scheduleNext();
  }

  stop(): void {
    this.running = false;
    if (this.timer) this.options.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private scheduleNext(): void {
    const { clock, intervalMs } = this.options;
    const now = clock.monotonicMs();
    let next = this.tickIndex + 1;
    let due = this.anchorMs + next * intervalMs;
    if (due <= now) {
      // Woke up a whole interval (or more) late: skip to the next future slot
      // rather than pinging in a burst.
      const behind = Math.floor((now - this.anchorMs) / intervalMs) + 1;
      this.skippedCount += behind - next;
      next = behind;
      due = this.anchorMs + next * intervalMs;
    }
    this.tickIndex = next;
    this.timer = clock.setTimeout(() => this.tick(), due - now);
  }

  private tick(): void {
    this.timer = null;
    if (!this.running) return;
    this.scheduleNext();
    if (this.checking) {
      this.skippedCount++;
      return;
    }
    let result: HealthResult | Promise<HealthResult>;
    try {
      result = this.options.healthCheck();
    } catch (err) {
      this.apply(threw(err));
      return;
    }
    if (!isPromiseLike(result)) {
      this.apply(result);
      return;
    }
    this.checking = true;
    result.then(
      (r) => {
        this.checking = false;
        if (this.running) this.apply(r);
      },
      (err: unknown) => {
        this.checking = false;
        if (this.running) this.apply(threw(err));
      },
    );
  }

  private apply(result: HealthResult): void {
    const { notifier, logger } = this.options;
    if (result.ok) {
      if (this.health === 'unhealthy') {
        logger.info('state', { from: 'unhealthy', to: 'healthy', cause: 'health checks pass' });
        this.health = 'healthy';
        this.lastCause = '';
        void notifier.status(this.options.healthyStatus ?? 'running');
      }
      this.pingCount++;
      void notifier.watchdog();
      return;
    }
    this.withheldCount++;
    const cause = result.reasons.length > 0 ? result.reasons.join('; ') : 'health check failed';
    if (this.health === 'healthy') {
      this.health = 'unhealthy';
      logger.warn('watchdog_withheld', { reasons: result.reasons });
      logger.warn('state', { from: 'healthy', to: 'unhealthy', cause });
    }
    if (cause !== this.lastCause) {
      this.lastCause = cause;
      void notifier.status(`unhealthy: ${cause}`);
    }
  }
}

function threw(err: unknown): HealthResult {
  return { ok: false, reasons: [`health check threw: ${err instanceof Error ? err.message : String(err)}`] };
}

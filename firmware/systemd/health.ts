/**
 * Liveness for the systemd watchdog: services register named checks, the
 * watchdog pinger asks `evaluate()` before each WATCHDOG=1. Pure apart from the
 * optional event-loop-lag check, whose histogram is injectable.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { QperiphError } from '../errors.js';

export interface HealthResult {
  ok: boolean;
  /** One `name: why` entry per failing check; empty when ok. */
  reasons: string[];
}

/** A check answers quickly and synchronously; `reason` says why it fails. */
export type HealthCheck = () => boolean | { ok: boolean; reason?: string };

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class HealthRegistry {
  private readonly checks = new Map<string, HealthCheck>();

  /** Adds a named check; returns a function that removes it again. */
  register(name: string, check: HealthCheck): () => void {
    if (name.length === 0)
      throw new QperiphError('SYSTEMD_ERR_BAD_HEALTH_CHECK', 'health check name is empty');
    if (this.checks.has(name)) {
      throw new QperiphError(
        'SYSTEMD_ERR_DUPLICATE_HEALTH_CHECK',
        `health check "${name}" is already registered`,
      );
    }
    this.checks.set(name, check);
    return () => {
      if (this.checks.get(name) === check) this.checks.delete(name);
    };
  }

  unregister(name: string): boolean {
    return this.checks.delete(name);
  }

  names(): string[] {
    return [...this.checks.keys()];
  }

  /** Runs every check in registration order. A check that throws counts as failing. */
  evaluate(): HealthResult {
    const reasons: string[] = [];
    for (const [name, check] of this.checks) {
      let verdict: ReturnType<HealthCheck>;
      try {
        verdict = check();
      } catch (err) {
        reasons.push(`${name}: check threw: ${errorText(err)}`);
        continue;
      }
      if (typeof verdict === 'boolean') {
        if (!verdict) reasons.push(`${name}: failing`);
      } else if (!verdict.ok) {
        reasons.push(verdict.reason ? `${name}: ${verdict.reason}` : `${name}: failing`);
      }
    }
    return { ok: reasons.length === 0, reasons };
  }
}

/** The slice of node's IntervalHistogram the lag check reads (nanoseconds). */
export interface DelayHistogram {
  readonly count?: number;
  percentile(p: number): number;
  reset(): void;
  enable(): void;
  disable(): void;
}

export interface EventLoopLagCheckOptions {
  /** Unhealthy when the chosen percentile of loop delay exceeds this. Default 2000 ms. */
  thresholdMs?: number;
  /** Default 99. */
  percentile?: number;
  /** Sampling resolution of monitorEventLoopDelay. Default 20 ms. */
  resolutionMs?: number;
  /** Injected in unit tests; defaults to `monitorEventLoopDelay`. */
  histogram?: DelayHistogram;
}

export interface EventLoopLagCheck {
  /** Evaluates the window since the previous call, then starts a new window. */
  check: HealthCheck;
  stop(): void;
}

/**
 * Event-loop delay over the window between two evaluations (normally one
 * watchdog interval). A loop that stalls for seconds still gets its WATCHDOG=1
 * late; this makes the stall visible and withholds the next ping.
 */
export function eventLoopLagCheck(options: EventLoopLagCheckOptions = {}): EventLoopLagCheck {
  const thresholdMs = options.thresholdMs ?? 2000;
  const pct = options.percentile ?? 99;
  const histogram: DelayHistogram =
    options.histogram ??
    monitorEventLoopDelay({ resolution: Math.max(1, Math.round(options.resolutionMs ?? 20)) });
  histogram.enable();
  return {
    check() {
      if (histogram.count === 0) return true;
      const lagMs = histogram.percentile(pct) / 1e6;
      histogram.reset();
      if (lagMs > thresholdMs) {
        return { ok: false, reason: `event loop p${pct} delay ${Math.round(lagMs)} ms > ${thresholdMs} ms` };
      }
      return true;
    },
    stop() {
      histogram.disable();
    },
  };
}

/**
 * A supervised helper process (ptp4l, phc2sys): started once, restarted
 * after it exits with a doubling back-off (500 ms .. 30 s, reset after it has run for `stableMs`),
 * stopped with SIGTERM then SIGKILL. Spawning goes through the ProcessSeam so tests run a fake
 * process in virtual time.
 */
import { spawn } from 'node:child_process';
import { createSystemClock, type ClockSource, type TimerHandle } from '../clock/clock.js';
import type { Logger } from '../log/logger.js';

export interface SupervisedChild {
  readonly pid: number | undefined;
  onExit(handler: (code: number | null, signal: string | null) => void): void;
  /** Last lines the process wrote to stderr/stdout (for logs). */
  onOutput(handler: (text: string) => void): void;
  kill(signal: 'SIGTERM' | 'SIGKILL'): void;
}

export interface ProcessSeam {
  spawn(cmd: string, args: string[]): SupervisedChild;
}

export const nodeProcessSeam: ProcessSeam = {
  spawn(cmd, args) {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const exitHandlers: Array<(code: number | null, signal: string | null) => void> = [];
    let exited = false;
    const exit = (code: number | null, signal: string | null): void => {
      if (exited) return;
      exited = true;
      for (const h of exitHandlers) h(code, signal);
    };
    c.on('exit', (code, signal) => exit(code, signal));
    // A missing binary never emits 'exit': report it as one so it is retried like a crash.
    c.on('error', () => exit(127, null));
    return {
      pid: c.pid,
      onExit: (h) => void exitHandlers.push(h),
      onOutput: (h) => {
        c.stdout?.on('data', (d: Buffer) => h(d.toString()));
        c.stderr?.on('data', (d: Buffer) => h(d.toString()));
      },
      kill: (s) => {
        if (!exited) c.kill(s);
      },
    };
  },
};

export interface SupervisorOptions {
  name: string;
  command: string;
  args: string[];
  logger: Logger;
  seam?: ProcessSeam;
  clock?: ClockSource;
  /** First restart delay, ms (doubles per consecutive failure up to 30 s). Default 500. */
  restartMs?: number;
  /** A run this long resets the back-off. Default 60 s. */
  stableMs?: number;
  /** Told after each unexpected exit, before the restart is scheduled (state updates). */
  onExit?: (code: number | null, signal: string | null) => void;
}

export class ProcessSupervisor {
  private child: SupervisedChild | null = null;
  private stopped = true;
  private failures = 0;
  private startedAt = 0;
  private timer: TimerHandle | null = null;
  private lastOutput = '';
  /** Restarts so far. */
  restarts = 0;
  private readonly clock: ClockSource;
  private readonly seam: ProcessSeam;

  constructor(private readonly o: SupervisorOptions) {
    this.clock = o.clock ?? createSystemClock();
    this.seam = o.seam ?? nodeProcessSeam;
  }

  /** Running now (spawned and not exited). */
  get running(): boolean {
    return this.child !== null;
  }

  /** How long the current process has run, ms (0 when not running). */
  uptimeMs(): number {
    return this.child ? this.clock.monotonicMs() - this.startedAt : 0;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.launch();
  }

  private launch(): void {
    this.timer = null;
    if (this.stopped) return;
    const c = this.seam.spawn(this.o.command, this.o.args);
    this.child = c;
    this.startedAt = this.clock.monotonicMs();
    this.lastOutput = '';
    c.onOutput((t) => (this.lastOutput = (this.lastOutput + t).slice(-1000)));
    c.onExit((code, signal) => {
      if (this.child !== c) return;
      this.child = null;
      if (this.stopped) return;
      const ranMs = this.clock.monotonicMs() - this.startedAt;
      this.failures = ranMs >= (this.o.stableMs ?? 60_000) ? 1 : this.failures + 1;
      const delay = Math.min(30_000, (this.o.restartMs ?? 500) * 2 ** Math.min(6, this.failures - 1));
      this.restarts++;
      this.o.logger.warn(`${this.o.name}_exited`, {
        code,
        signal,
        ranMs: Math.round(ranMs),
        restartInMs: delay,
        output: this.lastOutput.trim().slice(-300),
      });
      try {
        this.o.onExit?.(code, signal);
      } catch (e) {
        this.o.logger.warn(`${this.o.name}_exit_handler_failed`, { error: e });
      }
      this.timer = this.clock.setTimeout(() => this.launch(), delay);
    });
    this.o.logger.info(`${this.o.name}_started`, { pid: c.pid, args: this.o.args });
  }

  /** Stop it (SIGTERM, SIGKILL after `killMs`) and never restart. */
  async stop(killMs = 2000): Promise<void> {
    this.stopped = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    const c = this.child;
    if (!c) return;
    await new Promise<void>((resolve) => {
      const k = this.clock.setTimeout(() => c.kill('SIGKILL'), killMs);
      c.onExit(() => {
        this.clock.clearTimeout(k);
        this.child = null;
        resolve();
      });
      c.kill('SIGTERM');
    });
  }
}

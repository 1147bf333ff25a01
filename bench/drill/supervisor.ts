/**
 * Supervises one peripheral like systemd would (Restart=on-failure): starts
 * the launcher in its own process group, restarts it when it exits 75
 * ("restart me into the new slot") or crashes, gives up after too many
 * restarts in a window, and records every transition with its time. A power
 * cut is SIGKILL to the whole group (launcher and runtime at once).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

export const EXIT_RESTART = 75;

export type ProcessState =
  'starting' | 'exited' | 'restarting' | 'power-cut' | 'gave-up' | 'stopping' | 'stopped';

export interface TimelineEvent {
  atMs: number;
  state: string;
  detail?: string;
}

export interface SupervisorOptions {
  id: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Raw stdout/stderr of every run is appended here. */
  logFile?: string;
  /** Restarts allowed within `restartWindowMs` before giving up (systemd StartLimitBurst). */
  restartLimit?: number;
  restartWindowMs?: number;
  /** Delay before restarting after a crash (RestartSec); exit 75 restarts at once. */
  restartDelayMs?: number;
  now?: () => number;
}

/** Pure restart decision (systemd Restart=on-failure with a start limit). */
export function restartDecision(
  exit: { code: number | null; signal: NodeJS.Signals | null; stopping: boolean },
  recentRestarts: number,
  limit: number,
): 'restart-now' | 'restart-later' | 'give-up' | 'stay-down' {
  if (exit.stopping) return 'stay-down';
  if (exit.code === 0) return 'stay-down';
  if (recentRestarts >= limit) return 'give-up';
  return exit.code === EXIT_RESTART ? 'restart-now' : 'restart-later';
}

export class Supervisor extends EventEmitter {
  readonly events: TimelineEvent[] = [];
  private child: ChildProcess | null = null;
  private stopping = false;
  private restarts: number[] = [];
  private log: WriteStream | null = null;
  private readonly now: () => number;
  private pendingCut = false;
  private timer: NodeJS.Timeout | null = null;
  state: ProcessState = 'stopped';
  runs = 0;

  constructor(private readonly o: SupervisorOptions) {
    super();
    this.now = o.now ?? Date.now;
    if (o.logFile) this.log = createWriteStream(o.logFile, { flags: 'a' });
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  private record(state: ProcessState, detail?: string): void {
    this.state = state;
    const e: TimelineEvent = { atMs: this.now(), state, ...(detail !== undefined ? { detail } : {}) };
    this.events.push(e);
    this.emit('transition', e);
  }

  start(): void {
    this.stopping = false;
    this.spawnOnce();
  }

  private spawnOnce(): void {
    this.runs++;
    const child = spawn(this.o.command, this.o.args, {
      env: this.o.env,
      ...(this.o.cwd ? { cwd: this.o.cwd } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    this.record('starting', `run ${this.runs}, pid ${child.pid ?? '?'}`);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      this.log?.write(line + '\n');
      if (!line.startsWith('{')) return;
      try {
        this.emit('log', JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a JSON log line
      }
    });
    child.stderr!.on('data', (d: Buffer) => this.log?.write(d));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      const cut = this.pendingCut;
      this.pendingCut = false;
      this.record(cut ? 'power-cut' : 'exited', signal ? `signal ${signal}` : `code ${String(code)}`);
      const t = this.now();
      this.restarts = this.restarts.filter((x) => t - x < (this.o.restartWindowMs ?? 60_000));
      const d = restartDecision(
        { code: cut ? null : code, signal, stopping: this.stopping },
        this.restarts.length,
        this.o.restartLimit ?? 10,
      );
      if (d === 'stay-down') {
        this.record('stopped');
        this.emit('down');
        return;
      }
      if (d === 'give-up') {
        this.record('gave-up', `${this.restarts.length} restarts within the window`);
        this.emit('down');
        return;
      }
      this.restarts.push(t);
      this.record('restarting', code === EXIT_RESTART ? 'exit 75: new slot' : 'after a crash');
      const delay = d === 'restart-now' ? 0 : (this.o.restartDelayMs ?? 200);
      this.timer = setTimeout(() => {
        this.timer = null;
        if (!this.stopping) this.spawnOnce();
      }, delay);
    });
  }

  /** SIGKILL the launcher and its runtime at once; the supervisor restarts it (power back on). */
  powerCut(): boolean {
    const pid = this.child?.pid;
    if (!pid) return false;
    this.pendingCut = true;
    try {
      process.kill(-pid, 'SIGKILL');
      return true;
    } catch {
      return false;
    }
  }

  /** SIGTERM the group, SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child?.pid) {
      this.log?.end();
      return;
    }
    this.record('stopping');
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const t = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    }, graceMs);
    await gone;
    clearTimeout(t);
    this.log?.end();
  }
}

/** Sum of the resident set sizes (bytes) of every process in the given process groups (Linux /proc). */
export async function groupRss(
  pgids: ReadonlySet<number>,
  alsoPids: ReadonlySet<number> = new Set(),
): Promise<number> {
  let total = 0;
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return 0;
  }
  await Promise.all(
    names
      .filter((n) => /^\d+$/.test(n))
      .map(async (n) => {
        try {
          const stat = await readFile(`/proc/${n}/stat`, 'utf8');
          // Fields after the parenthesised command: state ppid pgrp ...
          const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          const pgrp = Number(rest[2]);
          if (!pgids.has(pgrp) && !alsoPids.has(Number(n))) return;
          const statm = await readFile(`/proc/${n}/statm`, 'utf8');
          total += Number(statm.split(' ')[1]) * 4096;
        } catch {
          // the process went away
        }
      }),
  );
  return total;
}

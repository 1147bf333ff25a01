/**
 * The manager's persistent event log: JSON lines in `<stateDir>/events.log`, newest last,
 * trimmed to the newest `max` entries when it grows past twice that. Read back paged,
 * newest first, optionally filtered by minimum level.
 */
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClockSource } from '../clock/clock.js';
import { writeFileAtomic } from '../config/atomic-file.js';

export type EventLevel = 'info' | 'warn' | 'error';
export const EVENT_LEVELS: readonly EventLevel[] = ['info', 'warn', 'error'];
const RANK: Record<EventLevel, number> = { info: 0, warn: 1, error: 2 };

export interface EventEntry {
  seq: number;
  time: string;
  level: EventLevel;
  event: string;
  message: string;
}

export interface EventPage {
  total: number;
  page: number;
  pageSize: number;
  entries: EventEntry[];
}

export class EventLog {
  private entries: EventEntry[];
  private seq: number;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly file: string,
    entries: EventEntry[],
    private readonly clock: ClockSource,
    private readonly max: number,
  ) {
    this.entries = entries;
    this.seq = entries.at(-1)?.seq ?? 0;
  }

  static async open(stateDir: string, clock: ClockSource, max = 1000): Promise<EventLog> {
    const file = join(stateDir, 'events.log');
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const entries: EventEntry[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const e = JSON.parse(line) as EventEntry;
        if (typeof e.seq === 'number' && EVENT_LEVELS.includes(e.level) && typeof e.message === 'string') {
          entries.push(e);
        }
      } catch {
        // a torn last line after a power cut: skip it
      }
    }
    return new EventLog(file, entries.slice(-max), clock, max);
  }

  add(level: EventLevel, event: string, message: string): Promise<void> {
    const entry: EventEntry = {
      seq: ++this.seq,
      time: new Date(this.clock.wallMs()).toISOString(),
      level,
      event,
      message: message.slice(0, 500),
    };
    this.entries.push(entry);
    const run = this.queue.then(async () => {
      if (this.entries.length > this.max * 2) {
        this.entries = this.entries.slice(-this.max);
        await writeFileAtomic(this.file, this.entries.map((e) => JSON.stringify(e) + '\n').join(''), {
          mode: 0o600,
        });
      } else {
        await appendFile(this.file, JSON.stringify(entry) + '\n', { mode: 0o600 });
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Newest first. `page` counts from 0. */
  page(page: number, pageSize: number, minLevel: EventLevel = 'info'): EventPage {
    const matching = this.entries.filter((e) => RANK[e.level] >= RANK[minLevel]).reverse();
    return {
      total: matching.length,
      page,
      pageSize,
      entries: matching.slice(page * pageSize, page * pageSize + pageSize),
    };
  }

  async clear(): Promise<void> {
    this.entries = [];
    await this.queue;
    await writeFileAtomic(this.file, '', { mode: 0o600 });
  }
}

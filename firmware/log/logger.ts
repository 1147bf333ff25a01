/**
 * Structured JSON-lines logger. One line per record on a writable (stdout by
 * default, journald keeps it). Modules receive a Logger; they never print.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** A logger that adds `bindings` (e.g. `{ module: 'qdp' }`) to every record. */
  child(bindings: LogFields): Logger;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface JsonLoggerOptions {
  level?: LogLevel;
  write?: (line: string) => void;
  now?: () => Date;
  bindings?: LogFields;
}

function serialiseError(err: unknown): unknown {
  if (err instanceof Error) {
    const out: Record<string, unknown> = { name: err.name, message: err.message };
    const code = (err as { code?: unknown }).code;
    if (code !== undefined) out['code'] = code;
    return out;
  }
  return err;
}

export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const now = options.now ?? (() => new Date());
  const make = (bindings: LogFields): Logger => {
    const emit = (level: LogLevel, event: string, fields?: LogFields): void => {
      if (ORDER[level] < min) return;
      const record: Record<string, unknown> = { ts: now().toISOString(), level, ...bindings, event };
      if (fields) {
        for (const [k, v] of Object.entries(fields)) record[k] = k === 'err' ? serialiseError(v) : v;
      }
      let line: string;
      try {
        line = JSON.stringify(record, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
      } catch {
        line = JSON.stringify({ ts: record['ts'], level, event, unserialisable: true });
      }
      write(line + '\n');
    };
    return {
      debug: (e, f) => emit('debug', e, f),
      info: (e, f) => emit('info', e, f),
      warn: (e, f) => emit('warn', e, f),
      error: (e, f) => emit('error', e, f),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return make(options.bindings ?? {});
}

/** A logger that keeps records in memory: for unit tests. */
export interface MemoryLogger extends Logger {
  readonly records: Array<{ level: LogLevel; event: string } & LogFields>;
}

export function createMemoryLogger(): MemoryLogger {
  const records: Array<{ level: LogLevel; event: string } & LogFields> = [];
  const make = (bindings: LogFields): Logger => {
    const emit = (level: LogLevel, event: string, fields?: LogFields): void => {
      records.push({ ...bindings, ...(fields ?? {}), level, event });
    };
    return {
      debug: (e, f) => emit('debug', e, f),
      info: (e, f) => emit('info', e, f),
      warn: (e, f) => emit('warn', e, f),
      error: (e, f) => emit('error', e, f),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return Object.assign(make({}), { records });
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

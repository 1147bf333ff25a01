/**
 * Access control for the manager: one admin account whose password is set at first use (there
 * is no default), stored as a scrypt hash in `<stateDir>/manager-auth.json` (mode 0600);
 * in-memory sessions with a per-session CSRF token; a login rate limiter per client address.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClockSource } from '../clock/clock.js';
import { readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import { QperiphError } from '../errors.js';

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 256;

const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 } as const;

function scrypt(password: string, salt: Buffer, o: typeof SCRYPT): Promise<Buffer> {
  const opts: ScryptOptions = { N: o.N, r: o.r, p: o.p, maxmem: 64 * 1024 * 1024 };
  return new Promise((resolve, reject) =>
    scryptCb(password.normalize('NFC'), salt, o.keylen, opts, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

interface HashRecord {
  algorithm: 'scrypt';
  N: number;
  r: number;
  p: number;
  keylen: number;
  salt: string;
  hash: string;
  setAt: string;
}

export class AuthError extends QperiphError {
  declare readonly code:
    | 'AUTH_ERR_ALREADY_SET'
    | 'AUTH_ERR_NOT_SET'
    | 'AUTH_ERR_WEAK_PASSWORD'
    | 'AUTH_ERR_BAD_PASSWORD'
    | 'AUTH_ERR_IO';
}

export function checkPasswordPolicy(password: unknown): string {
  if (typeof password !== 'string')
    throw new AuthError('AUTH_ERR_WEAK_PASSWORD', 'password must be a string');
  const n = [...password].length;
  if (n < MIN_PASSWORD_LENGTH || n > MAX_PASSWORD_LENGTH) {
    throw new AuthError(
      'AUTH_ERR_WEAK_PASSWORD',
      `password must be ${MIN_PASSWORD_LENGTH}..${MAX_PASSWORD_LENGTH} characters`,
    );
  }
  return password;
}

/** The admin credential on disk. */
export class CredentialStore {
  private record: HashRecord | null;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly file: string,
    record: HashRecord | null,
    private readonly clock: ClockSource,
  ) {
    this.record = record;
  }

  static async open(stateDir: string, clock: ClockSource): Promise<CredentialStore> {
    const file = join(stateDir, 'manager-auth.json');
    const bytes = await readFileIfExists(file);
    let record: HashRecord | null = null;
    if (bytes) {
      const parsed = JSON.parse(bytes.toString('utf8')) as Partial<HashRecord>;
      if (
        parsed.algorithm !== 'scrypt' ||
        typeof parsed.salt !== 'string' ||
        typeof parsed.hash !== 'string'
      ) {
        throw new AuthError('AUTH_ERR_IO', `${file} is not a credential file`);
      }
      record = parsed as HashRecord;
    }
    return new CredentialStore(file, record, clock);
  }

  get isSet(): boolean {
    return this.record !== null;
  }

  /** First use only: set the password. AUTH_ERR_ALREADY_SET once one exists. */
  setInitial(password: string): Promise<void> {
    return this.serial(async () => {
      if (this.record) throw new AuthError('AUTH_ERR_ALREADY_SET', 'the admin password is already set');
      await this.write(checkPasswordPolicy(password));
    });
  }

  /** Change the password (the current one must be given). */
  change(current: string, next: string): Promise<void> {
    return this.serial(async () => {
      if (!(await this.verify(current)))
        throw new AuthError('AUTH_ERR_BAD_PASSWORD', 'current password is wrong');
      await this.write(checkPasswordPolicy(next));
    });
  }

  /** Forget the password (factory reset): the next visitor sets a new one. */
  clear(): Promise<void> {
    return this.serial(async () => {
      await unlink(this.file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT')
          throw new AuthError('AUTH_ERR_IO', `cannot remove ${this.file}: ${err.code}`);
      });
      this.record = null;
    });
  }

  async verify(password: unknown): Promise<boolean> {
    const rec = this.record;
    if (!rec || typeof password !== 'string' || password.length > MAX_PASSWORD_LENGTH * 4) return false;
    const want = Buffer.from(rec.hash, 'base64');
    const got = await scrypt(password, Buffer.from(rec.salt, 'base64'), {
      N: rec.N as 16384,
      r: rec.r as 8,
      p: rec.p as 1,
      keylen: want.length as 32,
    });
    return got.length === want.length && timingSafeEqual(got, want);
  }

  private async write(password: string): Promise<void> {
    const salt = randomBytes(16);
    const hash = await scrypt(password, salt, SCRYPT);
    const record: HashRecord = {
      algorithm: 'scrypt',
      ...SCRYPT,
      salt: salt.toString('base64'),
      hash: hash.toString('base64'),
      setAt: new Date(this.clock.wallMs()).toISOString(),
    };
    await writeFileAtomic(this.file, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 });
    this.record = record;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

export interface Session {
  id: string;
  csrf: string;
  createdMs: number;
  lastSeenMs: number;
}

/** Sessions by opaque random id; expire after `idleMs` without a request. */
export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  constructor(
    private readonly clock: ClockSource,
    readonly idleMs = 3_600_000,
    private readonly max = 64,
  ) {}

  create(): Session {
    const now = this.clock.monotonicMs();
    this.sweep(now);
    if (this.sessions.size >= this.max) {
      const oldest = [...this.sessions.values()].sort((a, b) => a.lastSeenMs - b.lastSeenMs)[0]!;
      this.sessions.delete(oldest.id);
    }
    const s: Session = {
      id: randomBytes(32).toString('base64url'),
      csrf: randomBytes(24).toString('base64url'),
      createdMs: now,
      lastSeenMs: now,
    };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session for a cookie value (touching it), or null. */
  get(id: string | undefined): Session | null {
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    const now = this.clock.monotonicMs();
    if (now - s.lastSeenMs > this.idleMs) {
      this.sessions.delete(id);
      return null;
    }
    s.lastSeenMs = now;
    return s;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  clear(): void {
    this.sessions.clear();
  }

  get size(): number {
    return this.sessions.size;
  }

  private sweep(now: number): void {
    for (const [id, s] of this.sessions) if (now - s.lastSeenMs > this.idleMs) this.sessions.delete(id);
  }
}

/** Constant-time string comparison. */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Login rate limiting: at most `maxFailures` failed attempts per client address in a window of
 * `windowMs`; after that every attempt is refused until the window has passed. Pure apart from
 * the clock.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();
  constructor(
    private readonly clock: ClockSource,
    readonly maxFailures = 5,
    readonly windowMs = 60_000,
  ) {}

  /** 0 when `client` may try now, else milliseconds to wait. */
  retryAfterMs(client: string): number {
    const now = this.clock.monotonicMs();
    const list = (this.failures.get(client) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length === 0) this.failures.delete(client);
    else this.failures.set(client, list);
    if (list.length < this.maxFailures) return 0;
    return Math.max(1, Math.ceil(list[0]! + this.windowMs - now));
  }

  failed(client: string): void {
    const list = this.failures.get(client) ?? [];
    list.push(this.clock.monotonicMs());
    if (this.failures.size > 4096) this.failures.clear();
    this.failures.set(client, list.slice(-this.maxFailures));
  }

  succeeded(client: string): void {
    this.failures.delete(client);
  }
}

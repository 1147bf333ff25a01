/**
 * The systemd notify seam (sd_notify(3)): READY/STATUS/WATCHDOG/STOPPING/…
 * datagrams to the socket named by NOTIFY_SOCKET.
 *
 * Node's dgram module has no AF_UNIX datagram support, so the real transport
 * uses the node-unix-socket addon. Where the addon cannot load, or where the
 * address is abstract (see below), we spawn `systemd-notify` instead. Without
 * NOTIFY_SOCKET (not started by systemd) there is no transport and the
 * notifier does nothing.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join } from 'node:path';

import { QperiphError } from '../errors.js';
import { silentLogger, type Logger } from '../log/logger.js';

export interface NotifyTransport {
  /** Sends one notify datagram (newline-separated assignments). Rejects on failure. */
  send(message: string): Promise<void>;
  close(): void;
}

// ---------------------------------------------------------------------------
// Environment

/** Variables systemd hands to the main process only; children must not see them. */
function isServiceManagerVar(name: string): boolean {
  return name === 'NOTIFY_SOCKET' || name.startsWith('WATCHDOG_');
}

/**
 * The environment for any child process we spawn (arecord, ptp4l helpers, …):
 * a copy without NOTIFY_SOCKET and WATCHDOG_*, so no child can send READY or
 * pet the watchdog on our behalf. process.env itself is left as it is.
 */
export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && !isServiceManagerVar(k)) out[k] = v;
  }
  return out;
}

export interface NotifySocketAddress {
  kind: 'path' | 'abstract';
  /** What to hand to the socket layer: the path, or NUL + name for abstract sockets. */
  address: string;
  /** NOTIFY_SOCKET exactly as given (`/run/systemd/notify`, `@name`). */
  display: string;
}

/**
 * Parses a NOTIFY_SOCKET value. sd_notify(3) accepts an absolute path or
 * `@name` for a Linux abstract socket (the `@` stands for a leading NUL byte).
 * Returns null for anything else.
 */
export function parseNotifySocket(value: string | undefined): NotifySocketAddress | null {
  if (value === undefined || value.length === 0) return null;
  if (value.startsWith('/')) return { kind: 'path', address: value, display: value };
  if (value.startsWith('@') && value.length > 1) {
    return { kind: 'abstract', address: '\0' + value.slice(1), display: value };
  }
  return null;
}

// ---------------------------------------------------------------------------
// Transport over node-unix-socket

/** The part of node-unix-socket's DgramSocket we use. */
export interface DgramSocketLike {
  sendTo(
    buf: Buffer,
    offset: number,
    length: number,
    destPath: string,
    onWrite?: (err?: Error) => void,
  ): void;
  close(): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

export interface DgramSocketModule {
  DgramSocket: new () => DgramSocketLike;
}

async function loadNodeUnixSocket(): Promise<DgramSocketModule> {
  const mod: unknown = await import('node-unix-socket');
  const ctor = (mod as Partial<DgramSocketModule>).DgramSocket;
  if (typeof ctor !== 'function') throw new Error('node-unix-socket has no DgramSocket export');
  return { DgramSocket: ctor };
}

/**
 * One socket per message, opened and closed around the send, the way
 * libsystemd does it. A long-lived DgramSocket would keep the event loop
 * alive (the addon always polls its socket for reading).
 */
export function createDgramNotifyTransport(
  addon: DgramSocketModule,
  address: NotifySocketAddress,
): NotifyTransport {
  let closed = false;
  return {
    send(message) {
      if (closed)
        return Promise.reject(new QperiphError('SYSTEMD_ERR_NOTIFY_CLOSED', 'notify transport is closed'));
      return new Promise<void>((resolve, reject) => {
        const buf = Buffer.from(message, 'utf8');
        let socket: DgramSocketLike;
        try {
          socket = new addon.DgramSocket();
        } catch (err) {
          reject(sendError(address, err));
          return;
        }
        let settled = false;
        const finish = (err?: unknown): void => {
          if (settled) return;
          settled = true;
          try {
            socket.close();
          } catch {}
          if (err) reject(sendError(address, err));
          else resolve();
        };
        socket.on('error', (err) => finish(err));
        try {
          socket.sendTo(buf, 0, buf.length, address.address, (err) => finish(err));
        } catch (err) {
          finish(err);
        }
      });
    },
    close() {
      closed = true;
    },
  };
}

function sendError(address: NotifySocketAddress, err: unknown): QperiphError {
  const why = err instanceof Error ? err.message : String(err);
  return new QperiphError('SYSTEMD_ERR_NOTIFY_SEND', `sd_notify to ${address.display} failed: ${why}`, {
    cause: err,
  });
}

// ---------------------------------------------------------------------------
// Fallback: spawn systemd-notify

export interface SpawnNotifyOptions {
  /** Executable path (resolved); default `/usr/bin/systemd-notify`. */
  binary?: string;
  /** Sent as --pid=; the main process's pid. Default process.pid. */
  pid?: number;
  /** Base environment for the child (NOTIFY_SOCKET is set from `address`). */
  env?: NodeJS.ProcessEnv;
  /** The child is killed after this long. Default 5000 ms. */
  timeoutMs?: number;
}

/**
 * Sends each message by running `systemd-notify --pid=<pid> KEY=VALUE…`.
 *
 * Caveat: systemd attributes a notification to the sender's pid. Running as
 * root, systemd-notify sends with the credentials of --pid (our main pid), so
 * NotifyAccess=main works. As an unprivileged user the kernel refuses the
 * forged pid, the message arrives from the short-lived systemd-notify child,
 * and the unit needs NotifyAccess=all for it to count; systemd ≥ 246 closes the
 * old "child exited before systemd read the message" race with a BARRIER=1
 * handshake, which is why we wait for the child to exit. The child also adds a
 * MAINPID= line to each message.
 */
export function createSpawnNotifyTransport(
  address: NotifySocketAddress,
  options: SpawnNotifyOptions = {},
): NotifyTransport {
  const binary = options.binary ?? '/usr/bin/systemd-notify';
  const pid = options.pid ?? process.pid;
  const timeoutMs = options.timeoutMs ?? 5000;
  const env = { ...childEnv(options.env ?? process.env), NOTIFY_SOCKET: address.display };
  let closed = false;
  // Messages go out in order: each child starts after the previous one exits.
  let queue: Promise<void> = Promise.resolve();

  const runOnce = (message: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const lines = message.split('\n').filter((l) => l.length > 0);
      const child = spawn(binary, [`--pid=${pid}`, ...lines], {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
      });
      let stderr = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        if (stderr.length < 2048) stderr += chunk;
      });
      child.once('error', (err) => reject(sendError(address, err)));
      child.once('close', (code, signal) => {
        if (code === 0) resolve();
        else {
          const how = signal ? `killed by ${signal}` : `exit ${code}`;
          reject(sendError(address, new Error(`${binary} ${how}: ${stderr.trim()}`)));
        }
      });
    });

  return {
    send(message) {
      if (closed)
        return Promise.reject(new QperiphError('SYSTEMD_ERR_NOTIFY_CLOSED', 'notify transport is closed'));
      const result = queue.then(() => runOnce(message));
      queue = result.catch(() => undefined);
      return result;
    },
    close() {
      closed = true;
    },
  };
}

/** Finds an executable by name on PATH (or checks a path containing '/'). */
export function findExecutable(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = name.includes('/')
    ? [name]
    : (env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin')
        .split(delimiter)
        .filter((d) => d.length > 0)
        .map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, fsConstants.X_OK);
      return c;
    } catch {}
  }
  return null;
}

// ---------------------------------------------------------------------------
// Choosing a transport

export interface CreateNotifyTransportOptions {
  /** Our main pid, for the systemd-notify fallback. Default process.pid. */
  pid?: number;
  /** Loads node-unix-socket. Tests replace it to exercise the fallback. */
  loadAddon?: () => Promise<DgramSocketModule>;
  /** Name or path of systemd-notify. Default 'systemd-notify' looked up on PATH. */
  notifyBinary?: string;
}

/**
 * Returns the transport for NOTIFY_SOCKET, or null when it is unset (not run
 * by systemd) or unusable (logged). Never throws.
 *
 * Abstract addresses (`@name`) go through systemd-notify even when the addon
 * loads: node-unix-socket 0.2.7 passes the full sizeof(sockaddr_un) as the
 * address length, so its abstract name carries trailing NULs and never
 * matches the socket systemd bound (checked in test/integration).
 */
export async function createNotifyTransport(
  env: NodeJS.ProcessEnv = process.env,
  logger: Logger = silentLogger,
  options: CreateNotifyTransportOptions = {},
): Promise<NotifyTransport | null> {
  const raw = env['NOTIFY_SOCKET'];
  if (raw === undefined || raw.length === 0) return null;
  const address = parseNotifySocket(raw);
  if (!address) {
    logger.warn('sd_notify_unavailable', { socket: raw, reason: 'NOTIFY_SOCKET is neither /path nor @name' });
    return null;
  }

  let fallbackReason: string;
  if (address.kind === 'abstract') {
    fallbackReason = 'node-unix-socket cannot address abstract sockets exactly';
  } else {
    try {
      const addon = await (options.loadAddon ?? loadNodeUnixSocket)();
      logger.info('sd_notify_transport_selected', { kind: 'dgram', socket: address.display });
      return createDgramNotifyTransport(addon, address);
    } catch (err) {
      fallbackReason = `node-unix-socket did not load: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  const binary = findExecutable(options.notifyBinary ?? 'systemd-notify', env);
  if (!binary) {
    logger.warn('sd_notify_unavailable', {
      socket: address.display,
      reason: `${fallbackReason}; no systemd-notify`,
    });
    return null;
  }
  logger.info('sd_notify_transport_selected', {
    kind: 'spawn',
    socket: address.display,
    binary,
    reason: fallbackReason,
  });
  return createSpawnNotifyTransport(address, { binary, pid: options.pid ?? process.pid, env });
}

// ---------------------------------------------------------------------------
// Messages (sd_notify(3))

export type NotifyAssignment = readonly [key: string, value: string | number | bigint];

/** Longest STATUS= text we send; longer text is cut with an ellipsis. */
export const MAX_STATUS_CHARS = 512;

/** Status text as one line: control characters become spaces, long text is cut. */
export function statusText(text: string): string {
  // eslint-disable-next-line no-control-regex
  const line = text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return line.length > MAX_STATUS_CHARS ? line.slice(0, MAX_STATUS_CHARS - 1) + '…' : line;
}

/** `KEY=value` lines joined with newlines. Keys are upper-case; values one line. */
export function formatNotifyMessage(assignments: readonly NotifyAssignment[]): string {
  if (assignments.length === 0) throw new QperiphError('SYSTEMD_ERR_BAD_NOTIFY', 'empty notify message');
  return assignments
    .map(([key, value]) => {
      if (!/^[A-Z][A-Z0-9_]*$/.test(key)) {
        throw new QperiphError('SYSTEMD_ERR_BAD_NOTIFY', `bad notify variable name "${key}"`);
      }
      const text = String(value);
      if (/[\n\0]/.test(text)) {
        throw new QperiphError('SYSTEMD_ERR_BAD_NOTIFY', `notify value for ${key} contains a newline or NUL`);
      }
      return `${key}=${text}`;
    })
    .join('\n');
}

function monotonicUsecNow(): bigint {
  // process.hrtime uses CLOCK_MONOTONIC on Linux, the clock systemd expects.
  return process.hrtime.bigint() / 1000n;
}

export interface SystemdNotifierOptions {
  /** CLOCK_MONOTONIC in µs, for RELOADING=1. Injected in tests. */
  monotonicUsec?: () => bigint;
}

/**
 * The runtime's handle on systemd. Methods resolve to true when the message
 * went out, false when there is no transport or sending failed. Failures are
 * logged (`sd_notify_failed`), never thrown: the service keeps running, and a
 * missing WATCHDOG=1 is what systemd acts on.
 *
 * The transport may be given as the promise createNotifyTransport returns;
 * messages sent before it settles wait for it and keep their order.
 */
export class SystemdNotifier {
  private transport: NotifyTransport | null = null;
  private pending: Promise<void> | null = null;
  private closed = false;
  private readonly logger: Logger;
  private readonly monotonicUsec: () => bigint;
  private sentCount = 0;
  private failedCount = 0;

  constructor(
    transport: NotifyTransport | null | Promise<NotifyTransport | null>,
    logger: Logger = silentLogger,
    options: SystemdNotifierOptions = {},
  ) {
    this.logger = logger;
    this.monotonicUsec = options.monotonicUsec ?? monotonicUsecNow;
    if (transport && 'then' in transport) {
      this.pending = transport.then(
        (t) => {
          this.pending = null;
          if (this.closed) t?.close();
          else this.transport = t;
        },
        (err: unknown) => {
          this.pending = null;
          this.logger.warn('sd_notify_unavailable', { err });
        },
      );
    } else {
      this.transport = transport;
    }
  }

  /** Whether messages go anywhere (NOTIFY_SOCKET was usable). False while a transport promise is pending. */
  get enabled(): boolean {
    return this.transport !== null;
  }

  /** Resolves once a pending transport has settled; `enabled` is final then. */
  async settled(): Promise<boolean> {
    if (this.pending) await this.pending;
    return this.enabled;
  }

  /** Messages delivered to the transport successfully. */
  get sent(): number {
    return this.sentCount;
  }

  get failed(): number {
    return this.failedCount;
  }

  /** READY=1 (+ STATUS=): start-up finished; Type=notify units become active. */
  ready(status?: string): Promise<boolean> {
    return this.notify(withStatus([['READY', 1]], status));
  }

  status(text: string): Promise<boolean> {
    return this.notify([['STATUS', statusText(text)]]);
  }

  /** WATCHDOG=1: keep-alive for WatchdogSec=. */
  watchdog(): Promise<boolean> {
    return this.notify([['WATCHDOG', 1]]);
  }

  /** STOPPING=1 (+ STATUS=): orderly shutdown has begun. */
  stopping(status?: string): Promise<boolean> {
    return this.notify(withStatus([['STOPPING', 1]], status));
  }

  /**
   * RELOADING=1 with MONOTONIC_USEC= (required by Type=notify-reload, harmless
   * otherwise). Send ready() again when the reload is done.
   */
  reloading(status?: string): Promise<boolean> {
    return this.notify(
      withStatus(
        [
          ['RELOADING', 1],
          ['MONOTONIC_USEC', this.monotonicUsec()],
        ],
        status,
      ),
    );
  }

  /** EXTEND_TIMEOUT_USEC=: asks for more time to start or stop (from now). */
  extendTimeout(usec: number): Promise<boolean> {
    if (!Number.isFinite(usec) || usec <= 0) {
      throw new QperiphError(
        'SYSTEMD_ERR_BAD_NOTIFY',
        `extendTimeout needs a positive number of µs, got ${usec}`,
      );
    }
    return this.notify([['EXTEND_TIMEOUT_USEC', Math.ceil(usec)]]);
  }

  /** Sends arbitrary assignments (validated by formatNotifyMessage). */
  async notify(assignments: readonly NotifyAssignment[]): Promise<boolean> {
    const message = formatNotifyMessage(assignments);
    if (this.pending) await this.pending;
    const transport = this.transport;
    if (!transport) return false;
    try {
      await transport.send(message);
      this.sentCount++;
      return true;
    } catch (err) {
      this.failedCount++;
      this.logger.warn('sd_notify_failed', {
        message: message.replace(/\n/g, ' '),
        failures: this.failedCount,
        err,
      });
      return false;
    }
  }

  /** Closes the transport; later calls are no-ops. */
  close(): void {
    this.closed = true;
    const t = this.transport;
    this.transport = null;
    t?.close();
  }
}

function withStatus(base: NotifyAssignment[], status: string | undefined): NotifyAssignment[] {
  return status === undefined ? base : [...base, ['STATUS', statusText(status)]];
}

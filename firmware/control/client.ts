/**
 * A small control-link client (plaintext or mutual TLS): used by `qperiph control call`, the
 * tests, the benchmark and the emulated Core. Requests get numeric ids; `call` resolves with the
 * result or rejects with a `ControlCallError` carrying the JSON-RPC error.
 */
import net from 'node:net';
import tls from 'node:tls';
import { encodeFrame, FrameDecoder } from './frame-codec.js';
import { parseRpc } from './jsonrpc.js';

export class ControlCallError extends Error {
  readonly rpcCode: number;
  readonly data: unknown;
  constructor(rpcCode: number, message: string, data?: unknown) {
    super(message);
    this.rpcCode = rpcCode;
    this.data = data;
  }
}

export interface ControlClientOptions {
  host: string;
  port: number;
  /** Bind the client's side to this local address (tests: one loopback address per Core). */
  localAddress?: string;
  /** Mutual TLS: the Core's key and certificate (PEM). */
  tls?: { key: string; cert: string };
  timeoutMs?: number;
  /**
   * Called for each notification. When set, notifications are not also kept in
   * `notifications` (a long-lived Core link would otherwise grow it without bound).
   */
  onNotification?: (n: Notification) => void;
}

export interface Notification {
  method: string;
  params: unknown;
}

export class ControlClient {
  readonly socket: net.Socket;
  readonly notifications: Notification[] = [];
  /** Errors with id null (refusals, bad frames). */
  readonly unsolicitedErrors: Array<{ code: number; message: string; data?: unknown }> = [];
  private readonly decoder = new FrameDecoder({ maxMessageBytes: 64 * 1024 * 1024 });
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly waiters = new Set<() => void>();
  private nextId = 1;
  closed = false;
  readonly ready: Promise<void>;
  readonly closedPromise: Promise<void>;
  private readonly timeoutMs: number;
  private readonly onNotification: ((n: Notification) => void) | undefined;

  private constructor(options: ControlClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.onNotification = options.onNotification;
    const base = { host: options.host, port: options.port, localAddress: options.localAddress };
    if (options.tls) {
      this.socket = tls.connect({
        ...base,
        key: options.tls.key,
        cert: options.tls.cert,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
      });
    } else {
      this.socket = net.connect(base);
    }
    this.socket.setNoDelay(true);
    this.ready = new Promise((resolve, reject) => {
      this.socket.once(options.tls ? 'secureConnect' : 'connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) => {
      this.socket.on('close', () => {
        this.closed = true;
        for (const p of this.pending.values()) p.reject(new Error('connection closed'));
        this.pending.clear();
        this.wake();
        resolve();
      });
    });
    this.socket.on('data', (chunk: Buffer) => {
      for (const ev of this.decoder.push(chunk)) {
        if (ev.kind !== 'frame') continue;
        const msg = parseRpc(ev.text);
        if (msg.kind === 'response') {
          if (msg.id === null) {
            if (msg.error) this.unsolicitedErrors.push(msg.error);
          } else {
            const p = this.pending.get(Number(msg.id));
            if (!p) continue;
            this.pending.delete(Number(msg.id));
            if (msg.error) p.reject(new ControlCallError(msg.error.code, msg.error.message, msg.error.data));
            else p.resolve(msg.result);
          }
        } else if (msg.kind === 'notification') {
          const n = { method: msg.method, params: msg.params };
          if (this.onNotification) this.onNotification(n);
          else this.notifications.push(n);
        }
      }
      this.wake();
    });
  }

  static async connect(options: ControlClientOptions): Promise<ControlClient> {
    const c = new ControlClient(options);
    await c.ready;
    return c;
  }

  /** Send a request; resolves with the result. */
  call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const id = this.nextId++;
    const msg: Record<string, unknown> = { jsonrpc: '2.0', id, method };
    if (params !== undefined) msg['params'] = params;
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new Error(`${method}: no reply in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(encodeFrame(msg));
    });
  }

  /** Write raw bytes (tests of malformed input). */
  writeRaw(bytes: Buffer | string): void {
    this.socket.write(bytes);
  }

  /** Wait until `pred` holds (checked after each received chunk and every 25 ms), or the connection closes. */
  async waitFor(pred: () => boolean, timeoutMs = this.timeoutMs): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (this.closed || Date.now() > deadline) return pred();
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.max(1, Math.min(25, deadline - Date.now())));
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.waiters.add(() => {
          done();
        });
      });
    }
    return true;
  }

  close(): Promise<void> {
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), 1000);
    return this.closedPromise.then(() => clearTimeout(t));
  }

  private wake(): void {
    const w = [...this.waiters];
    this.waiters.clear();
    for (const f of w) f();
  }
}

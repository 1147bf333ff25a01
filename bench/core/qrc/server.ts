/**
 * The QRC server's socket shell: TCP (NUL-framed, default port 1710) and, when attached to an
 * HTTP server, WebSocket (`/qrc`, one JSON-RPC message per WebSocket message). Each connection
 * gets a `QrcSession`; this file only moves bytes, applies limits and counts.
 *
 *   const server = new QrcServer({ backend, host: '127.0.0.1', port: 1710, logger });
 *   await server.start();
 *   server.attachWebSocket(httpServer);          // optional: ws://host/qrc
 *   ...
 *   await server.stop();
 */
import type http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { createSystemClock, type ClockSource } from '../../../firmware/clock/clock.js';
import type { Logger } from '../../../firmware/log/logger.js';
import type { QrcBackend } from './backend.js';
import { encodeQrcFrame, QRC_MAX_FRAME_BYTES, QrcFrameDecoder } from './frame-codec.js';
import {
  newCounters,
  QRC_DEFAULT_IDLE_TIMEOUT_MS,
  QRC_DEFAULT_MAX_TOTAL_CHANGE_GROUPS,
  QrcSession,
  type AutoPollStyle,
  type QrcAuth,
  type QrcCloseReason,
  type QrcCounters,
  type QrcGroupBudget,
} from './session.js';

export const QRC_DEFAULT_PORT = 1710;
export const QRC_DEFAULT_MAX_CONNECTIONS = 256;
/** Unhandled messages per connection before the shell stops reading from it. */
const BACKLOG_PAUSE = 256;
/** Unsent output per connection before it counts as a slow consumer and is closed. */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export interface QrcServerOptions {
  backend: QrcBackend;
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 1710; 0 = any free port (see `address()`). */
  port?: number;
  /** Default 60 000 ms; 0 = never. */
  idleTimeoutMs?: number;
  logger: Logger;
  /** TCP and WebSocket connections together. Default 256. */
  maxConnections?: number;
  /** Required credentials; absent (or no users) = open access. */
  auth?: QrcAuth;
  /** Change groups per connection. Default 64. */
  maxChangeGroups?: number;
  /** Change groups across all connections. Default 512. */
  maxTotalChangeGroups?: number;
  maxGroupControls?: number;
  /** Largest frame/message in bytes. Default 1 MiB. */
  maxFrameBytes?: number;
  autoPollStyle?: AutoPollStyle;
  clock?: ClockSource;
}

interface Conn {
  session: QrcSession;
  kind: 'tcp' | 'ws';
  end: () => void;
}

export class QrcServer {
  readonly counters: QrcCounters = newCounters();
  /** Change groups in use across connections (and the limit). */
  readonly groupBudget: QrcGroupBudget;
  private readonly o: Readonly<
    Required<Omit<QrcServerOptions, 'auth' | 'maxChangeGroups' | 'maxGroupControls' | 'maxTotalChangeGroups'>>
  > &
    Pick<QrcServerOptions, 'auth' | 'maxChangeGroups' | 'maxGroupControls'>;
  private readonly log: Logger;
  private tcp: net.Server | null = null;
  private readonly conns = new Set<Conn>();
  private readonly wsAttached: Array<{
    server: http.Server;
    onUpgrade: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
    wss: WebSocketServer;
  }> = [];

  constructor(options: QrcServerOptions) {
    const port = options.port ?? QRC_DEFAULT_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError('port must be 0..65535');
    const idle = options.idleTimeoutMs ?? QRC_DEFAULT_IDLE_TIMEOUT_MS;
    if (!Number.isFinite(idle) || idle < 0) throw new RangeError('idleTimeoutMs must be >= 0');
    const maxConnections = options.maxConnections ?? QRC_DEFAULT_MAX_CONNECTIONS;
    if (!Number.isInteger(maxConnections) || maxConnections < 1)
      throw new RangeError('maxConnections must be >= 1');
    for (const u of options.auth?.users ?? []) {
      if (typeof u.User !== 'string' || typeof u.Password !== 'string')
        throw new TypeError('auth users need User and Password strings');
    }
    this.o = Object.freeze({
      backend: options.backend,
      host: options.host ?? '127.0.0.1',
      port,
      idleTimeoutMs: idle,
      logger: options.logger,
      maxConnections,
      auth: options.auth ? { users: options.auth.users.map((u) => ({ ...u })) } : undefined,
      maxChangeGroups: options.maxChangeGroups,
      maxGroupControls: options.maxGroupControls,
      maxFrameBytes: options.maxFrameBytes ?? QRC_MAX_FRAME_BYTES,
      autoPollStyle: options.autoPollStyle ?? 'notification',
      clock: options.clock ?? createSystemClock(),
    });
    for (const [key, v] of [
      ['maxChangeGroups', options.maxChangeGroups],
      ['maxGroupControls', options.maxGroupControls],
      ['maxFrameBytes', options.maxFrameBytes],
    ] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 1))
        throw new RangeError(`${key} must be an integer >= 1`);
    }
    const maxTotal = options.maxTotalChangeGroups ?? QRC_DEFAULT_MAX_TOTAL_CHANGE_GROUPS;
    if (!Number.isInteger(maxTotal) || maxTotal < 1)
      throw new RangeError('maxTotalChangeGroups must be >= 1');
    this.groupBudget = { used: 0, max: maxTotal };
    this.log = options.logger.child({ module: 'qrc' });
  }

  /** Open connections (TCP and WebSocket). */
  get connectionCount(): number {
    return this.conns.size;
  }

  /** Listen on TCP. Resolves when listening. */
  async start(): Promise<void> {
    if (this.tcp) return;
    const srv = net.createServer({ noDelay: true }, (socket) => this.onTcp(socket));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host: this.o.host, port: this.o.port }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    srv.on('error', (err) => this.log.error('qrc_server_error', { err }));
    this.tcp = srv;
    this.log.info('qrc_listening', { ...this.address() });
  }

  /** The TCP address (after start). */
  address(): { host: string; port: number } {
    const a = this.tcp?.address();
    if (!a || typeof a === 'string') throw new Error('QRC server is not listening');
    return { host: a.address, port: a.port };
  }

  /**
   * Serve QRC over WebSocket on `server` at `path`. Upgrades for other paths are left to other
   * 'upgrade' listeners (answered 404 when this is the only one).
   */
  attachWebSocket(server: http.Server, path = '/qrc'): void {
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.o.maxFrameBytes,
      perMessageDeflate: false,
    });
    const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== path) {
        // Another upgrade handler may serve this path; when there is none, answer 404 here
        // (an unanswered upgrade would hold the socket, and the HTTP server's close, forever).
        if (server.listenerCount('upgrade') === 1) {
          socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        }
        return;
      }
      if (this.conns.size >= this.o.maxConnections) {
        this.counters.refusedConnections++;
        socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => this.onWs(ws, req.socket.remoteAddress ?? ''));
    };
    server.on('upgrade', onUpgrade);
    this.wsAttached.push({ server, onUpgrade, wss });
  }

  /** Close every connection and stop listening. */
  async stop(): Promise<void> {
    for (const c of [...this.conns]) c.session.close('server-stop');
    for (const a of this.wsAttached) {
      a.server.off('upgrade', a.onUpgrade);
      a.wss.close();
    }
    this.wsAttached.length = 0;
    const srv = this.tcp;
    this.tcp = null;
    if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
  }

  private newSession(
    kind: 'tcp' | 'ws',
    peer: string,
    send: (m: Record<string, unknown>) => void,
    end: (reason: QrcCloseReason) => void,
    onDrain: () => void,
  ): Conn {
    const log = this.log.child({ peer, transport: kind });
    // eslint-disable-next-line prefer-const
    let conn: Conn;
    const session = new QrcSession({
      backend: this.o.backend,
      clock: this.o.clock,
      logger: log,
      counters: this.counters,
      idleTimeoutMs: this.o.idleTimeoutMs,
      auth: this.o.auth,
      maxChangeGroups: this.o.maxChangeGroups,
      groupBudget: this.groupBudget,
      maxGroupControls: this.o.maxGroupControls,
      autoPollStyle: this.o.autoPollStyle,
      send,
      onDrain,
      close: (reason) => {
        if (this.conns.delete(conn)) this.counters.openConnections--;
        log.info('qrc_closed', { reason });
        end(reason);
      },
    });
    conn = { session, kind, end: () => session.close('peer') };
    this.conns.add(conn);
    this.counters.connections++;
    this.counters.openConnections++;
    log.info('qrc_connected');
    return conn;
  }

  private onTcp(socket: net.Socket): void {
    const peer = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`;
    if (this.conns.size >= this.o.maxConnections) {
      this.counters.refusedConnections++;
      this.log.warn('qrc_refused', { peer, reason: 'max-connections' });
      socket.destroy();
      return;
    }
    socket.on('error', () => undefined);
    const decoder = new QrcFrameDecoder({ maxFrameBytes: this.o.maxFrameBytes });
    const conn = this.newSession(
      'tcp',
      peer,
      (m) => {
        if (socket.destroyed) return;
        socket.write(encodeQrcFrame(m));
        if (socket.writableLength > MAX_OUTPUT_BYTES) conn.session.close('slow-consumer');
      },
      (reason) => {
        // Flush what was queued (e.g. the oversize error), then close.
        if (reason === 'peer') socket.destroy();
        else socket.end(() => socket.destroy());
      },
      () => {
        if (socket.isPaused()) socket.resume();
      },
    );
    socket.on('data', (chunk: Buffer) => {
      for (const ev of decoder.push(chunk)) {
        if (ev.kind === 'message') conn.session.receive(ev.text);
        else conn.session.receiveBad(ev.reason, ev.fatal);
        if (conn.session.closed) return;
      }
      if (conn.session.backlog > BACKLOG_PAUSE) socket.pause();
    });
    socket.on('close', () => conn.end());
    conn.session.start();
  }

  private onWs(ws: WebSocket, remote: string): void {
    ws.on('error', () => undefined);
    const conn = this.newSession(
      'ws',
      remote,
      (m) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify(m));
        if (ws.bufferedAmount > MAX_OUTPUT_BYTES) conn.session.close('slow-consumer');
      },
      (reason) => {
        if (reason === 'peer') ws.terminate();
        else ws.close(reason === 'oversize' ? 1009 : reason === 'idle' ? 1000 : 1001, reason);
      },
      () => {
        if (ws.isPaused) ws.resume();
      },
    );
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      const buf = Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data);
      const text = isBinary ? decodeUtf8(buf) : buf.toString('utf8');
      if (text === null) conn.session.receiveBad('message is not valid UTF-8', false);
      else conn.session.receive(stripNul(text));
      if (conn.session.backlog > BACKLOG_PAUSE) ws.pause();
    });
    ws.on('close', () => conn.end());
    conn.session.start();
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(buf: Buffer): string | null {
  try {
    return utf8.decode(buf);
  } catch {
    return null;
  }
}

/** A WebSocket client may still end its message with the TCP form's NUL: accept it. */
function stripNul(text: string): string {
  return text.endsWith('\0') ? text.slice(0, -1) : text;
}

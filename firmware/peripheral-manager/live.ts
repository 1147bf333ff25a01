/**
 * Live updates over WebSocket at /api/v1/live on both ports: one JSON message per tick
 * (default every 100 ms) with status and meters. The upgrade is authenticated like the API: a
 * session cookie, or nothing when read-only status is public; the Origin must be our own.
 * Clients never send anything meaningful; messages from them are ignored (max 1 KiB).
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { TimerHandle } from '../clock/clock.js';
import { parseCookies, sameOrigin, SESSION_COOKIE } from './http-util.js';
import type { ManagerContext } from './service.js';

export const LIVE_PATH = '/api/v1/live';
const MAX_CLIENTS = 64;

export class LiveHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false });
  private readonly clients = new Map<WebSocket, string | null>();
  private timer: TimerHandle | null = null;
  private closed = false;
  private nextAt = 0;

  constructor(private readonly ctx: ManagerContext) {}

  get size(): number {
    return this.clients.size;
  }

  attach(server: Server, secure: boolean): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      const reject = (status: number, text: string): void => {
        socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      };
      const path = (req.url ?? '').split('?')[0];
      if (path !== LIVE_PATH || this.closed) return reject(404, 'Not Found');
      if (!secure && this.ctx.o.state.get().settings.httpRedirectOnly) return reject(403, 'Forbidden');
      if (!sameOrigin(req.headers.origin, req.headers.host)) return reject(403, 'Forbidden');
      const sid = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
      const session = this.ctx.sessions.get(sid);
      if (!session && !this.ctx.o.state.get().settings.publicStatus) return reject(401, 'Unauthorized');
      if (this.clients.size >= MAX_CLIENTS) return reject(503, 'Service Unavailable');
      this.wss.handleUpgrade(req, socket, head, (ws) => this.add(ws, session?.id ?? null));
    });
  }

  private add(ws: WebSocket, sessionId: string | null): void {
    this.clients.set(ws, sessionId);
    ws.on('close', () => this.clients.delete(ws));
    ws.on('error', () => this.clients.delete(ws));
    ws.on('message', () => undefined);
    this.send(ws, this.frame());
    if (!this.timer) {
      this.nextAt = this.ctx.o.clock.monotonicMs();
      this.schedule();
    }
  }

  private frame(): string {
    return JSON.stringify({
      type: 'live',
      time: new Date(this.ctx.o.clock.wallMs()).toISOString(),
      status: this.ctx.status(),
      meters: this.ctx.meters(),
    });
  }

  private send(ws: WebSocket, text: string): void {
    // drop a frame for a slow client rather than queueing without bound
    if (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 256 * 1024) ws.send(text);
  }

  private schedule(): void {
    const period = this.ctx.o.liveIntervalMs ?? 100;
    const clock = this.ctx.o.clock;
    this.nextAt += period;
    const now = clock.monotonicMs();
    if (this.nextAt < now - period) this.nextAt = now; // after a stall, do not burst
    this.timer = clock.setTimeout(() => this.tick(), this.nextAt - now);
  }

  private tick(): void {
    this.timer = null;
    if (this.closed || this.clients.size === 0) return;
    let text: string;
    try {
      text = this.frame();
    } catch (err) {
      this.ctx.log.warn('live_frame_failed', { err });
      this.schedule();
      return;
    }
    const publicStatus = this.ctx.o.state.get().settings.publicStatus;
    for (const [ws, sid] of this.clients) {
      // a logged-out or expired session loses its live feed (unless status is public)
      if (sid !== null ? this.ctx.sessions.get(sid) === null && !publicStatus : !publicStatus) {
        ws.close(4401, 'session ended');
        this.clients.delete(ws);
        continue;
      }
      this.send(ws, text);
    }
    this.schedule();
  }

  close(): void {
    this.closed = true;
    if (this.timer) this.ctx.o.clock.clearTimeout(this.timer);
    this.timer = null;
    for (const ws of this.clients.keys()) ws.terminate();
    this.clients.clear();
    this.wss.close();
  }
}

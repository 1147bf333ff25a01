/**
 * The Core's web dashboard: static HTML/JS/CSS from `public/`, `GET /api/state` (one JSON
 * snapshot: the Core, the inventory, PTP, rollout progress) and a WebSocket at `/ws` that pushes
 * a fresh snapshot at most every `pushEveryMs` while something changed. Loopback by default;
 * read-only (driving controls is QRC's job).
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { join, normalize } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../../firmware/log/logger.js';
import { findProjectRoot } from '../../../firmware/paths.js';

export interface DashboardOptions {
  host: string;
  port: number;
  logger: Logger;
  snapshot: () => unknown;
  pushEveryMs?: number;
  /** Where index.html and friends live (default: <project>/bench/core/dashboard/public). */
  publicDir?: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export class Dashboard {
  private server: http.Server | null = null;
  private wss: WebSocketServer | null = null;
  private dirty = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly log: Logger;
  private readonly publicDir: string;

  constructor(private readonly o: DashboardOptions) {
    this.log = o.logger.child({ module: 'core-dashboard' });
    this.publicDir = o.publicDir ?? join(findProjectRoot(), 'bench', 'core', 'dashboard', 'public');
  }

  async start(): Promise<{ host: string; port: number }> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    const wss = new WebSocketServer({ server, path: '/ws', maxPayload: 4096 });
    wss.on('connection', (ws: WebSocket) => {
      ws.on('error', () => undefined);
      ws.send(JSON.stringify(this.o.snapshot()));
    });
    this.server = server;
    this.wss = wss;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.port, this.o.host, () => resolve());
    });
    this.timer = setInterval(() => this.flush(), this.o.pushEveryMs ?? 250);
    const addr = this.address()!;
    this.log.info('dashboard_listening', addr);
    return addr;
  }

  address(): { host: string; port: number } | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  }

  /** Something changed: push a snapshot on the next tick. */
  changed(): void {
    this.dirty = true;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    const s = this.server;
    this.server = null;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  private flush(): void {
    if (!this.dirty || !this.wss || this.wss.clients.size === 0) return;
    this.dirty = false;
    const text = JSON.stringify(this.o.snapshot());
    for (const c of this.wss.clients) if (c.readyState === c.OPEN && c.bufferedAmount < 1 << 20) c.send(text);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (url.pathname === '/api/state') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(this.o.snapshot()));
      return;
    }
    const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
    const type = TYPES[name.slice(name.lastIndexOf('.'))];
    if (!type || name.includes('/') || normalize(name) !== name) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    try {
      const body = await readFile(join(this.publicDir, name));
      res.writeHead(200, {
        'content-type': type,
        'content-security-policy': "default-src 'self'; connect-src 'self'",
        'x-content-type-options': 'nosniff',
      });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }
}

/**
 * A TCP proxy on loopback in front of the bundle server: one listener per
 * device, throttled to `bytesPerSecond`, and cutting the first connection
 * after `cutAfterBytes` from the server (the device must resume by Range).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';

export interface ProxyOptions {
  listenHost: string;
  upstreamHost: string;
  upstreamPort: number;
  bytesPerSecond?: number;
  /** Cut the first connection after this many bytes downstream; null = never. */
  cutAfterBytes?: number | null;
  /** How many connections to cut (default 1). */
  cuts?: number;
}

/** Pure: how long to wait so that `bytes` sent since `startMs` stays at `rate`. */
export function throttleDelayMs(bytes: number, rate: number, startMs: number, nowMs: number): number {
  if (!(rate > 0)) return 0;
  return Math.max(0, startMs + (bytes / rate) * 1000 - nowMs);
}

export class CuttingProxy extends EventEmitter {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  cutsDone = 0;
  connections = 0;
  bytesDown = 0;

  constructor(private readonly o: ProxyOptions) {
    super();
  }

  async listen(): Promise<number> {
    this.server = createServer((client) => this.handle(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, this.o.listenHost, () => resolve());
    });
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  private handle(client: Socket): void {
    this.connections++;
    const cutThis = this.o.cutAfterBytes != null && this.cutsDone < (this.o.cuts ?? 1);
    const up = connect(this.o.upstreamPort, this.o.upstreamHost);
    this.sockets.add(client);
    this.sockets.add(up);
    const start = Date.now();
    let sent = 0;
    const kill = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on('close', () => {
      this.sockets.delete(client);
      up.destroy();
    });
    up.on('close', () => {
      this.sockets.delete(up);
      client.end();
    });
    client.on('error', kill);
    up.on('error', kill);
    client.pipe(up);
    up.on('data', (d: Buffer) => {
      if (cutThis && sent + d.length >= (this.o.cutAfterBytes as number)) {
        const keep = Math.max(0, (this.o.cutAfterBytes as number) - sent);
        client.write(d.subarray(0, keep));
        sent += keep;
        this.bytesDown += keep;
        this.cutsDone++;
        this.emit('cut', { afterBytes: sent });
        kill();
        return;
      }
      sent += d.length;
      this.bytesDown += d.length;
      const ok = client.write(d);
      const wait = throttleDelayMs(sent, this.o.bytesPerSecond ?? 0, start, Date.now());
      if (wait > 0 || !ok) {
        up.pause();
        const resume = (): void => {
          if (!up.destroyed) up.resume();
        };
        if (!ok) client.once('drain', () => setTimeout(resume, wait));
        else setTimeout(resume, wait);
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/**
 * Benchmark of the control link. Prints figures; asserts nothing.
 *
 *   npm run bench:control
 *   npm run bench:control -- --sets 5000 --push-seconds 20 --connections 1000
 *
 * The peripheral side runs in a child process (this file with --serve) so the client's work and
 * the server's memory are measured apart. Everything is on loopback 127.0.1.40, ports 17100+.
 *   1. Controls.Set -> ack round trip, one request in flight, plaintext and mutual TLS 1.3.
 *   2. Push jitter of a change group on AutoPoll 0.05 s (20 Hz) holding 500 controls that all
 *      change between pushes: gap between arrivals at the client vs the 50 ms period.
 *   3. Connections held at once (each made one NoOp), server memory per connection.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { StateStore } from '../../firmware/config/state-store.js';
import { ControlClient } from '../../firmware/control/client.js';
import type { ControlHandle } from '../../firmware/control/registry.js';
import { ControlService } from '../../firmware/control/service.js';
import { silentLogger } from '../../firmware/log/logger.js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '..', '..', '..');
const HOST = '127.0.1.40';

const { values } = parseArgs({
  options: {
    serve: { type: 'boolean', default: false },
    port: { type: 'string', default: '17100' },
    tls: { type: 'string' },
    controls: { type: 'string', default: '500' },
    sets: { type: 'string', default: '3000' },
    'push-seconds': { type: 'string', default: '10' },
    connections: { type: 'string', default: '1000' },
  },
});

const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
const fmt = (n: number, d = 3): string => n.toFixed(d);

// -------------------------------------------------------------------------------------------
// Server role

async function serve(): Promise<void> {
  const port = Number(values.port);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-bench-ctl-'));
  const state = await StateStore.open({ dir, logger: silentLogger });
  const tlsDir = values.tls;
  const svc = new ControlService({
    board: loadBoardConfig(path.join(ROOT, 'board-configs', 'virtual.json')),
    state,
    logger: silentLogger,
    clock: createSystemClock(),
    port,
    host: HOST,
    maxClients: 100_000,
    identity: tlsDir
      ? () => ({
          key: readFileSync(path.join(tlsDir, 'dev.key'), 'utf8'),
          cert: readFileSync(path.join(tlsDir, 'dev.crt'), 'utf8'),
        })
      : undefined,
  });
  const n = Number(values.controls);
  const handles: ControlHandle[] = [];
  for (let i = 0; i < n; i++) {
    handles.push(
      svc.registry.register({
        name: `meter.${i}`,
        type: 'float',
        min: -120,
        max: 0,
        unit: 'dB',
        writable: false,
      }),
    );
  }
  svc.registry.register({
    name: 'bench.gain',
    type: 'float',
    min: -100,
    max: 20,
    unit: 'dB',
    writable: true,
  });
  // Meters move every 10 ms, like a live signal.
  let k = 0;
  setInterval(() => {
    k++;
    for (let i = 0; i < handles.length; i++) handles[i]!.update(-((k + i) % 120));
  }, 10);
  await svc.start();
  process.stdout.write('ready\n');
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line === 'mem') {
      globalThis.gc?.();
      process.stdout.write(JSON.stringify({ ...process.memoryUsage(), sessions: svc.sessions.size }) + '\n');
    }
  });
  rl.on('close', () => process.exit(0));
}

// -------------------------------------------------------------------------------------------
// Client role

class Server {
  readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private wake: (() => void) | null = null;
  constructor(args: string[]) {
    this.child = spawn(process.execPath, ['--expose-gc', HERE, '--serve', ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      this.lines.push(l);
      this.wake?.();
    });
  }
  async next(): Promise<string> {
    while (this.lines.length === 0) await new Promise<void>((r) => (this.wake = r));
    return this.lines.shift()!;
  }
  async mem(): Promise<{ rss: number; heapUsed: number; external: number; sessions: number }> {
    this.child.stdin!.write('mem\n');
    return JSON.parse(await this.next()) as never;
  }
  stop(): void {
    this.child.stdin!.end();
    this.child.kill('SIGTERM');
  }
}

function makeCerts(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-bench-certs-'));
  for (const name of ['dev', 'core']) {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        path.join(dir, `${name}.key`),
        '-out',
        path.join(dir, `${name}.crt`),
        '-days',
        '2',
        '-subj',
        `/CN=${name}`,
      ],
      { stdio: 'ignore' },
    );
  }
  return dir;
}

function progress(label: string, done: number, total: number): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${label}: ${done}/${total}   `);
  else if (done === total || done % Math.max(1, Math.floor(total / 4)) === 0)
    process.stderr.write(`${label}: ${done}/${total}\n`);
}

async function roundTrips(label: string, port: number, tlsDir: string | null): Promise<void> {
  const server = new Server([
    '--port',
    String(port),
    '--controls',
    '10',
    ...(tlsDir ? ['--tls', tlsDir] : []),
  ]);
  await server.next();
  const c = await ControlClient.connect({
    host: HOST,
    port,
    tls: tlsDir
      ? {
          key: readFileSync(path.join(tlsDir, 'core.key'), 'utf8'),
          cert: readFileSync(path.join(tlsDir, 'core.crt'), 'utf8'),
        }
      : undefined,
  });
  const n = Number(values.sets);
  const times: number[] = [];
  for (let i = 0; i < 200; i++) await c.call('Controls.Set', { Name: 'bench.gain', Value: -(i % 100) });
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await c.call('Controls.Set', { Name: 'bench.gain', Value: -(i % 100) });
    times.push(performance.now() - t0);
    if (i % 500 === 0) progress(label, i, n);
  }
  progress(label, n, n);
  if (process.stderr.isTTY) process.stderr.write('\n');
  times.sort((a, b) => a - b);
  console.log(
    `Set->ack ${label.padEnd(9)} n=${n}  p50 ${fmt(pct(times, 0.5))} ms  p99 ${fmt(pct(times, 0.99))} ms  max ${fmt(times.at(-1)!)} ms`,
  );
  await c.close();
  server.stop();
}

async function pushJitter(port: number): Promise<void> {
  const controls = Number(values.controls);
  const server = new Server(['--port', String(port), '--controls', String(controls)]);
  await server.next();
  const c = await ControlClient.connect({ host: HOST, port });
  const names = Array.from({ length: controls }, (_, i) => `meter.${i}`);
  await c.call('ChangeGroup.AddControl', { Id: 'meters', Controls: names });
  const arrivals: number[] = [];
  let bytes = 0;
  c.socket.on('data', (d: Buffer) => (bytes += d.length));
  const seconds = Number(values['push-seconds']);
  const startN = c.notifications.length;
  await c.call('ChangeGroup.AutoPoll', { Id: 'meters', Rate: 0.05 });
  const end = performance.now() + seconds * 1000;
  let seen = startN;
  let sizes = 0;
  let lastShown = -1;
  while (performance.now() < end) {
    await c.waitFor(() => c.notifications.length > seen, 1000);
    const now = performance.now();
    for (; seen < c.notifications.length; seen++) {
      arrivals.push(now);
      sizes += (c.notifications[seen]!.params as { Changes: unknown[] }).Changes.length;
    }
    c.notifications.length = 0;
    seen = 0;
    const done = Math.floor(seconds - (end - now) / 1000);
    if (done !== lastShown) progress('push seconds', (lastShown = done), seconds);
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  // The first pushes carry JIT warm-up; leave them out.
  const pushes = arrivals.length;
  arrivals.splice(0, 5);
  const gaps = arrivals.slice(1).map((a, i) => a - arrivals[i]!);
  const dev = gaps.map((g) => Math.abs(g - 50)).sort((a, b) => a - b);
  const sorted = [...gaps].sort((a, b) => a - b);
  console.log(
    `Push 20 Hz x ${controls} controls: ${pushes} pushes in ${seconds} s, avg ${fmt(sizes / Math.max(1, pushes), 0)} changes, ` +
      `${fmt(bytes / Math.max(1, pushes) / 1024, 1)} KiB each (first 5 left out of the gaps)`,
  );
  console.log(
    `  gap p50 ${fmt(pct(sorted, 0.5), 2)} ms  min ${fmt(sorted[0]!, 2)}  max ${fmt(sorted.at(-1)!, 2)};  |gap-50ms| p50 ${fmt(pct(dev, 0.5), 2)} ms  p99 ${fmt(pct(dev, 0.99), 2)} ms`,
  );
  await c.close();
  server.stop();
}

async function heldConnections(port: number): Promise<void> {
  const n = Number(values.connections);
  const server = new Server(['--port', String(port), '--controls', '10']);
  await server.next();
  const before = await server.mem();
  const clients: ControlClient[] = [];
  for (let i = 0; i < n; i++) {
    const c = await ControlClient.connect({ host: HOST, port });
    await c.call('NoOp');
    clients.push(c);
    if (i % 100 === 0) progress('connections', i, n);
  }
  progress('connections', n, n);
  if (process.stderr.isTTY) process.stderr.write('\n');
  const after = await server.mem();
  const per = (k: 'rss' | 'heapUsed' | 'external'): string => fmt((after[k] - before[k]) / n / 1024, 1);
  console.log(
    `Connections held: ${after.sessions} (asked ${n}); server memory per connection: rss ${per('rss')} KiB, heap ${per('heapUsed')} KiB, external ${per('external')} KiB`,
  );
  console.log(`  server rss ${fmt(before.rss / 1048576, 1)} MiB -> ${fmt(after.rss / 1048576, 1)} MiB`);
  for (const c of clients) c.socket.destroy();
  server.stop();
}

async function main(): Promise<void> {
  if (values.serve) return serve();
  console.log(
    `qperiph control-link benchmark (node ${process.version}, ${os.cpus().length} CPUs, loopback ${HOST})`,
  );
  await roundTrips('plaintext', 17100, null);
  let certs: string | null = null;
  try {
    certs = makeCerts();
  } catch {
    console.log('Set->ack TLS: skipped (openssl CLI missing)');
  }
  if (certs) await roundTrips('TLS 1.3', 17101, certs);
  await pushJitter(17102);
  await heldConnections(17103);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

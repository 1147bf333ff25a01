/**
 * Benchmark of the emulated Core's QRC server. Prints figures; asserts nothing.
 *
 *   npm run build && node dist/bench/perf/qrc.js [--requests 5000] [--window 32] [--controls 200]
 *
 * The server runs in a child process (this file with --serve) on 127.0.5.20 (TCP, any free port,
 * and WebSocket /qrc on a second port) with a MemoryQrcBackend of `--controls` named controls.
 *   1. Latency, one request in flight: NoOp and Control.Set over TCP, NoOp over WebSocket.
 *   2. Request rate over TCP with `--window` Control.Set requests in flight.
 *   3. AutoPoll at 0.1 s on a group holding every control, all changing: push interval spread.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { ControlClient } from '../../firmware/control/client.js';
import { silentLogger } from '../../firmware/log/logger.js';
import { MemoryQrcBackend } from '../core/qrc/backend.js';
import { QrcServer } from '../core/qrc/server.js';

const HERE = fileURLToPath(import.meta.url);
const HOST = '127.0.5.20';

const { values } = parseArgs({
  options: {
    serve: { type: 'boolean', default: false },
    requests: { type: 'string', default: '5000' },
    window: { type: 'string', default: '32' },
    controls: { type: 'string', default: '200' },
    'autopoll-seconds': { type: 'string', default: '5' },
  },
});
const CONTROLS = Number(values.controls);

function backendWith(n: number): MemoryQrcBackend {
  const b = new MemoryQrcBackend();
  for (let i = 0; i < n; i++) b.addNamed({ Name: `c${i}`, Value: 0, ValueMin: -100, ValueMax: 100 });
  return b;
}

async function serve(): Promise<void> {
  const backend = backendWith(CONTROLS);
  const server = new QrcServer({ backend, host: HOST, port: 0, logger: silentLogger, idleTimeoutMs: 0 });
  await server.start();
  const httpServer = http.createServer();
  await new Promise<void>((r) => httpServer.listen(0, HOST, () => r()));
  server.attachWebSocket(httpServer);
  // Every control changes every 20 ms (for the AutoPoll figure).
  let v = 0;
  const timer = setInterval(() => {
    v = (v + 1) % 100;
    for (let i = 0; i < CONTROLS; i++) backend.poke(undefined, `c${i}`, v);
  }, 20);
  const wsPort = (httpServer.address() as { port: number }).port;
  process.stdout.write(JSON.stringify({ port: server.address().port, wsPort }) + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    clearInterval(timer);
    void server.stop().then(() => httpServer.close(() => process.exit(0)));
  });
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function summary(name: string, ms: number[]): void {
  const s = [...ms].sort((a, b) => a - b);
  const f = (x: number): string => x.toFixed(3);
  console.log(
    `${name.padEnd(34)} n=${s.length}  p50=${f(pct(s, 50))} ms  p99=${f(pct(s, 99))} ms  max=${f(s.at(-1) ?? NaN)} ms`,
  );
}

async function wsLatency(port: number, n: number): Promise<number[]> {
  const ws = new WebSocket(`ws://${HOST}:${port}/qrc`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const out: number[] = [];
  let pending: ((id: number) => void) | null = null;
  ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString('utf8')) as { id?: number };
    if (typeof m.id === 'number' && pending) pending(m.id);
  });
  for (let i = 1; i <= n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      pending = (id) => {
        if (id === i) resolve();
      };
      ws.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'NoOp', params: {} }));
    });
    out.push(performance.now() - t0);
  }
  ws.close();
  return out;
}

async function main(): Promise<void> {
  const child = spawn(process.execPath, [HERE, '--serve', '--controls', String(CONTROLS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const first = await new Promise<string>((resolve) =>
    createInterface({ input: child.stdout! }).once('line', resolve),
  );
  const { port, wsPort } = JSON.parse(first) as { port: number; wsPort: number };
  const requests = Number(values.requests);
  const windowSize = Number(values.window);
  console.log(
    `QRC server on ${HOST}:${port} (ws ${wsPort}), ${CONTROLS} named controls, node ${process.version}`,
  );

  const c = await ControlClient.connect({ host: HOST, port, timeoutMs: 30_000 });
  for (let i = 0; i < 200; i++) await c.call('NoOp', {}); // warm-up

  const lat = async (method: string, params: (i: number) => unknown): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < Math.min(requests, 3000); i++) {
      const t0 = performance.now();
      await c.call(method, params(i));
      out.push(performance.now() - t0);
    }
    return out;
  };
  summary('TCP NoOp round trip', await lat('NoOp', () => ({})));
  summary('TCP Control.Set round trip', await lat('Control.Set', (i) => ({ Name: 'c1', Value: i % 100 })));
  summary('WebSocket NoOp round trip', await wsLatency(wsPort, Math.min(requests, 3000)));

  // Rate with a window of requests in flight.
  let sent = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (sent < requests) {
      const i = sent++;
      await c.call('Control.Set', { Name: `c${i % CONTROLS}`, Value: i % 100 });
    }
  };
  await Promise.all(Array.from({ length: windowSize }, () => worker()));
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `TCP Control.Set rate (window ${windowSize})`.padEnd(34) +
      ` ${(requests / secs).toFixed(0)} req/s over ${requests} requests`,
  );

  // AutoPoll: arrival spacing of pushes at 0.1 s.
  await c.call('ChangeGroup.AddControl', {
    Id: 'bench',
    Controls: Array.from({ length: CONTROLS }, (_, i) => `c${i}`),
  });
  const arrivals: number[] = [];
  const before = c.notifications.length;
  await c.call('ChangeGroup.AutoPoll', { Id: 'bench', Rate: 0.1 });
  const seconds = Number(values['autopoll-seconds']);
  const end = Date.now() + seconds * 1000;
  let seen = before;
  while (Date.now() < end) {
    await c.waitFor(() => c.notifications.length > seen, 500);
    const now = performance.now();
    while (seen < c.notifications.length) {
      if (c.notifications[seen]!.method === 'ChangeGroup.Poll') arrivals.push(now);
      seen++;
    }
  }
  const gaps = arrivals.slice(1).map((a, i) => a - arrivals[i]!);
  summary(`AutoPoll 0.1 s push gap (${CONTROLS} ctl)`, gaps);

  await c.close();
  child.stdin!.end();
  await new Promise((r) => child.once('exit', r));
}

if (values.serve) await serve();
else await main();

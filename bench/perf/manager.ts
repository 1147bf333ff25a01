/**
 * Benchmark: the Peripheral Manager. Prints figures; asserts nothing.
 *
 *   npm run bench:manager                    # 10 s of load
 *   npm run bench:manager -- --duration 30 --clients 50
 *
 * The manager runs as a child process (compiled `qperiph manager serve`) on 127.0.3.10,
 * ports 19090 (HTTP) / 19453 (HTTPS), so its RSS is its own. Figures:
 *   - GET /api/v1/status over HTTPS with keep-alive: requests/s and latency percentiles at N
 *     concurrent clients (logged-in session)
 *   - the status page in headless Chromium: transferred bytes (page weight) and first
 *     contentful paint (time to first render)
 *   - server RSS idle, and with 20 WebSocket clients attached to the live feed for 5 s
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const HOST = '127.0.3.10';
const HTTP_PORT = 19090;
const HTTPS_PORT = 19453;

const { values } = parseArgs({
  options: { duration: { type: 'string', default: '10' }, clients: { type: 'string', default: '50' } },
});
const durationS = Number(values.duration);
const clients = Number(values.clients);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

const agent = new Agent({ keepAlive: true, maxSockets: clients, rejectUnauthorized: false });

function call(
  method: string,
  p: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: HOST,
        port: HTTPS_PORT,
        method,
        path: p,
        agent,
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function waitForServer(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      await call('GET', '/api/v1/auth');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('manager did not start');
}

async function main(): Promise<void> {
  const cli = path.join(ROOT, 'dist', 'firmware', 'peripheral-manager', 'cli.js');
  if (!existsSync(cli)) throw new Error('run npm run build first');
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'qp-bench-mgr-'));
  const script = `import(${JSON.stringify(cli)}).then((m) => m.runPeripheralManagerCli(process.argv.slice(1))).then((c) => process.exit(c))`;
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      script,
      'serve',
      '--state-dir',
      stateDir,
      '--host',
      HOST,
      '--http-port',
      String(HTTP_PORT),
      '--https-port',
      String(HTTPS_PORT),
      '--name',
      'qperiph-bench',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, QPERIPH_ROOT: ROOT } },
  );
  try {
    await waitForServer();
    const setup = await call('POST', '/api/v1/auth/setup', { password: 'bench password' });
    const cookie = String(setup.headers['set-cookie']).split(';')[0]!;
    await new Promise((r) => setTimeout(r, 500));
    const rssIdle = rssKiB(child.pid!);

    // --- status API under load
    process.stderr.write(`status API: ${clients} clients for ${durationS} s `);
    const lat: number[] = [];
    let errors = 0;
    const end = performance.now() + durationS * 1000;
    let lastDot = performance.now();
    const worker = async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          const r = await call('GET', '/api/v1/status', undefined, { cookie });
          if (r.status !== 200) errors++;
        } catch {
          errors++;
        }
        lat.push(performance.now() - t0);
        if (performance.now() - lastDot > 1000) {
          lastDot = performance.now();
          process.stderr.write('.');
        }
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: clients }, worker));
    const elapsed = (performance.now() - t0) / 1000;
    process.stderr.write(' done\n');
    lat.sort((a, b) => a - b);
    const rssLoad = rssKiB(child.pid!);

    // --- 20 WebSocket clients
    process.stderr.write('20 WebSocket clients for 5 s ...\n');
    let frames = 0;
    const sockets = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`wss://${HOST}:${HTTPS_PORT}/api/v1/live`, {
              headers: { cookie },
              rejectUnauthorized: false,
            });
            ws.on('open', () => resolve(ws));
            ws.on('message', () => frames++);
            ws.on('error', reject);
          }),
      ),
    );
    await new Promise((r) => setTimeout(r, 5000));
    const rssWs = rssKiB(child.pid!);
    for (const ws of sockets) ws.close();

    // --- Chromium: page weight and first render
    let page: { kb: number; fcpMs: number; requests: number } | null = null;
    if (existsSync('/usr/bin/chromium')) {
      process.stderr.write('Chromium: status page weight and first render ...\n');
      const { chromium } = await import('playwright-core');
      const browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--no-first-run',
        ],
      });
      try {
        const fcps: number[] = [];
        let bytes = 0;
        let requests = 0;
        for (let i = 0; i < 5; i++) {
          const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
          await ctx.addCookies([
            {
              name: 'qp_session',
              value: cookie.split('=')[1]!,
              domain: HOST,
              path: '/',
              httpOnly: true,
              secure: true,
              sameSite: 'Strict',
            },
          ]);
          const pg = await ctx.newPage();
          const cdp = await ctx.newCDPSession(pg);
          await cdp.send('Network.enable');
          let b = 0;
          let n = 0;
          cdp.on('Network.loadingFinished', (e: { encodedDataLength: number }) => {
            b += e.encodedDataLength;
            n++;
          });
          await pg.goto(`https://${HOST}:${HTTPS_PORT}/#status`, { waitUntil: 'load' });
          await pg.locator('#status-list dd').first().waitFor();
          const fcp = await pg.evaluate(
            () => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN,
          );
          fcps.push(fcp);
          if (i === 0) {
            bytes = b;
            requests = n;
          }
          await ctx.close();
        }
        fcps.sort((a, b) => a - b);
        page = { kb: bytes / 1024, fcpMs: fcps[Math.floor(fcps.length / 2)]!, requests };
      } finally {
        await browser.close();
      }
    }

    const f = (n: number, d = 1) => n.toFixed(d);
    console.log(`\nPeripheral Manager benchmark (${os.cpus().length} CPUs, Node ${process.version})`);
    console.log(`status API (HTTPS, keep-alive, ${clients} concurrent, ${durationS} s):`);
    console.log(
      `  requests/s      ${f(lat.length / elapsed, 0)}   (${lat.length} requests, ${errors} errors)`,
    );
    console.log(
      `  latency ms      p50 ${f(pct(lat, 0.5))}  p90 ${f(pct(lat, 0.9))}  p99 ${f(pct(lat, 0.99))}  max ${f(lat.at(-1) ?? NaN)}`,
    );
    if (page) {
      console.log(`status page (Chromium, median of 5 loads):`);
      console.log(
        `  page weight     ${f(page.kb)} KB over ${page.requests} requests (first load, uncompressed)`,
      );
      console.log(`  first render    ${f(page.fcpMs, 0)} ms (first-contentful-paint)`);
    } else {
      console.log('status page: skipped (no /usr/bin/chromium)');
    }
    console.log(`server RSS:`);
    console.log(`  idle            ${f(rssIdle / 1024)} MiB`);
    console.log(`  after load      ${f(rssLoad / 1024)} MiB`);
    console.log(`  20 WS clients   ${f(rssWs / 1024)} MiB   (${f(frames / 20 / 5)} frames/s per client)`);
  } finally {
    child.kill('SIGTERM');
    agent.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

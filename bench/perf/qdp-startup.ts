/**
 * Benchmark: how fast the peripheral is found, how steady its announcements
 * are, and what it costs at idle. Prints figures; asserts nothing.
 *
 *   npm run bench:qdp                  # 5 start-ups, 60 s of intervals
 *   npm run bench:qdp -- --duration 300 --runs 10
 *
 * Everything runs on loopback (127.0.0.31) against the compiled runtime.
 * Intervals are measured twice: on the wire with tshark's capture timestamps
 * (when tshark is installed and we are root), and at a receiving socket in
 * this process (which adds the receiver's own event-loop delay).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DgramSocket } from 'node-unix-socket';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'firmware', 'cli.js');
const BOARD = path.join(ROOT, 'board-configs', 'virtual.json');
const ADDRESS = '127.0.0.31';
const GROUP = '224.0.23.175';

const { values } = parseArgs({
  options: { duration: { type: 'string', default: '60' }, runs: { type: 'string', default: '5' } },
});
const durationS = Number(values.duration);
const runs = Number(values.runs);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

function listen(onPacket: (atMs: number) => void): Promise<dgram.Socket> {
  return new Promise((resolve) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    s.on('message', (_m, from) => {
      if (from.address === ADDRESS && from.port === 6504) onPacket(performance.now());
    });
    s.bind(2467, () => {
      s.addMembership(GROUP, '127.0.0.1');
      resolve(s);
    });
  });
}

interface Started {
  pid: number;
  spawnedAt: number;
  firstPacketMs: Promise<number>;
  readyMs: Promise<number>;
  stop(): Promise<void>;
}

async function startOne(packets: (cb: (at: number) => void) => void): Promise<Started> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-bench-'));
  const sockPath = path.join(dir, 'notify.sock');
  const notify = new DgramSocket();
  notify.bind(sockPath);
  let resolveReady!: (v: number) => void;
  const readyMs = new Promise<number>((r) => (resolveReady = r));
  let resolveFirst!: (v: number) => void;
  const firstPacketMs = new Promise<number>((r) => (resolveFirst = r));
  const spawnedAt = performance.now();
  notify.on('data', (buf: Buffer) => {
    if (buf.toString().split('\n').includes('READY=1')) resolveReady(performance.now() - spawnedAt);
  });
  packets((at) => resolveFirst(at - spawnedAt));
  const child = spawn(
    process.execPath,
    [
      CLI,
      'start',
      '--board',
      BOARD,
      '--state-dir',
      path.join(dir, 'state'),
      '--address',
      ADDRESS,
      '--name',
      'bench-qdp',
    ],
    { env: { ...process.env, NOTIFY_SOCKET: sockPath }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return {
    pid: child.pid!,
    spawnedAt,
    firstPacketMs,
    readyMs,
    stop: () =>
      new Promise((resolve) => {
        child.on('exit', () => {
          notify.close();
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

function startCapture(): { proc: ChildProcess; done: Promise<number[]> } | null {
  const have = spawnSync('tshark', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!have || process.getuid?.() !== 0) return null;
  const proc = spawn(
    'tshark',
    [
      '-i',
      'lo',
      '-l',
      '-f',
      `udp and src host ${ADDRESS} and src port 6504 and dst port 2467`,
      '-T',
      'fields',
      '-e',
      'frame.time_epoch',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  const done = new Promise<number[]>((resolve) =>
    proc.on('exit', () =>
      resolve(
        out
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((x) => Number(x) * 1000),
      ),
    ),
  );
  return { proc, done };
}

function report(label: string, arrivals: number[]): void {
  const gaps = arrivals.slice(1).map((a, i) => a - arrivals[i]!);
  if (gaps.length === 0) {
    console.log(`  ${label}: no intervals`);
    return;
  }
  const dev = gaps.map((g) => Math.abs(g - 1000)).sort((a, b) => a - b);
  const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
  const drift = arrivals.at(-1)! - arrivals[0]! - (arrivals.length - 1) * 1000;
  console.log(`\n  ${label}: packets ${arrivals.length}, intervals ${gaps.length}`);
  console.log(`    mean interval            ${mean.toFixed(3)} ms`);
  console.log(
    `    |deviation from 1 s|     mean ${(dev.reduce((a, b) => a + b, 0) / dev.length).toFixed(3)} ms, p50 ${pct(dev, 0.5).toFixed(3)} ms, p99 ${pct(dev, 0.99).toFixed(3)} ms, max ${dev.at(-1)!.toFixed(3)} ms  (goal p99 <= 5 ms)`,
  );
  console.log(`    accumulated drift        ${drift.toFixed(3)} ms over ${gaps.length} intervals`);
  const buckets = [0.1, 0.5, 1, 2, 5, 10, Infinity];
  console.log('    deviation histogram:');
  let lo = 0;
  for (const b of buckets) {
    const n = dev.filter((d) => d >= lo && d < b).length;
    const bar = '#'.repeat(Math.round((n / Math.max(1, dev.length)) * 50));
    console.log(
      `      ${`${lo}-${b === Infinity ? '...' : b} ms`.padEnd(12)} ${String(n).padStart(5)} ${bar}`,
    );
    lo = b;
  }
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  let onPacket: ((at: number) => void) | null = null;
  const arrivals: number[] = [];
  const sock = await listen((at) => {
    onPacket?.(at);
    arrivals.push(at);
  });

  console.log(
    `qperiph QDP benchmark: node ${process.version}, ${os.cpus().length} cores, loopback ${ADDRESS}`,
  );
  const first: number[] = [];
  const ready: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = await startOne((cb) => {
      let done = false;
      onPacket = (at) => {
        if (!done) {
          done = true;
          cb(at);
        }
      };
    });
    first.push(await s.firstPacketMs);
    ready.push(await s.readyMs);
    await s.stop();
  }
  first.sort((a, b) => a - b);
  ready.sort((a, b) => a - b);
  const f = (x: number) => x.toFixed(0).padStart(5);
  console.log(
    `\nstart-up (${runs} runs, spawn of 'qperiph start' to event)   min   p50   max  (goal <= 1000 ms)`,
  );
  console.log(
    `  to first QDP packet on the wire (ms)              ${f(first[0]!)} ${f(pct(first, 0.5))} ${f(first.at(-1)!)}`,
  );
  console.log(
    `  to READY=1 on NOTIFY_SOCKET (ms)                  ${f(ready[0]!)} ${f(pct(ready, 0.5))} ${f(ready.at(-1)!)}`,
  );

  onPacket = null;
  arrivals.length = 0;
  const s = await startOne(() => {});
  await s.readyMs;
  await new Promise((r) => setTimeout(r, 3000));
  // `qperiph discover --timeout 1.1` against the running peripheral: listed, and how fast.
  const heard: number[] = [];
  let listed = 0;
  const tries = 5;
  for (let i = 0; i < tries; i++) {
    const r = spawnSync(process.execPath, [CLI, 'discover', '--timeout', '1.1', '--json'], {
      encoding: 'utf8',
    });
    const devices = (
      JSON.parse(r.stdout || '{"devices":[]}') as {
        devices: Array<{ device: { name: string }; firstHeardAfterMs: number }>;
      }
    ).devices;
    const me = devices.find((d) => d.device.name === 'bench-qdp');
    if (me) {
      listed++;
      heard.push(me.firstHeardAfterMs);
    }
  }
  heard.sort((a, b) => a - b);
  console.log(
    `\ndiscover --timeout 1.1: listed ${listed}/${tries} times; first heard after p50 ${pct(heard, 0.5).toFixed(1)} ms, max ${(heard.at(-1) ?? NaN).toFixed(1)} ms`,
  );
  const rssIdleStart = rssMb(s.pid);
  const capture = startCapture();
  await new Promise((r) => setTimeout(r, capture ? 1500 : 0)); // let tshark start capturing
  arrivals.length = 0;
  process.stdout.write(`\nannounce interval: listening for ${durationS} s `);
  const tick = setInterval(() => process.stdout.write('.'), Math.max(1000, (durationS * 1000) / 30));
  await new Promise((r) => setTimeout(r, durationS * 1000));
  clearInterval(tick);
  const rssIdleEnd = rssMb(s.pid);
  capture?.proc.kill('SIGINT');
  const wire = capture ? await capture.done : null;
  await s.stop();
  sock.close();
  console.log('');
  if (wire) report('on the wire (tshark capture timestamps on lo)', wire);
  else console.log('  on the wire: skipped (needs tshark and root)');
  report('at a receiving socket in this process', arrivals);
  console.log(
    `\nidle RSS: ${rssIdleStart.toFixed(1)} MB after start, ${rssIdleEnd.toFixed(1)} MB after ${durationS} s  (goal <= 80 MB)`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

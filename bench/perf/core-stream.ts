/**
 * Emulated Core streaming benchmark (`node dist/bench/perf/core-stream.js`). Prints figures,
 * asserts nothing.
 *
 * N real peripherals (virtual board, default 8, on 127.0.0.40..47) and this process as the Core
 * (127.0.0.39): one AudioPeer per peripheral, a 2-channel stream each way (Q-LAN by default).
 * After a warm-up it measures over a window: the Core process's CPU (process.cpuUsage, all its
 * threads: the sender workers included) and RSS, each peripheral's CPU (/proc/PID/stat), and per
 * peripheral the wire loss, playout loss and one-way transit (peripheral -> Core).
 *
 * Env: CORE_BENCH_PERIPHERALS (8), CORE_BENCH_S (window, 10), CORE_BENCH_WARMUP_S (3),
 *      CORE_BENCH_FORMAT (qlan | aes67), CORE_BENCH_CHANNELS (2), CORE_BENCH_LEAD_US (sender
 *      busy-wait lead, 100 as the firmware), CORE_BENCH_BUSY_WAIT (0 default: Core and peripheral
 *      senders sleep to each deadline; 1: they busy-wait, as the firmware on a device).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFreeRunningClock } from '../../firmware/audio/media-clock.js';
import { ControlClient } from '../../firmware/control/client.js';
import { AudioPeer, type PeerStats } from '../core/audio-peer.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'firmware', 'cli.js');
const BOARD = path.join(ROOT, 'board-configs', 'virtual.json');
const N = Number(process.env['CORE_BENCH_PERIPHERALS'] ?? 8);
const WINDOW_S = Number(process.env['CORE_BENCH_S'] ?? 10);
const WARMUP_S = Number(process.env['CORE_BENCH_WARMUP_S'] ?? 3);
const FORMAT = (process.env['CORE_BENCH_FORMAT'] ?? 'qlan') as 'qlan' | 'aes67';
const CHANNELS = Number(process.env['CORE_BENCH_CHANNELS'] ?? 2);
const LEAD_US = Number(process.env['CORE_BENCH_LEAD_US'] ?? 100);
const BUSY_WAIT = process.env['CORE_BENCH_BUSY_WAIT'] === '1';
const CORE = '127.0.0.39';
const CLK_TCK = 100;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Peripheral {
  address: string;
  child: ChildProcess;
  controlPort: number;
  ready: Promise<void>;
}

function startPeripheral(i: number, dir: string): Peripheral {
  const address = `127.0.0.${40 + i}`;
  const controlPort = 17200 + i;
  const child = spawn(
    process.execPath,
    [
      CLI,
      'start',
      '--board',
      BOARD,
      '--state-dir',
      path.join(dir, `p${i}`),
      '--address',
      address,
      '--control-port',
      String(controlPort),
      '--http-port',
      String(18200 + i),
      '--https-port',
      String(18600 + i),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, QPERIPH_AUDIO_BUSY_WAIT: BUSY_WAIT ? '1' : '0' },
    },
  );
  const ready = new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.includes('"event":"ready"')) {
        buf = '';
        resolve();
      } else if (buf.length > 100_000) buf = buf.slice(-1000);
    });
    child.on('exit', (code) => reject(new Error(`peripheral ${address} exited (${code})`)));
  });
  return { address, child, controlPort, ready };
}

/** utime + stime of a process in seconds (Linux /proc). */
function procCpuS(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

const fmt = (v: number | null | undefined, d = 2): string =>
  v === null || v === undefined ? '-' : v.toFixed(d);

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-core-bench-'));
  const peripherals = Array.from({ length: N }, (_, i) => startPeripheral(i, dir));
  const clients: ControlClient[] = [];
  const peers: AudioPeer[] = [];
  try {
    await Promise.all(peripherals.map((p) => p.ready));
    const mediaClock = createFreeRunningClock();
    for (const [i, p] of peripherals.entries()) {
      const c = await ControlClient.connect({
        host: p.address,
        port: p.controlPort,
        localAddress: CORE,
        timeoutMs: 60_000,
      });
      clients.push(c);
      const peer = new AudioPeer({
        peripheral: p.address,
        localAddress: CORE,
        call: (m, params) => c.call(m, params),
        mediaClock,
        format: FORMAT,
        channels: CHANNELS,
        basePort: 28000 + 10 * i,
        leadUs: LEAD_US,
        busyWait: BUSY_WAIT,
        ...(FORMAT === 'aes67'
          ? { groups: { toPeripheral: `239.69.8.${2 * i + 1}`, fromPeripheral: `239.69.8.${2 * i + 2}` } }
          : {}),
      });
      await peer.start();
      peers.push(peer);
    }
    console.log(
      `core-stream: ${N} peripherals, ${FORMAT} ${CHANNELS} ch each way, senders ${BUSY_WAIT ? `busy-wait (lead ${LEAD_US} us)` : 'sleep only'}; ` +
        `warm-up ${WARMUP_S} s, window ${WINDOW_S} s; ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`,
    );
    await sleep(WARMUP_S * 1000);
    for (const p of peers) await p.poll();
    const before = peers.map((p) => p.stats());
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const pcpu0 = peripherals.map((p) => procCpuS(p.child.pid!));
    await sleep(WINDOW_S * 1000);
    const cpu = process.cpuUsage(cpu0);
    const wallS = (performance.now() - t0) / 1000;
    const pcpu1 = peripherals.map((p) => procCpuS(p.child.pid!));
    for (const p of peers) await p.poll();
    const after = peers.map((p) => p.stats());
    const rssMb = process.memoryUsage().rss / 2 ** 20;
    const corePct = ((cpu.user + cpu.system) / 1e6 / wallS) * 100;
    console.log(
      `Core process CPU ${corePct.toFixed(1)} % of one core (user ${((cpu.user / 1e6 / wallS) * 100).toFixed(1)}, ` +
        `system ${((cpu.system / 1e6 / wallS) * 100).toFixed(1)}), RSS ${rssMb.toFixed(1)} MiB, load ${os.loadavg()[0]!.toFixed(1)}`,
    );
    console.log(
      'peripheral   cpu%   tx pkts/s  rx pkts/s  wire loss% (to/from)  playout loss% (window)  transit ms mean/p99  notSent core/periph',
    );
    const rows: Array<Record<string, unknown>> = [];
    for (const [i, a] of after.entries()) {
      const b: PeerStats = before[i]!;
      const pc = pcpu0[i] !== null && pcpu1[i] !== null ? ((pcpu1[i]! - pcpu0[i]!) / wallS) * 100 : null;
      const played = (s: PeerStats): number => s.rx.playedPackets + (s.tx.remote?.playedPackets ?? 0);
      const lostSlots = (s: PeerStats): number => s.rx.lost + (s.tx.remote?.lost ?? 0);
      const dPlayed = played(a) - played(b);
      const playoutPct = dPlayed > 0 ? (100 * (lostSlots(a) - lostSlots(b))) / dPlayed : 0;
      const row = {
        peripheral: a.peripheral,
        cpuPct: pc,
        txPerS: (a.txPackets - b.txPackets) / wallS,
        rxPerS: (a.rxPackets - b.rxPackets) / wallS,
        wireLossToPct: a.tx.wire?.lossPct ?? null,
        wireLossFromPct: a.rx.wire?.lossPct ?? null,
        playoutLossPct: playoutPct,
        transitMeanMs: a.latency.meanMs,
        transitP99Ms: a.latency.p99Ms,
        notSentCore: a.tx.wire?.notSent ?? 0,
        notSentPeripheral: a.rx.remoteSender?.notSent ?? 0,
      };
      rows.push(row);
      console.log(
        `${row.peripheral.padEnd(12)} ${fmt(pc, 1).padStart(5)}  ${fmt(row.txPerS, 0).padStart(9)}  ${fmt(row.rxPerS, 0).padStart(9)}  ` +
          `${fmt(row.wireLossToPct, 3).padStart(9)} / ${fmt(row.wireLossFromPct, 3).padEnd(9)}  ${fmt(playoutPct, 3).padStart(12)}            ` +
          `${fmt(row.transitMeanMs)} / ${fmt(row.transitP99Ms)}        ${row.notSentCore} / ${row.notSentPeripheral}`,
      );
    }
    console.log(
      JSON.stringify({
        bench: 'core-stream',
        peripherals: N,
        format: FORMAT,
        channels: CHANNELS,
        windowS: wallS,
        coreCpuPct: corePct,
        coreRssMiB: rssMb,
        load1: os.loadavg()[0],
        rows,
      }),
    );
  } finally {
    for (const p of peers) await p.stop().catch(() => undefined);
    for (const c of clients) await c.close().catch(() => undefined);
    await Promise.all(
      peripherals.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null) return resolve();
            p.child.once('exit', () => resolve());
            p.child.kill('SIGTERM');
            setTimeout(() => p.child.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);

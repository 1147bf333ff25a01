/**
 * Idle cost of one virtual peripheral (`node dist/bench/perf/idle.js`). Prints figures, asserts
 * nothing.
 *
 * Starts `qperiph start` on the virtual board (loopback 127.0.4.200, private ports and state
 * dir), waits for its `ready` log line, lets it settle, then samples its CPU time (utime + stime
 * from /proc/<pid>/stat) and RSS (VmRSS) over IDLE_BENCH_S seconds (default 20). With no audio
 * stream open this is the cost the drill pays per peripheral (up to 100 on 2 cores).
 *
 * Env: IDLE_BENCH_S (seconds measured), IDLE_BENCH_SETTLE_S (default 5), IDLE_BENCH_ADDRESS.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SECONDS = Number(process.env['IDLE_BENCH_S'] ?? 20);
const SETTLE_S = Number(process.env['IDLE_BENCH_SETTLE_S'] ?? 5);
const ADDRESS = process.env['IDLE_BENCH_ADDRESS'] ?? '127.0.4.200';
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const TICK_HZ = 100; // USER_HZ on Linux

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function threads(pid: number): number {
  const m = /Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
  const state = mkdtempSync(join(tmpdir(), 'qperiph-idle-'));
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'dist', 'firmware', 'cli.js'),
      'start',
      '--board',
      join(ROOT, 'board-configs', 'virtual.json'),
      '--state-dir',
      state,
      '--address',
      ADDRESS,
      '--control-port',
      '21700',
      '--http-port',
      '28080',
      '--https-port',
      '28443',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, QPERIPH_LOG_LEVEL: 'warn' } },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (/"msg":"ready"|"event":"ready"|\bready\b/.test(l)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`qperiph exited ${code}: ${stderr}`)));
    setTimeout(() => reject(new Error('no ready line in 30 s')), 30_000).unref();
  });
  try {
    await ready;
    await sleep(SETTLE_S * 1000);
    const pid = child.pid!;
    const c0 = cpuTicks(pid);
    const t0 = performance.now();
    const rss: number[] = [];
    for (let i = 0; i < SECONDS; i++) {
      await sleep(1000);
      rss.push(rssKb(pid));
    }
    const c1 = cpuTicks(pid);
    const wall = (performance.now() - t0) / 1000;
    const cpuPct = ((c1 - c0) / TICK_HZ / wall) * 100;
    process.stdout.write(
      `idle qperiph start (virtual board, no streams), ${wall.toFixed(1)} s:\n` +
        `  CPU ${cpuPct.toFixed(2)} % of one core (${c1 - c0} ticks)\n` +
        `  RSS ${(rss[rss.length - 1]! / 1024).toFixed(1)} MiB (max ${(Math.max(...rss) / 1024).toFixed(1)} MiB)\n` +
        `  threads ${threads(pid)}\n` +
        `  => 100 peripherals: ~${((cpuPct * 100) / 100).toFixed(1)} cores, ~${((rss[rss.length - 1]! * 100) / 1024 / 1024).toFixed(1)} GiB\n`,
    );
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(state, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`);
  process.exit(1);
});

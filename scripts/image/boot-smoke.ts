/**
 * Opt-in boot smoke test of a built image: qemu-system-aarch64's `virt`
 * machine boots the card (a throw-away snapshot of it, as a virtio disk) with
 * the kernel and initrd from the image's own boot partition and the slot-A
 * root of its cmdline.txt; success is systemd reporting qperiph.service
 * started, which for a Type=notify unit means the runtime sent READY=1.
 *
 * Only the arm64 cards (Raspberry Pi layout) can run here. The guest gets a
 * user-mode NIC with `restrict=on`: it can reach neither the host nor any
 * network. Under TCG (no /dev/kvm) a boot takes minutes.
 */
import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BoardConfig } from '../../firmware/config/board-types.js';
import type { Logger } from '../../firmware/log/logger.js';
import { silentLogger } from '../../firmware/log/logger.js';
import { freeLoopbackPort, judgeManagerProbe, probeManager, type ManagerProbe } from './boot-probe.js';
import { ImageError } from './errors.js';
import { imageProfile } from './layout.js';

const exec = promisify(execFile);

export type BootPhase = 'firmware' | 'kernel' | 'init' | 'ready' | 'failed';

export interface BootProgress {
  phase: BootPhase;
  /** For 'failed': the console line that says why. */
  reason?: string;
}

/** A console line without its colour escapes (ESC [ ... letter). Pure. */
export function stripAnsi(line: string): string {
  return line.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, 'g'), '');
}

/**
 * One step of the console watcher (pure): the next phase after a console line.
 * `ready` and `failed` are final.
 */
export function nextBootPhase(p: BootProgress, line: string): BootProgress {
  if (p.phase === 'ready' || p.phase === 'failed') return p;
  const l = stripAnsi(line).trim();
  if (/Kernel panic|VFS: Unable to mount root|Gave up waiting for root|ALERT! .* does not exist/.test(l))
    return { phase: 'failed', reason: l };
  if (
    /Failed to start .*(qperiph\.service|qperiph runtime|Q-SYS peripheral)/i.test(l) ||
    /qperiph\.service: Failed/.test(l)
  )
    return { phase: 'failed', reason: l };
  // Type=notify: systemd prints "Started" only once the service sent READY=1.
  if (
    /Started (qperiph\.service|.*qperiph.* runtime|.*Q-SYS peripheral)/i.test(l) ||
    /\bqperiph\.service: READY=1\b/.test(l)
  )
    return { phase: 'ready' };
  if (p.phase !== 'init' && /systemd\[1\]|Welcome to|Run \/init as init process|run-init/.test(l))
    return { phase: 'init' };
  if (p.phase === 'firmware' && /Booting Linux|Linux version/.test(l)) return { phase: 'kernel' };
  return p;
}

/**
 * The Pi cmdline.txt turned into a `virt` one: the PL011 console instead of the Pi's, and the
 * journal forwarded to it so that a failing unit's own output shows in the boot log. Pure.
 */
export function virtCmdline(piCmdline: string): string {
  const kept = piCmdline
    .trim()
    .split(/\s+/)
    .filter((w) => w && !w.startsWith('console='));
  return [
    ...kept,
    'console=ttyAMA0',
    'panic=-1',
    'systemd.show_status=1',
    'systemd.journald.forward_to_console=1',
  ].join(' ');
}

/** qemu-system-aarch64 arguments (pure). The disk is opened with snapshot=on: the card is never written. */
export function qemuArgs(o: {
  kernel: string;
  initrd?: string;
  disk: string;
  append: string;
  memMiB?: number;
  cpus?: number;
  /** Host loopback ports forwarded to the guest's 443 and 80 (the Peripheral Manager). */
  forward?: { https: number; http: number };
}): string[] {
  const fwd = o.forward
    ? `,hostfwd=tcp:127.0.0.1:${o.forward.https}-:443,hostfwd=tcp:127.0.0.1:${o.forward.http}-:80`
    : '';
  return [
    '-M',
    'virt',
    '-cpu',
    'cortex-a72',
    '-smp',
    String(o.cpus ?? 2),
    '-m',
    String(o.memMiB ?? 1024),
    '-nographic',
    '-no-reboot',
    '-kernel',
    o.kernel,
    ...(o.initrd ? ['-initrd', o.initrd] : []),
    '-append',
    o.append,
    '-drive',
    `file=${o.disk},if=virtio,format=raw,snapshot=on`,
    '-netdev',
    `user,id=n0,restrict=on${fwd}`,
    '-device',
    'virtio-net-pci,netdev=n0,romfile=',
    '-device',
    'i6300esb',
  ];
}

export interface BootSmokeOptions {
  /** The build's output dir (the card image and boot.vfat). */
  outDir: string;
  board: Readonly<BoardConfig>;
  timeoutMs: number;
  qemu?: string;
  logger?: Logger;
}

export interface BootSmokeResult {
  ready: boolean;
  phase: BootPhase;
  reason?: string;
  ms: number;
  /** The last console lines (for the report). */
  tail: string[];
  /** What the Peripheral Manager answered through the port forwards after READY=1. */
  manager?: ManagerProbe;
}

export async function bootSmoke(o: BootSmokeOptions): Promise<BootSmokeResult> {
  const log = o.logger ?? silentLogger;
  const profile = imageProfile(o.board);
  if (profile.arch !== 'arm64' || profile.kind !== 'rpi-ab-gpt')
    throw new ImageError(
      'IMAGE_ERR_BOOT_SMOKE',
      `boot smoke runs arm64 Pi-layout cards only (board ${o.board.id} is ${profile.arch}/${profile.kind})`,
    );
  const names = await readdir(o.outDir).catch(() => [] as string[]);
  const card = names.find((n) => n.endsWith('.img'));
  if (!card || !names.includes('boot.vfat'))
    throw new ImageError('IMAGE_ERR_BOOT_SMOKE', `${o.outDir} holds no built card (*.img, boot.vfat)`);
  const work = await mkdtemp(join(tmpdir(), 'qperiph-boot-'));
  try {
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    const vfat = join(o.outDir, 'boot.vfat');
    const get = async (name: string): Promise<string> => {
      const dst = join(work, name);
      try {
        await exec('mcopy', ['-n', '-i', vfat, `::${name}`, dst], { env });
      } catch (err) {
        throw new ImageError(
          'IMAGE_ERR_BOOT_SMOKE',
          `boot.vfat has no ${name} (a synthetic base does not boot)`,
          {
            cause: err,
          },
        );
      }
      return dst;
    };
    const kernel = await get('vmlinuz');
    const initrd = await get('initrd.img');
    const cmdline = await exec('mtype', ['-i', vfat, '::cmdline.txt'], { env }).then((r) => r.stdout);
    const append = virtCmdline(cmdline);
    const forward = { https: await freeLoopbackPort(), http: await freeLoopbackPort() };
    const args = qemuArgs({
      kernel,
      initrd,
      disk: join(o.outDir, card),
      append,
      forward,
    });
    let manager: ManagerProbe | undefined;
    const afterReady = async (): Promise<string | null> => {
      try {
        manager = await probeManager(forward, 120_000);
      } catch (err) {
        return `READY=1, but the Peripheral Manager did not answer: ${(err as Error).message}`;
      }
      log.info('boot_smoke', { step: 'manager', ...manager });
      return judgeManagerProbe(manager);
    };
    log.info('boot_smoke', {
      step: 'start',
      qemu: o.qemu ?? 'qemu-system-aarch64',
      append,
    });
    const consoleLog = join(o.outDir, 'boot-console.log');
    const r = await watchBoot(
      o.qemu ?? 'qemu-system-aarch64',
      args,
      o.timeoutMs,
      log,
      consoleLog,
      afterReady,
    );
    log.info('boot_smoke', { step: 'console', file: consoleLog });
    return manager ? { ...r, manager } : r;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Run qemu, feed its console to nextBootPhase, stop it at the first final phase or the timeout. */
export function watchBoot(
  cmd: string,
  args: string[],
  timeoutMs: number,
  log: Logger,
  consoleLog?: string,
  /** Run once READY=1 is seen, qemu still running: an error reason, or null for a pass. */
  afterReady?: () => Promise<string | null>,
): Promise<BootSmokeResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // The whole console, for the cases the tail does not explain.
    const file = consoleLog ? createWriteStream(consoleLog) : undefined;
    child.on('close', () => file?.end());
    let p: BootProgress = { phase: 'firmware' };
    const tail: string[] = [];
    let buf = '';
    let done = false;
    const finish = (r: Omit<BootSmokeResult, 'ms' | 'tail'>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ ...r, ms: Math.round(performance.now() - t0), tail: tail.slice(-40) });
    };
    const timer = setTimeout(
      () =>
        finish({
          ready: false,
          phase: p.phase,
          reason: `no READY within ${timeoutMs} ms (last phase: ${p.phase})`,
        }),
      timeoutMs,
    );
    const onData = (d: Buffer): void => {
      file?.write(d);
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.search(/\r?\n/)) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + (buf[i] === '\r' ? 2 : 1));
        tail.push(line);
        if (tail.length > 200) tail.shift();
        const before = p.phase;
        p = nextBootPhase(p, line);
        if (p.phase !== before)
          log.info('boot_smoke', { phase: p.phase, ms: Math.round(performance.now() - t0) });
        if (p.phase === 'ready' && before !== 'ready') {
          // The Manager check runs with qemu still up; its answer (or the timeout) ends the run.
          if (afterReady)
            void afterReady().then((bad) =>
              finish(bad ? { ready: false, phase: 'failed', reason: bad } : { ready: true, phase: 'ready' }),
            );
          else finish({ ready: true, phase: 'ready' });
        } else if (p.phase === 'failed') finish({ ready: false, phase: 'failed', reason: p.reason });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(
        new ImageError('IMAGE_ERR_TOOL_MISSING', `${cmd}: ${err.message} (apt-get install qemu-system-arm)`, {
          cause: err,
        }),
      );
    });
    child.on('exit', (code) =>
      finish({
        ready: false,
        phase: p.phase,
        reason: `qemu exited (${code ?? 'signal'}) in phase ${p.phase}`,
      }),
    );
  });
}

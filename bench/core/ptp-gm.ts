/**
 * PtpGrandmaster: ptp4l as the emulated Core's PTP grandmaster, with the vendor's Core priorities
 * (priority1 254, priority2 100: above peripherals at 255/255, below a dedicated grandmaster) and
 * the AES67 media profile of firmware/audio/ptp.ts (the same config generator, the same
 * supervision and pmc polling through Ptp4lClock). Software timestamping on the interface given
 * (`lo` works for tests; put it in a private network namespace with `commandPrefix`).
 *
 * When ptp4l or pmc is missing, `start()` does not throw: the status says `available: false` and
 * why, and the Core carries on with a free-running clock.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { LockState, MediaClock, MediaClockStatus } from '../../firmware/audio/media-clock.js';
import { parsePmc, ptp4lConfig, Ptp4lClock } from '../../firmware/audio/ptp.js';
import { silentLogger, type Logger } from '../../firmware/log/logger.js';
import { CoreAudioError } from './audio/errors.js';

export { CoreAudioError } from './audio/errors.js';

/** The vendor's Cores: priority1 254, priority2 100. */
export const CORE_PRIORITY1 = 254;
export const CORE_PRIORITY2 = 100;

export interface PtpAvailability {
  available: boolean;
  ptp4l: string | null;
  pmc: string | null;
  /** Why not, for people (null when available). */
  reason: string | null;
}

/** Find ptp4l and pmc on PATH (plus /usr/sbin and /sbin, where Debian puts them). */
export function ptpAvailability(
  pathEnv = process.env['PATH'] ?? '',
  exists: (p: string) => boolean = existsSync,
): PtpAvailability {
  const dirs = [...pathEnv.split(':').filter(Boolean), '/usr/sbin', '/sbin'];
  const find = (bin: string): string | null => {
    for (const d of dirs) {
      const p = path.join(d, bin);
      if (exists(p)) return p;
    }
    return null;
  };
  const ptp4l = find('ptp4l');
  const pmc = find('pmc');
  const missing = [...(ptp4l ? [] : ['ptp4l']), ...(pmc ? [] : ['pmc'])];
  return {
    available: missing.length === 0,
    ptp4l,
    pmc,
    reason: missing.length ? `${missing.join(' and ')} not installed (apt-get install linuxptp)` : null,
  };
}

export interface CoreGmConfigOptions {
  interface: string;
  udsPath: string;
  /** PTP domainNumber 0..127 (AES67 and Q-SYS: 0). */
  domain?: number;
  priority1?: number;
  priority2?: number;
  /** masterOnly 1: never become a slave. Default false: BMCA decides, as on the vendor's Cores. */
  masterOnly?: boolean;
  /**
   * free_running 1: never adjust this machine's clock, even as a slave to a better grandmaster.
   * Default true (a bench shares the host clock with everything else).
   */
  freeRunning?: boolean;
}

function checkByte(v: number, what: string, max = 255): void {
  if (!Number.isInteger(v) || v < 0 || v > max)
    throw new CoreAudioError('CORE_AUDIO_ERR_BAD_OPTIONS', `${what} ${v} out of 0..${max}`);
}

/** ptp4l config text for a Core grandmaster (AES67 media profile, software timestamps). */
export function coreGmConfig(o: CoreGmConfigOptions): string {
  const domain = o.domain ?? 0;
  const priority1 = o.priority1 ?? CORE_PRIORITY1;
  const priority2 = o.priority2 ?? CORE_PRIORITY2;
  checkByte(domain, 'domain', 127);
  checkByte(priority1, 'priority1');
  checkByte(priority2, 'priority2');
  if (typeof o.interface !== 'string' || !/^[A-Za-z0-9_.:@-]{1,15}$/.test(o.interface))
    throw new CoreAudioError('CORE_AUDIO_ERR_BAD_OPTIONS', `interface ${String(o.interface)}`);
  return ptp4lConfig({
    ptp: { timestamping: 'software', domain, priority1, priority2 },
    interface: o.interface,
    udsPath: o.udsPath,
    freeRunning: o.freeRunning ?? true,
    role: o.masterOnly ? 'master' : 'auto',
  });
}

export interface PtpGrandmasterOptions extends Omit<CoreGmConfigOptions, 'udsPath'> {
  /** Directory for ptp4l.conf and the management socket. */
  dir: string;
  logger?: Logger;
  /** e.g. ['ip', 'netns', 'exec', 'ns1'] (tests). */
  commandPrefix?: string[];
  pollMs?: number;
  /** Override the lookup (tests: a missing binary). */
  availability?: PtpAvailability;
}

export interface GrandmasterStatus {
  available: boolean;
  /** Why not available (null when it is). */
  reason: string | null;
  running: boolean;
  /** `master` once this ptp4l's port is MASTER (we are the grandmaster). */
  state: LockState;
  portState: string | null;
  /** Grandmaster identity as SDP writes it (ours when we are the grandmaster). */
  grandmaster: string | null;
  isGrandmaster: boolean;
  domain: number;
  priority1: number;
  priority2: number;
  detail: string;
}

export class PtpGrandmaster {
  readonly availability: PtpAvailability;
  readonly configText: string;
  readonly udsPath: string;
  readonly configPath: string;
  private clock: Ptp4lClock | null = null;
  private readonly domain: number;
  private readonly priority1: number;
  private readonly priority2: number;

  constructor(private readonly o: PtpGrandmasterOptions) {
    this.availability = o.availability ?? ptpAvailability();
    this.udsPath = path.join(o.dir, 'ptp4l-gm.sock');
    this.configPath = path.join(o.dir, 'ptp4l-gm.conf');
    this.configText = coreGmConfig({ ...o, udsPath: this.udsPath });
    this.domain = o.domain ?? 0;
    this.priority1 = o.priority1 ?? CORE_PRIORITY1;
    this.priority2 = o.priority2 ?? CORE_PRIORITY2;
  }

  /** Start and supervise ptp4l. Without linuxptp: resolves, status().available is false. */
  async start(): Promise<GrandmasterStatus> {
    if (this.clock) throw new CoreAudioError('CORE_AUDIO_ERR_STATE', 'grandmaster already started');
    const log = (this.o.logger ?? silentLogger).child({ module: 'core-ptp' });
    if (!this.availability.available) {
      log.warn('core_ptp_unavailable', { reason: this.availability.reason });
      return this.status();
    }
    await mkdir(this.o.dir, { recursive: true });
    this.clock = new Ptp4lClock({
      ptp: {
        timestamping: 'software',
        domain: this.domain,
        priority1: this.priority1,
        priority2: this.priority2,
      },
      interface: this.o.interface,
      udsPath: this.udsPath,
      configPath: this.configPath,
      freeRunning: this.o.freeRunning ?? true,
      role: this.o.masterOnly ? 'master' : 'auto',
      logger: log,
      ptp4lPath: this.availability.ptp4l!,
      pmcPath: this.availability.pmc!,
      pollMs: this.o.pollMs ?? 1000,
      ...(this.o.commandPrefix ? { commandPrefix: this.o.commandPrefix } : {}),
    });
    await this.clock.start();
    log.info('core_ptp_started', { interface: this.o.interface, domain: this.domain });
    return this.status();
  }

  /** The media clock for the Core's audio (ptp4l's view), or null when ptp4l is not running. */
  get mediaClock(): MediaClock | null {
    return this.clock;
  }

  status(): GrandmasterStatus {
    const base = {
      available: this.availability.available,
      reason: this.availability.reason,
      domain: this.domain,
      priority1: this.priority1,
      priority2: this.priority2,
    };
    if (!this.clock)
      return {
        ...base,
        running: false,
        state: 'unlocked',
        portState: null,
        grandmaster: null,
        isGrandmaster: false,
        detail: this.availability.reason ?? 'not started',
      };
    const s: MediaClockStatus = this.clock.status();
    return {
      ...base,
      running: true,
      state: s.state,
      portState: s.portState,
      grandmaster: s.grandmaster,
      isGrandmaster: s.state === 'master',
      detail: s.detail,
    };
  }

  /** Resolve true once we are the grandmaster, false after `timeoutMs`. */
  async waitForGrandmaster(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (this.status().isGrandmaster) return true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return this.status().isGrandmaster;
  }

  /** Ask ptp4l for a data set (e.g. DEFAULT_DATA_SET: priority1/2, clockIdentity) through pmc. */
  async query(dataSet: string): Promise<Record<string, string> | null> {
    if (!this.clock) throw new CoreAudioError('CORE_AUDIO_ERR_STATE', 'grandmaster not running');
    if (!/^[A-Z_]{3,40}$/.test(dataSet))
      throw new CoreAudioError('CORE_AUDIO_ERR_BAD_OPTIONS', `data set ${dataSet}`);
    const pmcArgs = ['-u', '-b', '0', '-d', String(this.domain), '-s', this.udsPath, `GET ${dataSet}`];
    const pre = this.o.commandPrefix ?? [];
    const [cmd, args] = pre.length
      ? [pre[0]!, [...pre.slice(1), this.availability.pmc!, ...pmcArgs]]
      : [this.availability.pmc!, pmcArgs];
    const text = await new Promise<string>((resolve, reject) => {
      const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => c.kill('SIGKILL'), 3000);
      c.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      c.on('exit', () => {
        clearTimeout(timer);
        resolve(out);
      });
    });
    return parsePmc(text)[dataSet] ?? null;
  }

  async close(): Promise<void> {
    const c = this.clock;
    this.clock = null;
    await c?.close();
  }
}

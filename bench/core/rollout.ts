/**
 * The Core's firmware rollout (contract C): push a signed bundle to many
 * devices (POST /api/v1/core/firmware, or ask them to fetch it by URL), watch
 * each one through GET /api/v1/core/firmware until it committed, rolled back
 * or refused, under a policy (all at once, or canary then waves with an
 * optional halt on the first failure). Every device transition is appended to
 * a journal so a backup coordinator resumes after the primary dies.
 *
 * Pure parts (wave planning, status classification) are exported and tested
 * with fakes; the HTTPS client is the `DeviceApi` seam.
 */
import { EventEmitter } from 'node:events';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import { dirname } from 'node:path';
import type { Logger } from '../../firmware/log/logger.js';
import { BundleFile, readBundleHead } from '../../firmware/update/bundle.js';

export type RolloutPolicy =
  | { kind: 'all-at-once'; maxInFlight: number }
  | { kind: 'canary-waves'; canary: number; waveSize: number; maxInFlight: number; haltOnFailure: boolean };

export interface RolloutTarget {
  id: string;
  /** https://127.0.0.N:8443 */
  httpsUrl: string;
}

export type DeviceState =
  'pending' | 'pushing' | 'installing' | 'committed' | 'rolled-back' | 'refused' | 'failed' | 'timeout';

export interface DeviceResult {
  id: string;
  state: DeviceState;
  version: string | null;
  reason?: string;
  events: Array<{ atMs: number; state: string; detail?: string }>;
}

/** GET /api/v1/core/firmware (contract A). */
export interface DeviceFirmwareStatus {
  version: string;
  bootedSlot: string;
  primarySlot: string;
  phase: string;
  securityVersion: number;
  last: {
    result: 'committed' | 'rolled-back' | 'failed' | 'refused';
    version: string | null;
    manifestDigest: string | null;
    code?: string;
    reason?: string;
    atMs: number;
  } | null;
  healthy: boolean;
}

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** The seam between the rollout and the devices. */
export interface DeviceApi {
  push(target: RolloutTarget, bundlePath: string): Promise<ApiAnswer>;
  fetch(target: RolloutTarget, url: string): Promise<ApiAnswer>;
  status(target: RolloutTarget): Promise<DeviceFirmwareStatus>;
}

/** SHA-256 of a bundle's manifest bytes (what device outcomes name it by). */
export async function bundleDigest(path: string): Promise<string> {
  const f = await BundleFile.open(path);
  try {
    return (await readBundleHead(f)).manifestDigest;
  } finally {
    await f.close();
  }
}

export const TERMINAL: ReadonlySet<DeviceState> = new Set([
  'committed',
  'rolled-back',
  'refused',
  'failed',
  'timeout',
]);
const FAILURE: ReadonlySet<DeviceState> = new Set(['rolled-back', 'refused', 'failed', 'timeout']);

/** Waves of target indices: one wave for all-at-once; canary, then waves of `waveSize`. */
export function planWaves(policy: RolloutPolicy, count: number): number[][] {
  const idx = Array.from({ length: count }, (_, i) => i);
  if (policy.kind === 'all-at-once') return count ? [idx] : [];
  const waves: number[][] = [];
  const canary = Math.max(0, Math.min(policy.canary, count));
  if (canary > 0) waves.push(idx.slice(0, canary));
  const size = Math.max(1, policy.waveSize);
  for (let i = canary; i < count; i += size) waves.push(idx.slice(i, i + size));
  return waves;
}

export interface PlanStep {
  /** Indices to start now. */
  start: number[];
  /** A failure halted the rollout: nothing after the current wave starts. */
  halted: boolean;
  /** Every device that will ever run has finished. */
  done: boolean;
}

/** Pure: given the states (by index), which devices start now. */
export function planNext(policy: RolloutPolicy, states: readonly DeviceState[]): PlanStep {
  const waves = planWaves(policy, states.length);
  const halt = policy.kind === 'canary-waves' && policy.haltOnFailure;
  const inFlight = states.filter((s) => s === 'pushing' || s === 'installing').length;
  let room = Math.max(1, policy.maxInFlight) - inFlight;
  for (const wave of waves) {
    const finished = wave.every((i) => TERMINAL.has(states[i] as DeviceState));
    if (finished) {
      if (halt && wave.some((i) => FAILURE.has(states[i] as DeviceState)))
        return { start: [], halted: true, done: inFlight === 0 };
      continue;
    }
    const start: number[] = [];
    for (const i of wave) {
      if (room <= 0) break;
      if (states[i] === 'pending') {
        start.push(i);
        room--;
      }
    }
    return { start, halted: false, done: false };
  }
  return { start: [], halted: false, done: true };
}

export type Verdict =
  | { kind: 'wait'; detail?: string }
  | {
      kind: 'final';
      state: 'committed' | 'rolled-back' | 'failed' | 'refused';
      version: string;
      reason?: string;
    }
  | { kind: 'idle' };

/**
 * Pure: what a device status means for a bundle (named by its manifest digest).
 * 'idle' = nothing about this bundle yet and no job running (push it, or wait).
 */
export function classifyStatus(s: DeviceFirmwareStatus, expectVersion: string, digest: string): Verdict {
  if (s.phase !== 'idle') return { kind: 'wait', detail: s.phase };
  // Running a slot that is not the primary: a trial boot whose journal is not resumed yet.
  if (s.bootedSlot !== s.primarySlot) return { kind: 'wait', detail: 'trial' };
  const last = s.last;
  if (last && last.manifestDigest === digest) {
    if (last.result === 'committed' && s.version === expectVersion)
      return { kind: 'final', state: 'committed', version: s.version };
    if (last.result === 'committed')
      return {
        kind: 'final',
        state: 'failed',
        version: s.version,
        reason: `committed but runs ${s.version}`,
      };
    return {
      kind: 'final',
      state: last.result,
      version: s.version,
      ...(last.code || last.reason ? { reason: [last.code, last.reason].filter(Boolean).join(': ') } : {}),
    };
  }
  if (s.version === expectVersion && s.bootedSlot === s.primarySlot)
    return { kind: 'final', state: 'committed', version: s.version };
  return { kind: 'idle' };
}

interface JournalLine {
  id: string;
  state: DeviceState;
  version: string | null;
  reason?: string;
  atMs: number;
  digest: string;
}

/** Read a journal: the last line per device for this bundle digest. */
export async function readJournal(file: string, digest: string): Promise<Map<string, JournalLine>> {
  const out = new Map<string, JournalLine>();
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const j = JSON.parse(line) as JournalLine;
      if (j.digest === digest && typeof j.id === 'string') out.set(j.id, j);
    } catch {
      // A line torn by a kill is ignored.
    }
  }
  return out;
}

export interface RolloutOptions {
  bundle: string;
  expectVersion: string;
  targets: RolloutTarget[];
  policy: RolloutPolicy;
  clientTls: { cert: string; key: string };
  /** Resume after failover. */
  journalFile?: string;
  /** Per device: from its push to its final state. */
  timeoutMs: number;
  logger: Logger;
  /** Let devices download the bundle from this URL instead of pushing it. */
  fetchUrl?: (t: RolloutTarget) => string;
  /** Device API seam (default: HTTPS with the client certificate). */
  api?: DeviceApi;
  pollMs?: number;
  /** How long a device may stay idle after a fetch request before it is asked again (resume). */
  refetchAfterMs?: number;
  /** Deliveries (push or fetch requests) per device before it is marked failed. Default 6. */
  maxDeliveries?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export class Rollout extends EventEmitter {
  private readonly results: DeviceResult[];
  private stopped = false;
  private readonly api: DeviceApi;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private digest = '';

  constructor(private readonly o: RolloutOptions) {
    super();
    this.api = o.api ?? new HttpsDeviceApi(o.clientTls);
    this.now = o.now ?? Date.now;
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.results = o.targets.map((t) => ({ id: t.id, state: 'pending', version: null, events: [] }));
  }

  stop(): void {
    this.stopped = true;
  }

  get snapshot(): DeviceResult[] {
    return this.results.map((r) => ({ ...r, events: [...r.events] }));
  }

  private async set(i: number, state: DeviceState, version: string | null, reason?: string): Promise<void> {
    const r = this.results[i] as DeviceResult;
    r.state = state;
    r.version = version;
    if (reason !== undefined) r.reason = reason;
    r.events.push({ atMs: this.now(), state, ...(reason !== undefined ? { detail: reason } : {}) });
    if (this.o.journalFile) {
      const line: JournalLine = {
        id: r.id,
        state,
        version,
        atMs: this.now(),
        digest: this.digest,
        ...(reason !== undefined ? { reason } : {}),
      };
      await appendFile(this.o.journalFile, JSON.stringify(line) + '\n');
    }
    this.o.logger.info('rollout.device', { id: r.id, state, version, reason });
    this.emit('progress', { ...r, events: [...r.events] });
  }

  async run(): Promise<DeviceResult[]> {
    try {
      return await this.runAll();
    } finally {
      if (this.api instanceof HttpsDeviceApi) this.api.close();
    }
  }

  private async runAll(): Promise<DeviceResult[]> {
    this.digest = await bundleDigest(this.o.bundle);
    const resumed = new Set<number>();
    if (this.o.journalFile) {
      await mkdir(dirname(this.o.journalFile), { recursive: true });
      const j = await readJournal(this.o.journalFile, this.digest);
      this.results.forEach((r, i) => {
        const line = j.get(r.id);
        if (!line) return;
        r.state = line.state;
        r.version = line.version;
        if (line.reason) r.reason = line.reason;
        r.events.push({ atMs: this.now(), state: line.state, detail: 'from journal' });
        // An unfinished device is watched again; its push may have happened already.
        if (!TERMINAL.has(line.state)) {
          r.state = 'pending';
          resumed.add(i);
        }
      });
      this.o.logger.info('rollout.resumed', { devices: j.size, unfinished: resumed.size });
    }
    const running = new Map<number, Promise<void>>();
    for (;;) {
      const plan = planNext(
        this.o.policy,
        this.results.map((r) => r.state),
      );
      if (plan.done || this.stopped) break;
      if (plan.halted && running.size === 0) break;
      for (const i of plan.start) {
        this.results[i]!.state = 'pushing';
        const p = this.drive(i, resumed.has(i)).catch(async (err: unknown) => {
          await this.set(i, 'failed', this.results[i]!.version, (err as Error).message);
        });
        running.set(
          i,
          p.finally(() => running.delete(i)),
        );
      }
      if (running.size === 0 && plan.start.length === 0) break;
      await Promise.race(running.values());
    }
    await Promise.all(running.values());
    if (
      this.stopped ||
      planNext(
        this.o.policy,
        this.results.map((r) => r.state),
      ).halted
    ) {
      for (const r of this.results)
        if (r.state === 'pending') {
          r.reason = this.stopped ? 'rollout stopped' : 'rollout halted after a failure';
          r.events.push({ atMs: this.now(), state: 'pending', detail: r.reason });
        }
    }
    return this.snapshot;
  }

  private async drive(i: number, resumed: boolean): Promise<void> {
    // The deadline runs per device, from when it starts: large fleets in waves are not cut short.
    const deadline = this.now() + this.o.timeoutMs;
    const t = this.o.targets[i] as RolloutTarget;
    const poll = this.o.pollMs ?? 250;
    await this.set(i, 'pushing', null, resumed ? 'resumed from journal' : undefined);
    // A resumed device may have the bundle already: look before pushing again.
    let requestedAt = 0;
    let lastVersion: string | null = null;
    const deliver = async (): Promise<'sent' | 'final'> => {
      requestedAt = this.now();
      try {
        const url = this.o.fetchUrl?.(t);
        const a = url ? await this.api.fetch(t, url) : await this.api.push(t, this.o.bundle);
        if (a.status === 202 || a.status === 200) return 'sent';
        const code = typeof a.body['code'] === 'string' ? a.body['code'] : `HTTP ${a.status}`;
        if (code === 'UPDATE_ERR_BUSY') return 'sent';
        if (code === 'UPDATE_ERR_REPLAY') {
          // The device has seen this bundle: its outcome should follow; twice means it was lost.
          if (attempts <= 1) return 'sent';
          await this.set(
            i,
            'failed',
            lastVersion,
            'the device had this bundle already and its outcome was lost',
          );
          return 'final';
        }
        const msg = typeof a.body['message'] === 'string' ? `${code}: ${a.body['message']}` : code;
        await this.set(i, 'refused', lastVersion, msg);
        return 'final';
      } catch (err) {
        // The device died or restarted during the request: watch its status.
        this.o.logger.warn('rollout.deliver-error', { id: t.id, err });
        return 'sent';
      }
    };
    let attempts = 0;
    let idleSince: number | null = null;
    const maxAttempts = this.o.maxDeliveries ?? 6;
    while (!this.stopped) {
      if (this.now() > deadline) {
        await this.set(i, 'timeout', lastVersion, 'no final status before the rollout deadline');
        return;
      }
      let st: DeviceFirmwareStatus | null;
      try {
        st = await this.api.status(t);
        lastVersion = st.version;
      } catch {
        st = null;
        idleSince = null;
      }
      if (st) {
        const v = classifyStatus(st, this.o.expectVersion, this.digest);
        if (v.kind !== 'idle') idleSince = null;
        if (v.kind === 'final') {
          await this.set(i, v.state, v.version, v.reason);
          return;
        }
        const r = this.results[i] as DeviceResult;
        if (v.kind === 'wait' && (r.state !== 'installing' || r.events.at(-1)?.detail !== v.detail)) {
          await this.set(i, 'installing', st.version, v.detail);
        } else if (v.kind === 'idle') {
          // A fetch-delivered bundle refused by the device shows up as a fresh refused outcome.
          if (
            this.o.fetchUrl &&
            attempts > 0 &&
            st.last?.result === 'refused' &&
            st.last.atMs >= requestedAt
          ) {
            await this.set(
              i,
              'refused',
              st.version,
              [st.last.code, st.last.reason].filter(Boolean).join(': '),
            );
            return;
          }
          // Deliver again only after the device stayed idle (answering, no job, no outcome for
          // this bundle) for a while: a device that just rebooted may not have resumed its journal yet.
          const again = this.o.refetchAfterMs ?? 4000;
          idleSince ??= this.now();
          const patient = attempts > 0 || resumed;
          if (!patient || (this.now() - requestedAt > again && this.now() - idleSince > again)) {
            if (attempts >= maxAttempts) {
              await this.set(i, 'failed', st.version, `no install after ${attempts} deliveries`);
              return;
            }
            attempts++;
            if ((await deliver()) === 'final') return;
            await this.set(
              i,
              'installing',
              st.version,
              `${this.o.fetchUrl ? 'fetch requested' : 'pushed'} (attempt ${attempts})`,
            );
            continue;
          }
        }
      }
      await this.sleep(poll);
    }
  }
}

/** The real seam: HTTPS with the Core's client certificate; devices are identified by pin, not by CA. */
export class HttpsDeviceApi implements DeviceApi {
  /**
   * Status polls reuse one kept-alive connection per device: a fresh TLS handshake costs about
   * 8 ms of CPU (both sides) against 1.6 ms for a request on an open connection, and a rollout
   * polls every device in flight several times a second. Pushes and fetches take a fresh
   * connection, so a device that rebooted never sees a bundle on a stale socket. Idle pooled
   * sockets do not keep the process alive.
   */
  private readonly pollAgent = new Agent({ keepAlive: true, maxSockets: 1, keepAliveMsecs: 1000 });

  constructor(
    private readonly tls: { cert: string; key: string },
    private readonly timeoutMs = 30_000,
  ) {}

  /** Drop the pooled connections. */
  close(): void {
    this.pollAgent.destroy();
  }

  private call(
    t: RolloutTarget,
    method: string,
    path: string,
    body?: Buffer,
    type?: string,
    reuse = false,
  ): Promise<ApiAnswer> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        new URL(path, t.httpsUrl),
        {
          method,
          cert: this.tls.cert,
          key: this.tls.key,
          rejectUnauthorized: false,
          timeout: this.timeoutMs,
          agent: reuse ? this.pollAgent : false,
          headers: body
            ? { 'content-type': type ?? 'application/octet-stream', 'content-length': body.length }
            : {},
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => {
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
            } catch {
              parsed = {};
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  async push(t: RolloutTarget, bundlePath: string): Promise<ApiAnswer> {
    return this.call(t, 'POST', '/api/v1/core/firmware', await readFile(bundlePath));
  }

  fetch(t: RolloutTarget, url: string): Promise<ApiAnswer> {
    return this.call(
      t,
      'POST',
      '/api/v1/core/firmware/fetch',
      Buffer.from(JSON.stringify({ url })),
      'application/json',
    );
  }

  async status(t: RolloutTarget): Promise<DeviceFirmwareStatus> {
    const a = await this.call(t, 'GET', '/api/v1/core/firmware', undefined, undefined, true);
    if (a.status !== 200) throw new Error(`status HTTP ${a.status}`);
    return a.body as unknown as DeviceFirmwareStatus;
  }
}

/**
 * The installer: verify everything first (a refusal changes nothing), then
 * write verified chunks to the inactive slot, read it back, arm a one-shot
 * trial boot, and commit only after the booted system reports healthy within
 * a deadline. Every step is recorded in the update journal (atomic, fsync'd)
 * so that `resume()` after a power cut finishes or rolls back the job.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ClockSource } from '../clock/clock.js';
import { fsyncDirectory, readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import type { Logger } from '../log/logger.js';
import { AppArchiveExtractor, hashExtractedTree, removeTree, type AppEntry } from './app-archive.js';
import { otherSlot, type BootSelector, type SlotName } from './boot-selector.js';
import { BundleFile, streamPayload, verifyHead, type DevicePolicy, type VerifiedHead } from './bundle.js';
import type { PayloadEntry } from './bundle-codec.js';
import { isUpdateError, UpdateError } from './errors.js';
import { decodeTrustPayload, writeRotatedAnchors, type TrustStore } from './trust.js';

export type JobPhase =
  'verified' | 'writing' | 'written' | 'rebooting' | 'trial' | 'committing' | 'rolling-back';

export interface UpdateJob {
  phase: JobPhase;
  bundlePath: string;
  manifestDigest: string;
  kind: 'app' | 'system';
  from: SlotName;
  target: SlotName;
  version: string;
  securityVersion: number;
  installOrder: string;
  trialStarts: number;
  reason?: string;
  /**
   * Slot-write progress: payloads before `payload` (manifest index) are written
   * and read back; of `payload`, the first `chunks` chunks were written and
   * synced. A resumed write re-hashes those chunks and continues after the last
   * one that still matches.
   */
  written?: { payload: number; chunks: number };
}

export interface UpdateOutcome {
  result: 'committed' | 'rolled-back' | 'failed' | 'refused';
  version: string | null;
  manifestDigest: string | null;
  code?: string;
  reason?: string;
  atMs: number;
}

export interface UpdateStateFile {
  version: 1;
  securityVersion: number;
  usedInstallOrders: string[];
  lastGoodMs: number;
  job: UpdateJob | null;
  last: UpdateOutcome | null;
}

const MAX_ORDERS = 256;

export function emptyUpdateState(): UpdateStateFile {
  return { version: 1, securityVersion: 0, usedInstallOrders: [], lastGoodMs: 0, job: null, last: null };
}

export async function readUpdateState(path: string): Promise<UpdateStateFile> {
  const raw = await readFileIfExists(path);
  if (!raw) return emptyUpdateState();
  const s = JSON.parse(raw.toString('utf8')) as UpdateStateFile;
  if (s.version !== 1) throw new UpdateError('UPDATE_ERR_USAGE', `unknown update state version in ${path}`);
  return s;
}

/** A crash-injection point: tests kill the process here. */
export type CrashHook = (point: { kind: 'phase'; name: string } | { kind: 'byte'; offset: number }) => void;

export interface SystemSlots {
  selector: BootSelector;
  /** Block device or image file per slot for each system payload type. */
  rootfs: Record<SlotName, string>;
  boot?: Record<SlotName, string>;
}

export interface AppSlots {
  /** Directory holding a/, b/ and the `current` symlink. */
  root: string;
  selector: BootSelector;
}

export interface InstallerOptions {
  stateFile: string;
  app?: AppSlots;
  system?: SystemSlots;
  trust: () => Promise<TrustStore>;
  /** Where a trust payload stores rotated anchors. */
  rotatedTrustFile: string;
  product: string;
  board: string;
  /** Build time of the running firmware: the floor for certificate validity. */
  buildTimeMs: number;
  maxBundleBytes?: number;
  clock: ClockSource;
  logger: Logger;
  /** Is the freshly booted system healthy (services up, Core reachable if it was)? */
  health: () => Promise<boolean>;
  healthDeadlineMs?: number;
  healthIntervalMs?: number;
  /** Outcome report (to the Core): called once per finished job. Errors are logged, not thrown. */
  report?: (o: UpdateOutcome) => Promise<void> | void;
  crashHook?: CrashHook;
  /** Journal the slot-write progress (after a sync) every this many bytes. Default 8 MiB. */
  progressEveryBytes?: number;
}

export class Installer {
  private state: UpdateStateFile = emptyUpdateState();
  private loaded = false;
  private busy = false;
  readonly counters = { refused: 0, committed: 0, rolledBack: 0, failed: 0 };

  constructor(private readonly o: InstallerOptions) {}

  async load(): Promise<UpdateStateFile> {
    this.state = await readUpdateState(this.o.stateFile);
    this.loaded = true;
    return this.state;
  }

  get current(): UpdateStateFile {
    return this.state;
  }

  private crash(name: string): void {
    this.o.crashHook?.({ kind: 'phase', name });
  }

  private async save(): Promise<void> {
    await mkdir(dirname(this.o.stateFile), { recursive: true });
    await writeFileAtomic(this.o.stateFile, JSON.stringify(this.state));
  }

  private async setPhase(phase: JobPhase, cause: string): Promise<void> {
    const job = this.state.job as UpdateJob;
    const from = job.phase;
    job.phase = phase;
    await this.save();
    this.o.logger.info('state', { from, to: phase, cause, target: job.target, version: job.version });
    this.crash(phase);
  }

  private policy(): DevicePolicy {
    const p: DevicePolicy = {
      product: this.o.product,
      board: this.o.board,
      securityVersion: this.state.securityVersion,
      usedInstallOrders: this.state.usedInstallOrders,
      nowMs: this.o.clock.wallMs(),
      lastGoodMs: this.state.lastGoodMs,
      buildTimeMs: this.o.buildTimeMs,
    };
    if (this.o.maxBundleBytes !== undefined) p.maxBundleBytes = this.o.maxBundleBytes;
    return p;
  }

  private slotsFor(head: VerifiedHead): { kind: 'app' | 'system' | 'trust'; selector: BootSelector | null } {
    const types = new Set(head.manifest.payloads.map((p) => p.type));
    if (types.has('app')) {
      if (!this.o.app) throw new UpdateError('UPDATE_ERR_SLOT', 'this device has no app slots');
      return { kind: 'app', selector: this.o.app.selector };
    }
    if (types.has('rootfs') || types.has('boot')) {
      if (!this.o.system) throw new UpdateError('UPDATE_ERR_SLOT', 'this device has no system slots');
      if (types.has('boot') && !this.o.system.boot)
        throw new UpdateError('UPDATE_ERR_SLOT', 'this device has no boot slots');
      return { kind: 'system', selector: this.o.system.selector };
    }
    return { kind: 'trust', selector: null };
  }

  /**
   * Check a bundle completely (signature, chain, policy, every chunk, archive
   * structure) without changing anything. Throws UpdateError on refusal.
   */
  async verify(bundlePath: string): Promise<VerifiedHead> {
    if (!this.loaded) await this.load();
    const file = await BundleFile.open(bundlePath);
    try {
      const head = await verifyHead(file, await this.o.trust(), this.policy());
      this.slotsFor(head);
      for (const p of head.manifest.payloads) {
        if (p.type === 'app') {
          const dry = new AppArchiveExtractor(p.size, null);
          await streamPayload(file, head, p, (_p, _i, data) => dry.push(data));
          await dry.finish();
        } else if (p.type === 'trust') {
          const parts: Buffer[] = [];
          await streamPayload(file, head, p, (_p, _i, data) => {
            parts.push(Buffer.from(data));
          });
          const doc = decodeTrustPayload(Buffer.concat(parts));
          const store = await this.o.trust();
          if (doc.channel !== store.channel)
            throw new UpdateError('UPDATE_ERR_ARCHIVE', `trust payload is for the ${doc.channel} channel`);
        } else {
          await streamPayload(file, head, p);
        }
      }
      return head;
    } finally {
      await file.close();
    }
  }

  /**
   * Install a bundle file. Resolves with the outcome for trust-only bundles,
   * or 'rebooting' once the trial boot was requested.
   */
  async install(bundlePath: string): Promise<UpdateOutcome | 'rebooting'> {
    if (this.busy) throw new UpdateError('UPDATE_ERR_BUSY', 'an install is already running');
    this.busy = true;
    try {
      if (!this.loaded) await this.load();
      if (this.state.job)
        throw new UpdateError('UPDATE_ERR_BUSY', `an update job is in phase ${this.state.job.phase}`);
      let head: VerifiedHead;
      try {
        head = await this.verify(bundlePath);
      } catch (err) {
        this.counters.refused++;
        const code = isUpdateError(err) ? err.code : 'UPDATE_ERR_USAGE';
        this.o.logger.warn('update.refused', { code, err, bundle: bundlePath });
        await this.finish(
          {
            result: 'refused',
            version: null,
            manifestDigest: null,
            code,
            reason: (err as Error).message,
            atMs: this.o.clock.wallMs(),
          },
          false,
        );
        if (err instanceof Error) Object.assign(err, { recorded: true });
        throw err;
      }
      const m = head.manifest;
      const { kind, selector } = this.slotsFor(head);
      if (kind === 'trust' || !selector) {
        await this.applyTrust(bundlePath, head);
        this.state.securityVersion = Math.max(this.state.securityVersion, m.securityVersion);
        this.rememberOrder(m.installOrder);
        return this.finish(
          {
            result: 'committed',
            version: m.version,
            manifestDigest: head.manifestDigest,
            atMs: this.o.clock.wallMs(),
          },
          true,
        );
      }
      const from = await selector.booted();
      if ((await selector.primary()) !== from)
        throw new UpdateError(
          'UPDATE_ERR_SLOT',
          'the booted slot is not the primary: commit or roll back first',
        );
      this.rememberOrder(m.installOrder);
      this.state.job = {
        phase: 'verified',
        bundlePath,
        manifestDigest: head.manifestDigest,
        kind,
        from,
        target: otherSlot(from),
        version: m.version,
        securityVersion: m.securityVersion,
        installOrder: m.installOrder,
        trialStarts: 0,
      };
      await this.save();
      this.o.logger.info('state', {
        from: 'idle',
        to: 'verified',
        cause: 'bundle verified',
        version: m.version,
        target: otherSlot(from),
      });
      this.crash('verified');
      return await this.drive();
    } finally {
      this.busy = false;
    }
  }

  /**
   * Record a job that ended before the installer got it (a download that
   * failed or was refused while streaming): counted, logged, reported.
   * Errors thrown by install() itself are already recorded and are skipped.
   */
  async recordFailure(err: unknown, step: string): Promise<UpdateOutcome | null> {
    if ((err as { recorded?: boolean }).recorded) return null;
    const code = isUpdateError(err) ? err.code : 'UPDATE_ERR_DOWNLOAD';
    const network = code === 'UPDATE_ERR_DOWNLOAD' || code === 'UPDATE_ERR_BUSY' || !isUpdateError(err);
    if (!network) this.counters.refused++;
    return this.finish(
      {
        result: network ? 'failed' : 'refused',
        version: null,
        manifestDigest: null,
        code,
        reason: `${step}: ${(err as Error).message}`,
        atMs: this.o.clock.wallMs(),
      },
      false,
    );
  }

  private rememberOrder(order: string): void {
    this.state.usedInstallOrders = [...this.state.usedInstallOrders.filter((x) => x !== order), order].slice(
      -MAX_ORDERS,
    );
  }

  private async applyTrust(bundlePath: string, head: VerifiedHead): Promise<void> {
    const file = await BundleFile.open(bundlePath);
    try {
      for (const p of head.manifest.payloads) {
        if (p.type !== 'trust') continue;
        const parts: Buffer[] = [];
        await streamPayload(file, head, p, (_p, _i, d) => {
          parts.push(Buffer.from(d));
        });
        await writeRotatedAnchors(this.o.rotatedTrustFile, decodeTrustPayload(Buffer.concat(parts)));
        this.o.logger.info('update.anchors-rotated', { version: head.manifest.version });
      }
    } finally {
      await file.close();
    }
  }

  private selectorOf(job: UpdateJob): BootSelector {
    const s = job.kind === 'app' ? this.o.app?.selector : this.o.system?.selector;
    if (!s) throw new UpdateError('UPDATE_ERR_SLOT', `no ${job.kind} slots configured`);
    return s;
  }

  /** Run the journal forward from its current phase until a reboot is needed or the job ends. */
  private async drive(): Promise<UpdateOutcome | 'rebooting'> {
    for (;;) {
      const job = this.state.job;
      if (!job)
        return (
          this.state.last ?? {
            result: 'failed',
            version: null,
            manifestDigest: null,
            atMs: this.o.clock.wallMs(),
          }
        );
      const sel = this.selectorOf(job);
      switch (job.phase) {
        case 'verified':
        case 'writing': {
          if (job.phase === 'verified') await this.setPhase('writing', 'marking target bad');
          await sel.markBad(job.target);
          this.crash('marked-bad');
          try {
            await this.writeSlots(job);
          } catch (err) {
            return this.fail(job, err, 'write');
          }
          await this.setPhase('written', 'read back and re-hashed');
          break;
        }
        case 'written':
          await sel.armTrial(job.target);
          this.crash('trial-armed');
          await this.setPhase('rebooting', 'trial armed');
          await sel.reboot('trial');
          return 'rebooting';
        case 'rebooting':
        case 'trial':
        case 'committing':
        case 'rolling-back':
          return 'rebooting';
      }
    }
  }

  private async fail(job: UpdateJob, err: unknown, step: string): Promise<UpdateOutcome> {
    const code = isUpdateError(err) ? err.code : 'UPDATE_ERR_SLOT';
    this.o.logger.error('update.failed', { step, code, err, target: job.target });
    this.state.job = null;
    return this.finish(
      {
        result: 'failed',
        version: job.version,
        manifestDigest: job.manifestDigest,
        code,
        reason: `${step}: ${(err as Error).message}`,
        atMs: this.o.clock.wallMs(),
      },
      false,
    );
  }

  private async finish(outcome: UpdateOutcome, good: boolean): Promise<UpdateOutcome> {
    this.state.last = outcome;
    if (good) this.state.lastGoodMs = Math.max(this.state.lastGoodMs, this.o.clock.wallMs());
    if (outcome.result !== 'refused' || this.loaded) await this.save().catch(() => undefined);
    if (outcome.result === 'committed') this.counters.committed++;
    if (outcome.result === 'rolled-back') this.counters.rolledBack++;
    if (outcome.result === 'failed') this.counters.failed++;
    this.o.logger.info('update.outcome', { ...outcome });
    try {
      await this.o.report?.(outcome);
    } catch (err) {
      this.o.logger.warn('update.report-failed', { err });
    }
    return outcome;
  }

  private async writeSlots(job: UpdateJob): Promise<void> {
    const file = await BundleFile.open(job.bundlePath);
    try {
      // Re-verify the head (the file could have changed since); the digest must match the job.
      const head = await verifyHead(file, await this.o.trust(), {
        ...this.policy(),
        usedInstallOrders: this.state.usedInstallOrders.filter((x) => x !== job.installOrder),
      });
      if (head.manifestDigest !== job.manifestDigest)
        throw new UpdateError('UPDATE_ERR_HASH', 'bundle changed since it was verified');
      const done = job.written ?? { payload: 0, chunks: 0 };
      let written = 0;
      const payloads = head.manifest.payloads;
      for (let pi = 0; pi < payloads.length; pi++) {
        const p = payloads[pi] as PayloadEntry;
        if (pi < done.payload) {
          written += p.size;
          continue;
        }
        if (p.type === 'app') {
          await this.writeApp(file, head, p, job.target, (n) => {
            written += n;
            this.o.crashHook?.({ kind: 'byte', offset: written });
          });
        } else if (p.type === 'rootfs' || p.type === 'boot') {
          const dev = (p.type === 'rootfs' ? this.o.system?.rootfs : this.o.system?.boot)?.[job.target];
          if (!dev) throw new UpdateError('UPDATE_ERR_SLOT', `no ${p.type} device for slot ${job.target}`);
          const cs = head.manifest.chunkSize;
          const claimed = pi === done.payload ? done.chunks : 0;
          const from = claimed > 0 ? await this.verifiedPrefix(dev, p, cs, claimed) : 0;
          if (claimed > 0)
            this.o.logger.info('update.write-resumed', { payload: p.name, claimed, fromChunk: from });
          written += from * cs;
          const progress = (n: number): void => {
            written += n;
            this.o.crashHook?.({ kind: 'byte', offset: written });
          };
          const checkpoint = async (chunks: number): Promise<void> => {
            job.written = { payload: pi, chunks };
            await this.save();
          };
          await this.writeImage(file, head, p, dev, from, progress, checkpoint);
        }
        job.written = { payload: pi + 1, chunks: 0 };
        await this.save();
      }
    } finally {
      await file.close();
    }
  }

  /** How many leading chunks of `device` still match the signed hashes (at most `claimed`). */
  private async verifiedPrefix(
    device: string,
    p: PayloadEntry,
    cs: number,
    claimed: number,
  ): Promise<number> {
    const fh = await open(device, 'r').catch(() => null);
    if (!fh) return 0;
    try {
      const buf = Buffer.allocUnsafe(cs);
      const n = Math.min(claimed, p.chunks.length);
      for (let i = 0; i < n; i++) {
        const want = Math.min(cs, p.size - i * cs);
        const { bytesRead } = await fh.read(buf, 0, want, i * cs);
        if (bytesRead !== want) return i;
        if (createHash('sha256').update(buf.subarray(0, want)).digest('hex') !== p.chunks[i]) return i;
      }
      return n;
    } finally {
      await fh.close();
    }
  }

  private async writeApp(
    file: BundleFile,
    head: VerifiedHead,
    p: PayloadEntry,
    slot: SlotName,
    progress: (n: number) => void,
  ): Promise<void> {
    const root = (this.o.app as AppSlots).root;
    const staging = join(root, '.staging');
    await removeTree(staging);
    await mkdir(staging, { recursive: true });
    const ex = new AppArchiveExtractor(p.size, staging);
    await streamPayload(file, head, p, async (_p, _i, data) => {
      await ex.push(data);
      progress(data.length);
    });
    const entries: AppEntry[] = await ex.finish();
    await fsyncDirectory(staging);
    const readback = await hashExtractedTree(staging, entries);
    if (readback !== p.sha256)
      throw new UpdateError(
        'UPDATE_ERR_READBACK',
        `app slot read-back hash ${readback} differs from the signed one`,
      );
    const dest = join(root, slot);
    await removeTree(dest);
    await rename(staging, dest);
    await fsyncDirectory(root);
  }

  private async writeImage(
    file: BundleFile,
    head: VerifiedHead,
    p: PayloadEntry,
    device: string,
    fromChunk: number,
    progress: (n: number) => void,
    checkpoint: (chunks: number) => Promise<void>,
  ): Promise<void> {
    await (await open(device, 'a')).close();
    const fh = await open(device, 'r+');
    try {
      const cs = head.manifest.chunkSize;
      const every = Math.max(cs, this.o.progressEveryBytes ?? 8 * 1024 * 1024);
      let sinceSync = 0;
      await streamPayload(
        file,
        head,
        p,
        async (_p, i, data) => {
          await fh.write(data, 0, data.length, i * cs);
          sinceSync += data.length;
          if (sinceSync >= every && i + 1 < p.chunks.length) {
            // Durable data first, then the journal that claims it.
            await fh.sync();
            await checkpoint(i + 1);
            sinceSync = 0;
          }
          progress(data.length);
        },
        fromChunk,
      );
      await fh.sync();
      // Read back and re-hash before anything can boot it.
      const h = createHash('sha256');
      const buf = Buffer.allocUnsafe(cs);
      for (let off = 0; off < p.size;) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(cs, p.size - off), off);
        if (bytesRead === 0)
          throw new UpdateError('UPDATE_ERR_READBACK', `${device} shorter than the payload`);
        h.update(buf.subarray(0, bytesRead));
        off += bytesRead;
      }
      const got = h.digest('hex');
      if (got !== p.sha256)
        throw new UpdateError('UPDATE_ERR_READBACK', `${device} read-back hash differs from the signed one`);
    } finally {
      await fh.close();
    }
  }

  /**
   * Call once at start (after the boot selector picked the slot). Finishes,
   * resumes or rolls back whatever the journal says was in progress, runs the
   * trial health check when this is the trial boot, and returns the outcome,
   * 'rebooting' when it asked for a reboot, or null when there was no job.
   */
  async resume(): Promise<UpdateOutcome | 'rebooting' | null> {
    if (!this.loaded) await this.load();
    const job = this.state.job;
    if (!job) return null;
    const sel = this.selectorOf(job);
    const booted = await sel.booted();
    this.o.logger.info('update.resume', { phase: job.phase, booted, target: job.target });
    switch (job.phase) {
      case 'verified':
      case 'writing':
      case 'written':
        if (booted !== job.from) return this.rollback(job, sel, 'booted the unfinished slot');
        return this.drive();
      case 'rebooting':
      case 'trial':
        if (booted !== job.target)
          return this.rolledBack(job, sel, 'the trial boot fell back to the old slot');
        return this.trial(job, sel);
      case 'committing':
        if (booted !== job.target && (await sel.primary()) !== job.target)
          return this.rolledBack(job, sel, 'fell back during commit');
        return this.commit(job, sel);
      case 'rolling-back':
        return this.rollback(job, sel, job.reason ?? 'rolling back');
    }
  }

  private async trial(job: UpdateJob, sel: BootSelector): Promise<UpdateOutcome | 'rebooting'> {
    job.trialStarts++;
    if (job.trialStarts > 2) return this.rollback(job, sel, 'the trial restarted too often');
    await this.setPhase('trial', 'booted the new slot on trial');
    const healthy = await this.waitHealthy();
    if (!healthy) return this.rollback(job, sel, 'not healthy within the deadline');
    await this.setPhase('committing', 'healthy');
    return this.commit(job, sel);
  }

  private waitHealthy(): Promise<boolean> {
    const deadline = this.o.clock.monotonicMs() + (this.o.healthDeadlineMs ?? 120_000);
    const interval = this.o.healthIntervalMs ?? 1000;
    return new Promise((resolve) => {
      const attempt = (): void => {
        this.o
          .health()
          .catch(() => false)
          .then((ok) => {
            if (ok) return resolve(true);
            if (this.o.clock.monotonicMs() + interval > deadline) return resolve(false);
            this.o.clock.setTimeout(attempt, interval);
          })
          .catch(() => resolve(false));
      };
      attempt();
    });
  }

  private async commit(job: UpdateJob, sel: BootSelector): Promise<UpdateOutcome> {
    await sel.commit(job.target);
    this.crash('selector-committed');
    this.state.securityVersion = Math.max(this.state.securityVersion, job.securityVersion);
    this.state.job = null;
    return this.finish(
      {
        result: 'committed',
        version: job.version,
        manifestDigest: job.manifestDigest,
        atMs: this.o.clock.wallMs(),
      },
      true,
    );
  }

  private async rollback(
    job: UpdateJob,
    sel: BootSelector,
    reason: string,
  ): Promise<UpdateOutcome | 'rebooting'> {
    if (job.phase !== 'rolling-back') {
      job.reason = reason;
      await this.setPhase('rolling-back', reason);
    }
    await sel.markBad(job.target);
    this.crash('marked-bad-after-trial');
    const booted = await sel.booted();
    if (booted === job.target) {
      await sel.reboot('normal');
      return 'rebooting';
    }
    return this.rolledBack(job, sel, reason);
  }

  private async rolledBack(job: UpdateJob, sel: BootSelector, reason: string): Promise<UpdateOutcome> {
    await sel.markBad(job.target);
    this.state.job = null;
    this.o.logger.info('state', { from: job.phase, to: 'idle', cause: reason });
    return this.finish(
      {
        result: 'rolled-back',
        version: job.version,
        manifestDigest: job.manifestDigest,
        reason,
        atMs: this.o.clock.wallMs(),
      },
      false,
    );
  }
}

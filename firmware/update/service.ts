/**
 * The update shell for main.ts: owns the Installer, a spool directory for
 * uploaded/downloaded bundles, the resumable downloader, and the node:http
 * handler that the Peripheral Manager (admin upload) and the Core push
 * endpoint (HTTPS, mutual TLS) both mount. Never throws from a request handler.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import type { SlotName } from './boot-selector.js';
import { downloadBundle } from './downloader.js';
import { isUpdateError, UpdateError } from './errors.js';
import { Installer, type InstallerOptions, type UpdateOutcome } from './installer.js';

export interface UpdateServiceOptions extends InstallerOptions {
  /** Directory for spooled bundles (on the persistent data partition). */
  spoolDir: string;
  /** Largest bundle accepted from an upload or download. */
  maxBundleBytes: number;
  /** TLS material for downloads from the Core. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** Version of the running runtime (its package.json). Default '0.0.0'. */
  runningVersion?: string;
}

/** The update state for status pages and the Core (`GET /api/v1/core/firmware`). */
export interface SlotStatus {
  /** Version of the running runtime. */
  version: string;
  /** App slot the launcher started (null: this device has no app slots). */
  bootedSlot: SlotName | null;
  /** App slot a normal start picks. */
  primarySlot: SlotName | null;
  /** 'idle' or the journal phase of the running job. */
  phase: string;
  /** The slot on trial while a job waits for its trial boot or health check. */
  trialSlot: SlotName | null;
  /** What each app slot holds (package.json version; null = empty or unreadable). */
  slots: Record<SlotName, { version: string | null }>;
}

export interface UpdateStatus {
  phase: string;
  securityVersion: number;
  last: UpdateOutcome | null;
  counters: Installer['counters'];
}

export class UpdateService {
  readonly installer: Installer;
  private readonly logger: Logger;

  constructor(private readonly o: UpdateServiceOptions) {
    this.installer = new Installer(o);
    this.logger = o.logger;
  }

  /** At start: finish, resume or roll back a job left by a reboot or power cut. */
  async start(): Promise<UpdateOutcome | 'rebooting' | null> {
    await mkdir(this.o.spoolDir, { recursive: true });
    await this.installer.load();
    const r = await this.installer.resume();
    await this.cleanSpool();
    return r;
  }

  /** Remove spooled bundles no job needs (a partial download is kept for its Range resume). */
  private async cleanSpool(): Promise<void> {
    const keep = this.installer.current.job?.bundlePath ?? null;
    for (const name of await readdir(this.o.spoolDir)) {
      const full = join(this.o.spoolDir, name);
      if (full === keep || name.startsWith('download.qpb.')) continue;
      await rm(full, { force: true }).catch(() => undefined);
    }
  }

  status(): UpdateStatus {
    const s = this.installer.current;
    return {
      phase: s.job?.phase ?? 'idle',
      securityVersion: s.securityVersion,
      last: s.last,
      counters: { ...this.installer.counters },
    };
  }

  /** Booted/primary app slot, job phase, trial slot and what each slot holds. */
  async slotStatus(): Promise<SlotStatus> {
    const s = this.installer.current;
    const job = s.job;
    const app = this.o.app;
    const slotVersion = async (slot: SlotName): Promise<string | null> => {
      if (!app) return null;
      try {
        const pkg = JSON.parse(await readFile(join(app.root, slot, 'package.json'), 'utf8')) as {
          version?: unknown;
        };
        return typeof pkg.version === 'string' ? pkg.version : null;
      } catch {
        return null;
      }
    };
    const onTrial =
      job !== null && ['rebooting', 'trial', 'committing'].includes(job.phase) ? job.target : null;
    return {
      version: this.o.runningVersion ?? '0.0.0',
      bootedSlot: app ? await app.selector.booted().catch(() => null) : null,
      primarySlot: app ? await app.selector.primary().catch(() => null) : null,
      phase: job?.phase ?? (this.fetching ? 'downloading' : 'idle'),
      trialSlot: onTrial,
      slots: { a: { version: await slotVersion('a') }, b: { version: await slotVersion('b') } },
    };
  }

  private fetching = false;

  /**
   * Start a download + install in the background (the Core's fetch request).
   * Throws UPDATE_ERR_BUSY when a download or a job is already running. The
   * result is reported through the installer's outcome (a failed download is
   * recorded as 'failed', a refused bundle as 'refused').
   */
  startFetch(url: string): void {
    if (this.fetching || this.installer.current.job)
      throw new UpdateError('UPDATE_ERR_BUSY', 'an update is already running');
    this.fetching = true;
    this.logger.info('update.fetch', { url });
    void this.installFromUrl(url)
      .catch(async (err: unknown) => {
        this.logger.warn('update.fetch-failed', { url, err });
        await this.installer.recordFailure(err, 'download').catch(() => undefined);
      })
      .finally(() => {
        this.fetching = false;
      });
  }

  async installFile(path: string): Promise<UpdateOutcome | 'rebooting'> {
    return this.installer.install(path);
  }

  /** Download (resumable, verified as it streams) then install. */
  async installFromUrl(url: string): Promise<UpdateOutcome | 'rebooting'> {
    await this.installer.load();
    const s = this.installer.current;
    const dest = join(this.o.spoolDir, 'download.qpb');
    const policy = {
      product: this.o.product,
      board: this.o.board,
      securityVersion: s.securityVersion,
      usedInstallOrders: s.usedInstallOrders,
      nowMs: this.o.clock.wallMs(),
      lastGoodMs: s.lastGoodMs,
      buildTimeMs: this.o.buildTimeMs,
      maxBundleBytes: this.o.maxBundleBytes,
    };
    const r = await downloadBundle({
      url,
      dest,
      trust: await this.o.trust(),
      policy,
      logger: this.logger,
      ...(this.o.tls ? { tls: this.o.tls } : {}),
    });
    return this.installer.install(r.path);
  }

  /** Spool a request body to a file, refusing more than `maxBundleBytes`. */
  async spool(req: AsyncIterable<Buffer>, declaredLength: number | null): Promise<string> {
    if (declaredLength !== null && declaredLength > this.o.maxBundleBytes) {
      throw new UpdateError(
        'UPDATE_ERR_OVERSIZED',
        `upload of ${declaredLength} bytes above the ${this.o.maxBundleBytes} limit`,
      );
    }
    await mkdir(this.o.spoolDir, { recursive: true });
    const path = join(this.o.spoolDir, `upload-${randomBytes(6).toString('hex')}.qpb`);
    const fh = await open(path, 'w');
    let n = 0;
    try {
      for await (const chunk of req) {
        n += chunk.length;
        if (n > this.o.maxBundleBytes)
          throw new UpdateError(
            'UPDATE_ERR_OVERSIZED',
            `upload above the ${this.o.maxBundleBytes} byte limit`,
          );
        await fh.write(chunk);
      }
      await fh.sync();
    } catch (err) {
      await fh.close();
      await rm(path, { force: true });
      throw err;
    }
    await fh.close();
    return path;
  }
}

const STATUS_FOR: Partial<Record<string, number>> = {
  UPDATE_ERR_OVERSIZED: 413,
  UPDATE_ERR_BUSY: 409,
  UPDATE_ERR_USAGE: 400,
};

export interface UploadHandlerOptions {
  service: UpdateService;
  /** Extra gate (admin session, or a pinned Core's client certificate). Default: allow. */
  authorize?: (req: IncomingMessage) => boolean | Promise<boolean>;
}

/**
 * `POST`/`PUT` a bundle as the raw request body. Answers JSON:
 * 202 {result:'rebooting'} when the trial boot was requested, 200 with the
 * outcome for trust-only bundles, 4xx/422 {code, message} when refused.
 * The spooled file is deleted after a refusal.
 */
export function createBundleUploadHandler(
  o: UploadHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    if (res.headersSent) return;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  return (req, res) => {
    void (async () => {
      if (req.method !== 'POST' && req.method !== 'PUT') {
        res.setHeader('allow', 'POST, PUT');
        send(res, 405, { code: 'UPDATE_ERR_USAGE', message: 'use POST or PUT with the bundle as the body' });
        req.resume();
        return;
      }
      if (o.authorize && !(await o.authorize(req))) {
        send(res, 403, { code: 'UPDATE_ERR_USAGE', message: 'not allowed' });
        req.resume();
        return;
      }
      let path: string | null = null;
      try {
        const len =
          req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
        path = await o.service.spool(req, len);
        const r = await o.service.installFile(path);
        if (r === 'rebooting') send(res, 202, { result: 'rebooting' });
        else {
          send(res, r.result === 'committed' ? 200 : 422, r);
          await rm(path, { force: true });
        }
      } catch (err) {
        const code = isUpdateError(err) ? err.code : 'UPDATE_ERR_USAGE';
        send(res, STATUS_FOR[code] ?? 422, { code, message: (err as Error).message });
        if (code === 'UPDATE_ERR_OVERSIZED') req.destroy();
        if (path) await rm(path, { force: true }).catch(() => undefined);
      }
    })().catch(() => {
      send(res, 500, { code: 'UPDATE_ERR_USAGE', message: 'internal error' });
    });
  };
}

/**
 * `authorize` for the Core push endpoint: the request must come over TLS with
 * a client certificate the server verified, whose SHA-256 fingerprint is a
 * pinned Core (DeviceState.trustedCores).
 */
export function pinnedCoreAuthorizer(pinned: () => string[]): (req: IncomingMessage) => boolean {
  return (req) => {
    const sock = req.socket as TLSSocket;
    if (typeof sock.getPeerCertificate !== 'function' || !sock.authorized) return false;
    const fp = sock.getPeerCertificate().fingerprint256?.toUpperCase();
    return fp !== undefined && pinned().some((p) => p.toUpperCase() === fp);
  };
}

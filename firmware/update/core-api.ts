/**
 * The device-side Core API (contract A), mounted on the Peripheral Manager's
 * HTTPS port under /api/v1/core/. A pure authorization decision (client
 * certificate pin against DeviceState.trustedCores), a pure config parser, and
 * thin node:http handlers: push a bundle, ask the device to fetch one, read the
 * update state, apply a design/controls configuration. No admin session: the
 * client certificate is the identity when secure communication is on.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { DesignInfo } from '../config/state-store.js';
import { QperiphError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { isUpdateError } from './errors.js';
import { createBundleUploadHandler, type UpdateService } from './service.js';

export const CORE_API_PREFIX = '/api/v1/core/';

export type CoreApiErrorCode =
  | 'CORE_ERR_NOT_PINNED'
  | 'CORE_ERR_TLS_REQUIRED'
  | 'CORE_ERR_BAD_JSON'
  | 'CORE_ERR_TOO_LARGE'
  | 'CORE_ERR_BAD_URL'
  | 'CORE_ERR_BAD_CONFIG'
  | 'CORE_ERR_UNKNOWN_CONTROL'
  | 'CORE_ERR_READ_ONLY'
  | 'CORE_ERR_BUSY'
  | 'CORE_ERR_NOT_FOUND'
  | 'CORE_ERR_METHOD'
  | 'CORE_ERR_NOT_AVAILABLE'
  | 'CORE_ERR_INTERNAL';

const STATUS: Record<CoreApiErrorCode, number> = {
  CORE_ERR_NOT_PINNED: 403,
  CORE_ERR_TLS_REQUIRED: 403,
  CORE_ERR_BAD_JSON: 400,
  CORE_ERR_TOO_LARGE: 413,
  CORE_ERR_BAD_URL: 400,
  CORE_ERR_BAD_CONFIG: 400,
  CORE_ERR_UNKNOWN_CONTROL: 404,
  CORE_ERR_READ_ONLY: 409,
  CORE_ERR_BUSY: 409,
  CORE_ERR_NOT_FOUND: 404,
  CORE_ERR_METHOD: 405,
  CORE_ERR_NOT_AVAILABLE: 501,
  CORE_ERR_INTERNAL: 500,
};

export class CoreApiError extends QperiphError {
  declare readonly code: CoreApiErrorCode;
  constructor(code: CoreApiErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
  get status(): number {
    return STATUS[this.code];
  }
}

// ---- authorization (pure) ----

export type CoreAccess =
  | { ok: true; fingerprint: string | null; pinned: boolean }
  | { ok: false; status: 403; code: 'CORE_ERR_NOT_PINNED' | 'CORE_ERR_TLS_REQUIRED'; message: string };

/**
 * Secure communication on (trustedCores non-empty): the client certificate's
 * SHA-256 fingerprint must be pinned. Off: anyone (bundles are still
 * signature-checked). Never over plain HTTP.
 */
export function decideCoreAccess(i: {
  tls: boolean;
  fingerprint: string | null;
  trustedCores: readonly string[];
}): CoreAccess {
  if (!i.tls)
    return { ok: false, status: 403, code: 'CORE_ERR_TLS_REQUIRED', message: 'the Core API is HTTPS only' };
  const fp = i.fingerprint ? i.fingerprint.toUpperCase() : null;
  const pinned = fp !== null && i.trustedCores.some((c) => c.toUpperCase() === fp);
  if (i.trustedCores.length === 0) return { ok: true, fingerprint: fp, pinned: false };
  if (pinned) return { ok: true, fingerprint: fp, pinned: true };
  return {
    ok: false,
    status: 403,
    code: 'CORE_ERR_NOT_PINNED',
    message: fp
      ? 'secure communication is on and this client certificate is not a trusted Core'
      : 'secure communication is on: present the pinned Core client certificate',
  };
}

/** The client certificate's fingerprint on a TLS request (null: plain HTTP or no certificate). */
export function peerFingerprint(req: IncomingMessage): { tls: boolean; fingerprint: string | null } {
  const sock = req.socket as Partial<TLSSocket>;
  if (typeof sock.getPeerCertificate !== 'function') return { tls: false, fingerprint: null };
  const fp = sock.getPeerCertificate().fingerprint256;
  return { tls: true, fingerprint: typeof fp === 'string' && fp !== '' ? fp.toUpperCase() : null };
}

// ---- configuration (pure) ----

export type ControlValue = number | string | boolean;

export interface CoreConfig {
  design?: DesignInfo;
  controls?: Record<string, ControlValue>;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(message: string): CoreApiError {
  return new CoreApiError('CORE_ERR_BAD_CONFIG', message);
}

/**
 * `PUT /api/v1/core/config` body: `{design?, controls?}`. Design rules are the
 * control link's Design.Assign rules (docs/control-link.md).
 */
export function parseCoreConfig(body: unknown): CoreConfig {
  if (!isRecord(body)) throw bad('the body must be a JSON object');
  for (const k of Object.keys(body))
    if (k !== 'design' && k !== 'controls') throw bad(`unknown field '${k}'`);
  const out: CoreConfig = {};
  if (body['design'] !== undefined) {
    const d = body['design'];
    if (!isRecord(d)) throw bad('design must be an object');
    const str = (k: string, max: number): string => {
      const v = d[k];
      if (typeof v !== 'string' || v === '' || v.length > max)
        throw bad(`design.${k}: a string of 1..${max}`);
      return v;
    };
    const bool = (k: string, dflt: boolean): boolean => {
      const v = d[k];
      if (v === undefined) return dflt;
      if (typeof v !== 'boolean') throw bad(`design.${k} must be true or false`);
      return v;
    };
    const design: DesignInfo = {
      name: str('name', 256),
      code: str('code', 64),
      role: str('role', 64),
      primary: bool('primary', true),
      redundant: bool('redundant', false),
    };
    if (!/^[A-Za-z0-9_-]+$/.test(design.code)) throw bad('design.code: letters, digits, _ and -');
    if (!/^[A-Za-z0-9_.-]+$/.test(design.role)) throw bad('design.role: letters, digits, _ . and -');
    out.design = design;
  }
  if (body['controls'] !== undefined) {
    const c = body['controls'];
    if (!isRecord(c)) throw bad('controls must be an object of name: value');
    const names = Object.keys(c);
    if (names.length === 0 || names.length > 10_000) throw bad('controls must hold 1..10000 entries');
    const controls: Record<string, ControlValue> = {};
    for (const n of names) {
      const v = c[n];
      if (n.length > 64) throw bad(`control name '${n.slice(0, 16)}…' longer than 64`);
      if (!(typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))))
        throw bad(`controls.${n}: a number, string or boolean`);
      controls[n] = v;
    }
    out.controls = controls;
  }
  if (!out.design && !out.controls) throw bad('nothing to apply: give design and/or controls');
  return out;
}

/** Applies a checked config; resolves with what was applied, e.g. ['design', 'control:gain']. */
export type ConfigApplier = (cfg: CoreConfig) => Promise<string[]>;

// ---- handlers (thin) ----

export interface CoreApiOptions {
  service: UpdateService;
  /** DeviceState.trustedCores fingerprints. */
  trustedCores: () => readonly string[];
  /** The runtime's health (GET firmware). */
  healthy: () => boolean | Promise<boolean>;
  applyConfig?: ConfigApplier;
  logger: Logger;
  /** JSON body limit (default 64 KiB). */
  maxJsonBytes?: number;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function sendError(res: ServerResponse, err: CoreApiError): void {
  send(res, err.status, { code: err.code, message: err.message });
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit)
    throw new CoreApiError('CORE_ERR_TOO_LARGE', `body above ${limit} bytes`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new CoreApiError('CORE_ERR_TOO_LARGE', `body above ${limit} bytes`);
    parts.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8')) as unknown;
  } catch (err) {
    throw new CoreApiError('CORE_ERR_BAD_JSON', 'the body is not valid JSON', { cause: err });
  }
}

/** A URL the device may download a bundle from: http(s), at most 2048 characters. */
export function checkFetchUrl(v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 2048)
    throw new CoreApiError('CORE_ERR_BAD_URL', 'url must be a string of 1..2048 characters');
  let u: URL;
  try {
    u = new URL(v);
  } catch (err) {
    throw new CoreApiError('CORE_ERR_BAD_URL', 'url is not an absolute URL', { cause: err });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new CoreApiError('CORE_ERR_BAD_URL', `url scheme ${u.protocol} (http or https only)`);
  return u.href;
}

function toCoreError(err: unknown): CoreApiError {
  if (err instanceof CoreApiError) return err;
  const code = (err as { code?: unknown })?.code;
  const msg = (err as Error)?.message ?? String(err);
  if (code === 'UPDATE_ERR_BUSY') return new CoreApiError('CORE_ERR_BUSY', msg);
  if (code === 'CONTROL_ERR_UNKNOWN_CONTROL') return new CoreApiError('CORE_ERR_UNKNOWN_CONTROL', msg);
  if (code === 'CONTROL_ERR_READ_ONLY') return new CoreApiError('CORE_ERR_READ_ONLY', msg);
  if (typeof code === 'string' && code.startsWith('CONTROL_ERR_'))
    return new CoreApiError('CORE_ERR_BAD_CONFIG', msg);
  return new CoreApiError('CORE_ERR_INTERNAL', 'internal error', { cause: err });
}

/** The node:http handler for every path under /api/v1/core/ (the manager's `coreApi` hook). */
export function createCoreApiHandler(o: CoreApiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const log = o.logger.child({ module: 'core-api' });
  const limit = o.maxJsonBytes ?? 64 * 1024;
  const upload = createBundleUploadHandler({ service: o.service });
  const route = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const method = req.method ?? 'GET';
    const only = (m: string): void => {
      if (method !== m) {
        res.setHeader('allow', m);
        throw new CoreApiError('CORE_ERR_METHOD', `use ${m} for ${path}`);
      }
    };
    switch (path) {
      case '/api/v1/core/firmware':
        if (method === 'GET' || method === 'HEAD') {
          const st = await o.service.slotStatus();
          const u = o.service.status();
          send(res, 200, {
            version: st.version,
            bootedSlot: st.bootedSlot,
            primarySlot: st.primarySlot,
            phase: st.phase,
            securityVersion: u.securityVersion,
            last: u.last,
            healthy: await Promise.resolve(o.healthy()).catch(() => false),
          });
          return;
        }
        only('POST');
        upload(req, res);
        return;
      case '/api/v1/core/firmware/fetch': {
        only('POST');
        const body = await readJson(req, limit);
        const url = checkFetchUrl((body as { url?: unknown } | null)?.url);
        o.service.startFetch(url);
        send(res, 202, { result: 'accepted' });
        return;
      }
      case '/api/v1/core/config': {
        only('PUT');
        if (!o.applyConfig)
          throw new CoreApiError('CORE_ERR_NOT_AVAILABLE', 'configuration is not available on this build');
        const cfg = parseCoreConfig(await readJson(req, limit));
        const applied = await o.applyConfig(cfg);
        log.info('core_config_applied', { applied: applied.slice(0, 20), count: applied.length });
        send(res, 200, { applied });
        return;
      }
      default:
        throw new CoreApiError('CORE_ERR_NOT_FOUND', `no route ${method} ${path}`);
    }
  };
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    const peer = peerFingerprint(req);
    const access = decideCoreAccess({ ...peer, trustedCores: o.trustedCores() });
    if (!access.ok) {
      log.warn('core_api_refused', { code: access.code, fingerprint: peer.fingerprint, path });
      send(res, access.status, { code: access.code, message: access.message });
      req.resume();
      return;
    }
    if (access.fingerprint && !access.pinned)
      log.info('core_api_client', {
        fingerprint: access.fingerprint,
        pinned: false,
        path,
        method: req.method,
      });
    route(req, res, path).catch((err: unknown) => {
      const e = toCoreError(err);
      if (e.code === 'CORE_ERR_INTERNAL' || isUpdateError(err)) log.error('core_api_failed', { path, err });
      sendError(res, e);
      if (e.code === 'CORE_ERR_TOO_LARGE') req.destroy();
      else req.resume();
    });
  };
}

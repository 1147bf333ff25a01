/**
 * Pushing configuration to a peripheral over HTTPS (contract A: `PUT /api/v1/core/config` on the
 * Peripheral Manager's HTTPS port). The Core presents its client certificate; the peripheral's
 * server certificate is not CA-checked but must carry the pinned fingerprint (the same device
 * certificate the control link presented). A different certificate aborts before any byte of
 * the request body is sent.
 */
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { CoreError } from './errors.js';

export interface CoreConfigBody {
  design?: { name: string; code: string; role: string; primary: boolean; redundant: boolean };
  controls?: Record<string, number | string | boolean>;
}

export interface HttpsPinnedOptions {
  host: string;
  port: number;
  localAddress?: string;
  /** The Core's client certificate (absent: no client certificate is offered). */
  clientTls?: { key: string; cert: string } | null;
  /** Required server certificate fingerprint (node form 'AB:CD:..'); null = accept any (first use). */
  pinned: string | null;
  timeoutMs?: number;
}

export interface HttpsAnswer {
  status: number;
  body: unknown;
  /** The server certificate's fingerprint (to pin on first use). */
  fingerprint256: string | null;
}

/** One HTTPS request with a pinned server certificate. Rejects with CoreError on a pin mismatch. */
export function httpsPinned(
  o: HttpsPinnedOptions,
  method: string,
  path: string,
  body?: unknown,
): Promise<HttpsAnswer> {
  const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    let fingerprint: string | null = null;
    const req = https.request({
      host: o.host,
      port: o.port,
      method,
      path,
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      ...(o.clientTls ? { key: o.clientTls.key, cert: o.clientTls.cert } : {}),
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
      agent: false,
      timeout: o.timeoutMs ?? 5000,
      headers: payload
        ? { 'content-type': 'application/json', 'content-length': String(payload.length) }
        : {},
    });
    req.on('socket', (sock) => {
      (sock as TLSSocket).once('secureConnect', () => {
        fingerprint = (sock as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? null;
        if (o.pinned !== null && fingerprint !== o.pinned) {
          req.destroy(
            new CoreError(
              'CORE_ERR_PIN_MISMATCH',
              `${o.host}:${o.port} presents a certificate other than the pinned one`,
              {
                pinned: o.pinned,
                presented: fingerprint,
              },
            ),
          );
          return;
        }
        if (payload) req.end(payload);
        else req.end();
      });
    });
    req.on('timeout', () => req.destroy(new CoreError('CORE_ERR_HTTP', `${method} ${path}: timed out`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : null;
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, fingerprint256: fingerprint });
      });
      res.on('error', reject);
    });
  });
}

/**
 * PUT /api/v1/core/config. Resolves with the answer for 2xx; rejects with CORE_ERR_HTTP (status
 * in `detail.status`, the device's error code in `detail.code`) otherwise.
 */
export async function pushCoreConfig(o: HttpsPinnedOptions, body: CoreConfigBody): Promise<HttpsAnswer> {
  const a = await httpsPinned(o, 'PUT', '/api/v1/core/config', body);
  if (a.status < 200 || a.status >= 300) {
    const code = (a.body as { code?: unknown } | null)?.code;
    throw new CoreError('CORE_ERR_HTTP', `PUT /api/v1/core/config: HTTP ${a.status}`, {
      status: a.status,
      code: typeof code === 'string' ? code : null,
    });
  }
  return a;
}

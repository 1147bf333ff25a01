/**
 * After the emulated card reports READY=1, the boot smoke asks its Peripheral
 * Manager over the qemu user-mode port forwards (host loopback only): the UI
 * page over HTTPS (the device's own certificate, made on first boot) and the
 * plain-HTTP port. Thin I/O; the checks on the answer are pure.
 */
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import type { PeerCertificate } from 'node:tls';

export interface ManagerProbe {
  https: { status: number; subject: string; html: boolean };
  http: { status: number; location?: string };
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** What is wrong with a probe's answers, or null when the Manager looks right. Pure. */
export function judgeManagerProbe(p: ManagerProbe): string | null {
  if (p.https.status !== 200) return `HTTPS / answered ${p.https.status}`;
  if (!p.https.html) return 'HTTPS / did not return the UI page';
  if (!p.https.subject) return 'HTTPS certificate has no subject';
  if (p.http.status >= 500 || p.http.status === 0) return `HTTP / answered ${p.http.status}`;
  return null;
}

function once<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  return Promise.race([
    fn(),
    new Promise<T>((_r, rej) =>
      setTimeout(() => rej(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs).unref(),
    ),
  ]);
}

function getHttps(port: number): Promise<ManagerProbe['https']> {
  return new Promise((resolve, reject) => {
    // The device's certificate is self-signed on first boot: look at it, do not trust it.
    const req = request({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false }, (res) => {
      const cert = (res.socket as unknown as { getPeerCertificate(): PeerCertificate }).getPeerCertificate();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          subject: cert.subject?.CN ? String(cert.subject.CN) : '',
          html: /<html/i.test(body),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

function getHttp(port: number): Promise<ManagerProbe['http']> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/' }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          ...(res.headers.location ? { location: res.headers.location } : {}),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Ask the Manager through the forwards, retrying for up to `deadlineMs` (emulation is slow). */
export async function probeManager(
  ports: { https: number; http: number },
  deadlineMs: number,
): Promise<ManagerProbe> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      return {
        https: await once(() => getHttps(ports.https), 20_000),
        http: await once(() => getHttp(ports.http), 20_000),
      };
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

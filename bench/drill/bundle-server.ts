/**
 * The Core's bundle download server: HTTPS, GET with single byte ranges
 * (`Range: bytes=N-` and `N-M`), 416 for a range past the end. Files are
 * served from a map of URL path -> file.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';

/** Pure: parse a single-range Range header for a file of `size` bytes. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'none' | 'unsatisfiable' {
  if (!header) return 'none';
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'none';
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

export class BundleServer {
  private server: Server | null = null;
  readonly files = new Map<string, string>();
  requests = 0;
  rangeRequests = 0;

  constructor(private readonly tls: { cert: string; key: string }) {}

  async listen(host: string): Promise<number> {
    this.server = createServer({ cert: this.tls.cert, key: this.tls.key }, (req, res) => {
      void (async () => {
        this.requests++;
        const file = this.files.get(new URL(req.url ?? '/', 'https://x').pathname);
        if (req.method !== 'GET' || !file) {
          res.writeHead(req.method !== 'GET' ? 405 : 404).end();
          return;
        }
        const size = (await stat(file)).size;
        const r = parseRange(req.headers.range, size);
        if (r === 'unsatisfiable') {
          res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
          return;
        }
        if (r === 'none') {
          res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
          createReadStream(file).pipe(res);
          return;
        }
        this.rangeRequests++;
        res.writeHead(206, {
          'content-length': r.end - r.start + 1,
          'content-range': `bytes ${r.start}-${r.end}/${size}`,
          'accept-ranges': 'bytes',
        });
        createReadStream(file, { start: r.start, end: r.end }).pipe(res);
      })().catch(() => res.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, host, () => resolve());
    });
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/**
 * Resumable bundle download over HTTP(S). The head is verified (chain,
 * signature, policy) as soon as it has arrived; then every chunk is checked
 * against the signed hash as it streams in. Progress (the verified byte
 * count) is persisted at chunk boundaries after an fsync, so a restart asks
 * for `Range: bytes=<verified>-` and never trusts unverified bytes.
 * The body is read only up to the length the header declares (endless data).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import type { Logger } from '../log/logger.js';
import { BundleFile, verifyHead, type DevicePolicy, type VerifiedHead } from './bundle.js';
import {
  decodeHeader,
  HEADER_SIZE,
  MAX_ENVELOPE,
  MAX_MANIFEST,
  payloadAreaOffset,
  totalLength,
} from './bundle-codec.js';
import { UpdateError } from './errors.js';
import type { TrustStore } from './trust.js';

export interface DownloadOptions {
  url: string;
  /** Final path of the bundle; `<dest>.part` and `<dest>.progress` hold the partial state. */
  dest: string;
  trust: TrustStore;
  policy: DevicePolicy;
  logger: Logger;
  /** TLS material for HTTPS (mutual TLS when cert/key are given). */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** Stop after this many response bytes in one attempt (tests: simulate a cut). */
  cutAfterBytes?: number;
  timeoutMs?: number;
}

export interface DownloadResult {
  path: string;
  head: VerifiedHead;
  resumedFrom: number;
  bytesFetched: number;
}

interface Progress {
  url: string;
  verified: number;
}

/** Byte ranges [start, end) of every chunk in the payload area, with its hash. */
function chunkPlan(head: VerifiedHead): Array<{ start: number; end: number; hash: string }> {
  const base = payloadAreaOffset(head.header);
  const cs = head.manifest.chunkSize;
  const plan: Array<{ start: number; end: number; hash: string }> = [];
  for (const p of head.manifest.payloads) {
    p.chunks.forEach((hash, i) => {
      const start = base + p.offset + i * cs;
      plan.push({ start, end: Math.min(start + cs, base + p.offset + p.size), hash });
    });
  }
  return plan;
}

function get(url: string, headers: Record<string, string>, o: DownloadOptions): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      {
        method: 'GET',
        headers,
        timeout: o.timeoutMs ?? 30_000,
        ...(u.protocol === 'https:' ? (o.tls ?? {}) : {}),
      },
      resolve,
    );
    req.on('timeout', () => req.destroy(new UpdateError('UPDATE_ERR_DOWNLOAD', 'download timed out')));
    req.on('error', reject);
    req.end();
  });
}

export async function downloadBundle(o: DownloadOptions): Promise<DownloadResult> {
  const part = `${o.dest}.part`;
  const progressFile = `${o.dest}.progress`;
  const prev = (await readFileIfExists(progressFile))?.toString('utf8');
  let verified = 0;
  if (prev) {
    const p = JSON.parse(prev) as Progress;
    if (p.url === o.url) verified = p.verified;
  }
  const fh: FileHandle = await open(part, 'a+').then(async (h) => {
    await h.close();
    return open(part, 'r+');
  });
  let head: VerifiedHead | null = null;
  const resumedFrom = verified;
  let fetched = 0;
  try {
    await fh.truncate(verified);
    const checkHead = async (): Promise<VerifiedHead> => {
      await fh.sync();
      const f = await BundleFile.open(part);
      try {
        return await verifyHead(f, o.trust, o.policy, true);
      } finally {
        await f.close();
      }
    };
    if (verified > 0) head = await checkHead();
    const res = await get(o.url, verified > 0 ? { range: `bytes=${verified}-` } : {}, o);
    if (verified > 0 && res.statusCode === 200) {
      // The server ignored the range: start over.
      verified = 0;
      head = null;
      await fh.truncate(0);
    } else if (res.statusCode !== 200 && res.statusCode !== 206) {
      res.resume();
      throw new UpdateError('UPDATE_ERR_DOWNLOAD', `HTTP ${res.statusCode} from ${o.url}`);
    } else if (res.statusCode === 206) {
      const m = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
      if (!m || Number(m[1]) !== verified) {
        res.destroy();
        throw new UpdateError(
          'UPDATE_ERR_DOWNLOAD',
          `server answered range ${String(res.headers['content-range'])}, asked ${verified}-`,
        );
      }
    }
    let pos = verified;
    let plan = head ? chunkPlan(head) : null;
    let total = head ? totalLength(head.header) : HEADER_SIZE + MAX_MANIFEST + MAX_ENVELOPE;
    let ci = plan ? plan.findIndex((c) => c.end > pos) : 0;
    let hasher = createHash('sha256');
    let headEnd: number | null = head ? payloadAreaOffset(head.header) : null;
    const saveProgress = async (v: number): Promise<void> => {
      await fh.sync();
      await writeFileAtomic(progressFile, JSON.stringify({ url: o.url, verified: v } satisfies Progress));
      verified = v;
    };
    for await (const raw of res as AsyncIterable<Buffer>) {
      let data = raw;
      if (o.cutAfterBytes !== undefined && fetched + data.length > o.cutAfterBytes) {
        data = data.subarray(0, Math.max(0, o.cutAfterBytes - fetched));
      }
      if (pos + data.length > total) {
        res.destroy();
        throw new UpdateError(
          'UPDATE_ERR_OVERSIZED',
          `server sent more than the ${total} bytes the bundle declares`,
          { offset: total },
        );
      }
      await fh.write(data, 0, data.length, pos);
      fetched += data.length;
      let at = 0;
      while (at < data.length) {
        if (!plan) {
          // Still receiving the head: verify it as soon as it is complete.
          const nowPos = pos + data.length;
          if (nowPos < HEADER_SIZE) break;
          if (headEnd === null) {
            const hb = Buffer.alloc(HEADER_SIZE);
            await fh.read(hb, 0, HEADER_SIZE, 0);
            const h = decodeHeader(
              hb,
              o.policy.maxBundleBytes === undefined ? {} : { maxPayload: o.policy.maxBundleBytes },
            );
            total = totalLength(h);
            headEnd = payloadAreaOffset(h);
          }
          if (nowPos < headEnd) break;
          head = await checkHead();
          plan = chunkPlan(head);
          ci = 0;
          await saveProgress(headEnd);
          at = headEnd - pos;
          continue;
        }
        const c = plan[ci];
        if (!c) break;
        const abs = pos + at;
        const take = Math.min(c.end - abs, data.length - at);
        hasher.update(data.subarray(at, at + take));
        at += take;
        if (abs + take === c.end) {
          if (!timingSafeEqual(hasher.digest(), Buffer.from(c.hash, 'hex'))) {
            res.destroy();
            await fh.truncate(verified);
            throw new UpdateError(
              'UPDATE_ERR_HASH',
              `downloaded chunk at ${c.start} does not match the signed hash`,
              { offset: c.start },
            );
          }
          hasher = createHash('sha256');
          ci++;
          await saveProgress(c.end);
        }
      }
      pos += data.length;
      if (o.cutAfterBytes !== undefined && fetched >= o.cutAfterBytes) {
        res.destroy();
        throw new UpdateError('UPDATE_ERR_DOWNLOAD', 'connection cut');
      }
    }
    if (pos > total)
      throw new UpdateError('UPDATE_ERR_OVERSIZED', `server sent ${pos - total} bytes past the end`, {
        offset: total,
      });
    if (!head || pos !== total)
      throw new UpdateError('UPDATE_ERR_TRUNCATED', `download ended at ${pos} of ${total} bytes`, {
        offset: pos,
      });
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(part, o.dest);
  await rm(progressFile, { force: true });
  o.logger.info('update.downloaded', { url: o.url, resumedFrom, bytes: fetched });
  return { path: o.dest, head, resumedFrom, bytesFetched: fetched };
}

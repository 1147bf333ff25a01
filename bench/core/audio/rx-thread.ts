/**
 * The main-thread side of the receive worker (rx-worker.ts): one worker per process, shared by
 * every audio peer, started with the first receive side and ended with the last. `ThreadRx` has
 * the shape of RxSide with promises: open, snapshot, close.
 */
import type { Worker } from 'node:worker_threads';
import type { MediaClock } from '../../../firmware/audio/media-clock.js';
import { startSiblingWorker } from '../../../firmware/sibling-worker.js';
import type { Logger } from '../../../firmware/log/logger.js';
import { CoreAudioError } from './errors.js';
import type { RemoteSender } from './peer-stats.js';
import type { RxSideOptions, RxSnapshot } from './rx-side.js';
import type { RxReply, RxRequest } from './rx-worker.js';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type RequestBody = RxRequest extends infer R ? (R extends RxRequest ? Omit<R, 'reqId'> : never) : never;

class RxWorkerHost {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextReq = 1;
  private users = 0;
  logger: Logger | null = null;

  acquire(logger: Logger): void {
    this.users++;
    this.logger ??= logger;
    if (this.worker) return;
    const w = startSiblingWorker(import.meta.url, 'rx-worker');
    w.on('message', (m: RxReply) => this.onMessage(m));
    // A worker ended by release() may exit after a new one started: only the current one counts.
    w.on('error', (e) => {
      if (this.worker === w) this.failAll(e);
    });
    w.on('exit', (code) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.failAll(new Error(`receive worker exited (${code})`));
    });
    this.worker = w;
  }

  release(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0 || !this.worker) return;
    const w = this.worker;
    this.worker = null;
    this.logger = null;
    void w.terminate();
  }

  request(body: RequestBody): Promise<unknown> {
    const w = this.worker;
    if (!w) return Promise.reject(new CoreAudioError('CORE_AUDIO_ERR_STATE', 'receive worker not running'));
    const reqId = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.pending.set(reqId, { resolve, reject });
      w.postMessage({ ...body, reqId } as RxRequest);
    });
  }

  private onMessage(m: RxReply): void {
    if (m.op === 'log') {
      this.logger?.[m.level](m.event, m.fields);
      return;
    }
    const p = this.pending.get(m.reqId);
    if (!p) return;
    this.pending.delete(m.reqId);
    if (m.ok) p.resolve(m.value);
    else p.reject(Object.assign(new Error(m.message), m.code ? { code: m.code } : {}));
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

const host = new RxWorkerHost();
let nextId = 1;

/** One receive side in the shared worker. */
export class ThreadRx {
  private readonly id = nextId++;
  private acquired = false;

  constructor(
    private readonly o: RxSideOptions,
    private readonly mediaClock: MediaClock,
    private readonly logger: Logger,
    private readonly recvBufferSize = 8 * 1024 * 1024,
  ) {}

  async start(): Promise<void> {
    host.acquire(this.logger);
    this.acquired = true;
    await host.request({
      op: 'open',
      id: this.id,
      options: this.o,
      anchorNs: this.mediaClock.anchorNs.toString(),
      recvBufferSize: this.recvBufferSize,
    });
  }

  async snapshot(remoteSender: RemoteSender | null): Promise<RxSnapshot> {
    return (await host.request({
      op: 'snapshot',
      id: this.id,
      remoteSender,
      anchorNs: this.mediaClock.anchorNs.toString(),
    })) as RxSnapshot;
  }

  async close(): Promise<void> {
    if (!this.acquired) return;
    this.acquired = false;
    try {
      await host.request({ op: 'close', id: this.id });
    } finally {
      host.release();
    }
  }
}

/**
 * RxThread: the engine's side of the receive worker (rx-worker.ts). Starts the worker, opens and
 * closes streams in it (each call answered, errors carried back with their code), reads the
 * mixed frames out of the shared ring, and reads counters from the shared blocks.
 */
import type { Worker } from 'node:worker_threads';
import { QperiphError } from '../errors.js';
import { startSiblingWorker } from '../sibling-worker.js';
import type { Logger } from '../log/logger.js';
import type { ReceiverCounters } from './jitter-buffer.js';
import type { PlayoutMixCounters } from './playout-mix.js';
import type { ReceiverPath } from './receiver.js';
import type { AudioFormat } from './rtp-codec.js';
import {
  MIX_VALUES,
  readMixCounters,
  readRxCounters,
  readRxState,
  RING_CTL_WORDS,
  RING_READ,
  RING_WRITE,
  RX_COUNTER_VALUES,
  SharedBlock,
  type RxFromWorker,
  type RxState,
  type RxToWorker,
  type RxWorkerData,
} from './rx-shared.js';

export interface RxThreadOptions {
  channels: number;
  anchorNs: bigint;
  logger: Logger;
  recvBufferSize: number;
  /** Ring of mixed frames; a power of two, so positions stay continuous across the 2^32 wrap. */
  ringFrames?: number;
  mixFrames?: number;
  /** The worker's playout tick, us (default 1000; less runs a PeriodTicker in the worker). */
  tickUs?: number;
}

export interface RxThreadStream {
  id: string;
  format: AudioFormat;
  payloadType: number;
  delayFrames: number;
  paths: ReceiverPath[];
  ack: { ssrc: number; everyMs: number } | null;
  channelMap: number[];
}

export class RxThread {
  private worker: Worker | null = null;
  private readonly ring: Float32Array;
  private readonly ctl: Int32Array;
  private readonly mix = new SharedBlock(MIX_VALUES);
  private readonly counters = new Map<string, SharedBlock>();
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private nextReq = 1;
  private readonly ringFrames: number;
  private readonly channels: number;
  private readonly scratch: Float32Array;
  private exited: Promise<void> | null = null;
  /** Whether watch() is waiting on the ring. */
  private watching = false;
  /** Kernel thread id of the worker (Linux). */
  tid: number | null = null;

  constructor(private readonly o: RxThreadOptions) {
    this.channels = o.channels;
    this.ringFrames = o.ringFrames ?? 8192;
    if ((this.ringFrames & (this.ringFrames - 1)) !== 0)
      throw new QperiphError('AUDIO_ERR_STREAM', 'RX ring size must be a power of two');
    this.ring = new Float32Array(new SharedArrayBuffer(this.ringFrames * this.channels * 4));
    this.ctl = new Int32Array(new SharedArrayBuffer(RING_CTL_WORDS * 4));
    this.scratch = new Float32Array(this.ringFrames * this.channels);
  }

  get running(): boolean {
    return this.worker !== null;
  }

  async start(): Promise<void> {
    if (this.worker) return;
    const data: RxWorkerData = {
      role: 'rtp-receiver',
      channels: this.channels,
      ring: this.ring.buffer as SharedArrayBuffer,
      ringFrames: this.ringFrames,
      control: this.ctl.buffer as SharedArrayBuffer,
      mix: this.mix.buffer,
      anchorNs: this.o.anchorNs.toString(),
      recvBufferSize: this.o.recvBufferSize,
      mixFrames: this.o.mixFrames ?? 9600,
      tickUs: this.o.tickUs ?? 1000,
    };
    const w = startSiblingWorker(import.meta.url, 'rx-worker', data);
    this.worker = w;
    this.exited = new Promise((resolve) => w.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number): void =>
        reject(new QperiphError('AUDIO_ERR_WORKER', `receive worker exited (${code})`));
      w.once('error', reject);
      w.once('exit', onExit);
      w.once('message', (m: RxFromWorker) => {
        w.off('error', reject);
        w.off('exit', onExit);
        if (m.type === 'ready') this.tid = m.tid;
        resolve();
      });
    }).catch((e: unknown) => {
      this.worker = null;
      throw e;
    });
    w.on('message', (m: RxFromWorker) => this.onMessage(m));
    w.on('error', (e) => this.o.logger.warn('audio_rx_worker_error', { error: e }));
    w.once('exit', (code) => {
      if (this.worker === w) {
        this.worker = null;
        this.unwatch();
        this.o.logger.warn('audio_rx_worker_exited', { code });
      }
      for (const p of this.pending.values())
        p.reject(new QperiphError('AUDIO_ERR_WORKER', `receive worker exited (${code})`));
      this.pending.clear();
    });
  }

  private onMessage(m: RxFromWorker): void {
    if (m.type === 'log') {
      this.o.logger[m.level](m.event, m.fields);
      return;
    }
    if (m.type === 'opened' || m.type === 'closed' || m.type === 'failed') {
      const p = this.pending.get(m.req);
      this.pending.delete(m.req);
      if (!p) return;
      if (m.type === 'failed')
        p.reject(Object.assign(new Error(m.message), m.code !== null ? { code: m.code } : {}));
      else p.resolve();
    }
  }

  private call(msg: (req: number) => RxToWorker): Promise<void> {
    const w = this.worker;
    if (!w) return Promise.reject(new QperiphError('AUDIO_ERR_WORKER', 'receive worker not running'));
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.pending.set(req, { resolve, reject });
      w.postMessage(msg(req));
    });
  }

  /** Open a stream in the worker: its sockets are bound when this resolves; rejects with the OS error. */
  async open(s: RxThreadStream): Promise<void> {
    const block = new SharedBlock(RX_COUNTER_VALUES);
    await this.call((req) => ({ type: 'open', req, ...s, counters: block.buffer }));
    this.counters.set(s.id, block);
  }

  /** Close a stream: its sockets are closed when this resolves. */
  async close(id: string): Promise<void> {
    if (!this.counters.has(id)) return;
    if (!this.worker) {
      // The worker is gone and its sockets with it.
      this.counters.delete(id);
      return;
    }
    try {
      await this.call((req) => ({ type: 'close', req, id }));
    } finally {
      this.counters.delete(id);
    }
  }

  counterOf(id: string): (ReceiverCounters & { rejoins: number }) | null {
    const b = this.counters.get(id);
    return b ? readRxCounters(b) : null;
  }

  stateOf(id: string): RxState | null {
    const b = this.counters.get(id);
    return b ? readRxState(b) : null;
  }

  mixCounters(): PlayoutMixCounters {
    return readMixCounters(this.mix);
  }

  /** Frames waiting in the ring. */
  available(): number {
    return (Atomics.load(this.ctl, RING_WRITE) - Atomics.load(this.ctl, RING_READ)) | 0;
  }

  /**
   * Call `onFrames` whenever the worker has written frames into the ring (it notifies the ring's
   * write index after each tick), until stop(): the reader wakes with the writer instead of
   * polling on a timer of its own. Wakes coalesce; `onFrames` drains what is there.
   */
  watch(onFrames: () => void): void {
    if (this.watching) return;
    this.watching = true;
    const loop = async (): Promise<void> => {
      while (this.watching) {
        const seen = Atomics.load(this.ctl, RING_WRITE);
        if (seen === Atomics.load(this.ctl, RING_READ)) {
          const r = Atomics.waitAsync(this.ctl, RING_WRITE, seen);
          if (r.async) await r.value;
        }
        if (!this.watching) return;
        onFrames();
        // A reader that could not drain (no consumer) must not spin: yield to the event loop.
        if (this.available() > 0) await new Promise<void>((res) => setImmediate(res));
      }
    };
    void loop();
  }

  private unwatch(): void {
    if (!this.watching) return;
    this.watching = false;
    // Release a pending waitAsync: the write index is unchanged, so notify alone wakes it.
    Atomics.notify(this.ctl, RING_WRITE);
  }

  /** Hand every frame waiting in the ring to `emit` (in at most two pieces). Returns frames. */
  drain(emit: (samples: Float32Array, frames: number) => void): number {
    const w = Atomics.load(this.ctl, RING_WRITE);
    let r = Atomics.load(this.ctl, RING_READ);
    let left = (w - r) | 0;
    const total = left;
    const ch = this.channels;
    while (left > 0) {
      const at = (r >>> 0) % this.ringFrames;
      const n = Math.min(left, this.ringFrames - at);
      const piece = this.scratch.subarray(0, n * ch);
      piece.set(this.ring.subarray(at * ch, (at + n) * ch));
      r = (r + n) | 0;
      left -= n;
      // Free the ring before the (slower) card path runs.
      Atomics.store(this.ctl, RING_READ, r);
      emit(piece, n);
    }
    return total;
  }

  async stop(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    this.unwatch();
    w.postMessage({ type: 'stop' } satisfies RxToWorker);
    const t = setTimeout(() => void w.terminate(), 2000);
    await this.exited;
    clearTimeout(t);
    this.counters.clear();
  }
}

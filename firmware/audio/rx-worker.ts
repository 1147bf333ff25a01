/**
 * The receive worker thread (entry point; rx-thread.ts is the engine's side). It owns every RX
 * stream's sockets (real node:dgram through the audio datagram binding), jitter buffers, the
 * LAN A / LAN B merge and the playout mix, on its own event loop: a stalled main thread (GC, a
 * burst of HTTP requests) no longer makes packets late or lost.
 *
 * Every millisecond (or every `tickUs`, through a PeriodTicker, for low latency) it plays out all
 * streams at one local media time (RxMix), writes the mixed frames into the shared ring, wakes
 * the engine's reader (Atomics.notify on the ring's write index), and publishes each stream's
 * counters and the bus counters into their shared blocks. The hot path allocates nothing of its own: the jitter buffer scans
 * datagrams in place, media time comes from `performance.now()` mapped once onto the media
 * clock's anchor, and the tick timer is one Timeout refreshed. (node:dgram itself still hands
 * each datagram over in a new Buffer.)
 */
import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { createSystemClock } from '../clock/clock.js';
import { startPeriodTicker, type PeriodTicker } from '../clock/period-ticker.js';
import type { LogFields, Logger } from '../log/logger.js';
import { createAudioDatagramBinding } from './audio-datagram.js';
import { createFreeRunningClock, monotonicTsSource } from './media-clock.js';
import { RtpReceiver } from './receiver.js';
import { RxMix } from './rx-mix.js';
import {
  RING_READ,
  RING_WRITE,
  SharedBlock,
  writeMixCounters,
  writeRxCounters,
  type RxFromWorker,
  type RxOpenRequest,
  type RxState,
  type RxToWorker,
  type RxWorkerData,
} from './rx-shared.js';

function plain(v: unknown): unknown {
  if (v instanceof Error) {
    const code = (v as { code?: unknown }).code;
    return { name: v.name, message: v.message, ...(code !== undefined ? { code } : {}) };
  }
  return v;
}

/** A Logger that forwards records to the engine's logger. */
function workerLogger(post: (m: RxFromWorker) => void, bindings: LogFields): Logger {
  const emit =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (event: string, fields: LogFields = {}): void => {
      const f: Record<string, unknown> = { ...bindings };
      for (const [k, v] of Object.entries(fields)) f[k] = plain(v);
      post({ type: 'log', level, event, fields: f });
    };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (b) => workerLogger(post, { ...bindings, ...b }),
  };
}

interface WorkerStream {
  receiver: RtpReceiver;
  counters: SharedBlock;
}

function run(d: RxWorkerData, port: NonNullable<typeof parentPort>): void {
  const post = (m: RxFromWorker): void => port.postMessage(m);
  const ring = new Float32Array(d.ring);
  const ctl = new Int32Array(d.control);
  const mixBlock = new SharedBlock(d.mix);
  const ch = d.channels;
  const binding = createAudioDatagramBinding(d.recvBufferSize);
  const clock = createSystemClock();
  const anchor = BigInt(d.anchorNs);
  const mediaClock = createFreeRunningClock(0, anchor);
  const nowTs = monotonicTsSource(anchor);
  const rx = new RxMix(ch, d.mixFrames);
  const streams = new Map<string, WorkerStream>();
  const state: RxState = { depthPackets: 0, aligned: false, anchored: false };
  let ringOverflow = 0;
  let opening = 0;
  let stopping = false;

  const emit = (samples: Float32Array, frames: number): void => {
    const w = Atomics.load(ctl, RING_WRITE);
    const used = (w - Atomics.load(ctl, RING_READ)) | 0;
    const n = Math.min(frames, d.ringFrames - used);
    // The engine stopped reading for longer than the ring holds: what does not fit is skipped.
    if (n < frames) ringOverflow += frames - n;
    let at = ((w >>> 0) % d.ringFrames) * ch;
    const end = ring.length;
    for (let i = 0; i < n * ch; i++) {
      ring[at++] = samples[i]!;
      if (at === end) at = 0;
    }
    Atomics.store(ctl, RING_WRITE, (w + n) | 0);
    if (n > 0) Atomics.notify(ctl, RING_WRITE);
  };

  const publish = (): void => {
    for (const s of streams.values()) {
      const j = s.receiver.jitter;
      state.depthPackets = j.depthPackets();
      state.aligned = j.aligned;
      state.anchored = j.anchored;
      writeRxCounters(s.counters, j.counters, s.receiver.rejoins, state);
    }
    writeMixCounters(mixBlock, rx.mix.counters, ringOverflow);
  };

  // One Timeout for the life of the worker, re-armed with refresh(): no timer object per tick.
  let timer: NodeJS.Timeout | null = null;
  let armed = false;
  // Below 1 ms the tick comes from a PeriodTicker for the worker's life (coalesced, so it reads
  // the clock itself like the timer tick).
  const ticker: PeriodTicker | null =
    d.tickUs < 1000
      ? startPeriodTicker(d.tickUs, () => {
          if (armed) tick();
        })
      : null;
  const arm = (): void => {
    if (armed || stopping) return;
    armed = true;
    if (ticker) return;
    if (timer) timer.refresh();
    else timer = setTimeout(tick, 1);
  };
  function tick(): void {
    armed = false;
    try {
      rx.tick(nowTs(), emit);
      publish();
    } catch (e) {
      post({ type: 'log', level: 'warn', event: 'audio_mix_error', fields: { error: plain(e) } });
    }
    if (streams.size > 0 || opening > 0) arm();
  }

  const open = async (m: RxOpenRequest): Promise<void> => {
    let receiver: RtpReceiver | null = null;
    receiver = new RtpReceiver({
      binding,
      clock,
      mediaClock,
      nowTs,
      logger: workerLogger(post, { stream: m.id }),
      format: m.format,
      payloadType: m.payloadType,
      delayFrames: m.delayFrames,
      paths: m.paths,
      ack: m.ack,
      externalTick: true,
      sink: rx.sinkFor(() => receiver, m.format.channels, m.channelMap),
    });
    opening++;
    arm();
    try {
      await receiver.start();
    } catch (e) {
      opening--;
      await receiver.close();
      const code = (e as { code?: unknown }).code;
      post({
        type: 'failed',
        req: m.req,
        message: (e as Error).message,
        code: typeof code === 'string' ? code : null,
      });
      return;
    }
    opening--;
    const s: WorkerStream = { receiver, counters: new SharedBlock(m.counters) };
    streams.set(m.id, s);
    rx.add(m.id, { receiver, channels: m.format.channels, channelMap: m.channelMap });
    publish();
    post({ type: 'opened', req: m.req });
  };

  const close = async (id: string): Promise<void> => {
    const s = streams.get(id);
    streams.delete(id);
    rx.delete(id);
    if (s) {
      publish();
      await s.receiver.close();
    }
  };

  port.on('message', (m: RxToWorker) => {
    if (m.type === 'open') void open(m);
    else if (m.type === 'close') void close(m.id).then(() => post({ type: 'closed', req: m.req }));
    else if (m.type === 'stop') {
      stopping = true;
      if (timer) clearTimeout(timer);
      ticker?.stop();
      void Promise.all([...streams.keys()].map((id) => close(id))).then(() => {
        post({ type: 'stopped' });
        port.close();
      });
    }
  });

  let tid: number | null = null;
  try {
    tid = Number(readlinkSync('/proc/thread-self').split('/').pop()) || null;
  } catch {
    // not Linux
  }
  post({ type: 'ready', tid });
}

if (parentPort && (workerData as RxWorkerData | null)?.role === 'rtp-receiver')
  run(workerData as RxWorkerData, parentPort);

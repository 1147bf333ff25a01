/**
 * What the receive worker and the engine share: the mixed-frame ring, counter blocks, and the
 * messages between them. Pure layout code, imported by both threads.
 *
 * - Ring: interleaved float32 frames of the playback channels; the worker writes, the engine's
 *   playback writer reads. Int32 control words hold the write and read positions (frames,
 *   wrapping at 2^32 like the sender's ring).
 * - Counter blocks: float64 values behind a sequence word (a seqlock): the writer makes the word
 *   odd, writes, makes it even; a reader copies and retries if the word moved, so a status read
 *   never sees half a tick's counters, and 64-bit counters never wrap.
 */
import type { ReceiverCounters } from './jitter-buffer.js';
import type { PlayoutMixCounters } from './playout-mix.js';
import type { ReceiverPath } from './receiver.js';
import type { AudioFormat, RtpDecodeErrorCode } from './rtp-codec.js';

export const RING_WRITE = 0;
export const RING_READ = 1;
export const RING_CTL_WORDS = 4;

/** Malformed-datagram codes a receiver counts (the payload type has its own counter). */
export const MALFORMED_CODES: readonly RtpDecodeErrorCode[] = [
  'AUDIO_ERR_SHORT',
  'AUDIO_ERR_VERSION',
  'AUDIO_ERR_CSRC',
  'AUDIO_ERR_EXTENSION',
  'AUDIO_ERR_PADDING',
  'AUDIO_ERR_PAYLOAD_SIZE',
];

const SCALARS = [
  'received',
  'lost',
  'late',
  'duplicate',
  'merged',
  'reordered',
  'ssrcErrors',
  'payloadTypeErrors',
  'timestampErrors',
  'playedPackets',
  'jitter',
  'extendedHighestSeq',
] as const;

const C_PATH0 = SCALARS.length;
const C_PATH1 = C_PATH0 + 1;
const C_REJOINS = C_PATH0 + 2;
const C_DEPTH = C_PATH0 + 3;
const C_ALIGNED = C_PATH0 + 4;
const C_ANCHORED = C_PATH0 + 5;
const C_MALFORMED = C_PATH0 + 6;
export const RX_COUNTER_VALUES = C_MALFORMED + MALFORMED_CODES.length;

/** A seqlock-guarded block of float64 values in shared memory. */
export class SharedBlock {
  readonly buffer: SharedArrayBuffer;
  private readonly seq: Int32Array;
  readonly values: Float64Array;

  constructor(size: number | SharedArrayBuffer) {
    this.buffer = typeof size === 'number' ? new SharedArrayBuffer(8 + size * 8) : size;
    this.seq = new Int32Array(this.buffer, 0, 2);
    this.values = new Float64Array(this.buffer, 8);
  }

  /** Writer side: values written inside `begin()`..`end()` are seen together. */
  begin(): void {
    Atomics.add(this.seq, 0, 1);
  }

  end(): void {
    Atomics.add(this.seq, 0, 1);
  }

  /** Reader side: a consistent copy into `out` (tries a bounded number of times). */
  read(out: Float64Array): Float64Array {
    for (let i = 0; i < 1000; i++) {
      const s1 = Atomics.load(this.seq, 0);
      if (s1 & 1) continue;
      out.set(this.values);
      if (Atomics.load(this.seq, 0) === s1) return out;
    }
    out.set(this.values);
    return out;
  }
}

/** Receiver state the engine reports (and benchmarks read) besides the counters. */
export interface RxState {
  depthPackets: number;
  aligned: boolean;
  anchored: boolean;
}

/** Writer (worker): one receiver's counters and state into its block. No allocation. */
export function writeRxCounters(
  block: SharedBlock,
  c: ReceiverCounters,
  rejoins: number,
  state: RxState,
): void {
  const v = block.values;
  block.begin();
  for (let i = 0; i < SCALARS.length; i++) v[i] = c[SCALARS[i]!];
  v[C_PATH0] = c.perPath[0];
  v[C_PATH1] = c.perPath[1];
  v[C_REJOINS] = rejoins;
  v[C_DEPTH] = state.depthPackets;
  v[C_ALIGNED] = state.aligned ? 1 : 0;
  v[C_ANCHORED] = state.anchored ? 1 : 0;
  for (let i = 0; i < MALFORMED_CODES.length; i++) v[C_MALFORMED + i] = c.malformed[MALFORMED_CODES[i]!] ?? 0;
  block.end();
}

/** Reader (engine): the same shape `RtpReceiver.counters()` returns. */
export function readRxCounters(block: SharedBlock): ReceiverCounters & { rejoins: number } {
  const v = block.read(new Float64Array(RX_COUNTER_VALUES));
  const malformed: Record<string, number> = {};
  for (let i = 0; i < MALFORMED_CODES.length; i++)
    if (v[C_MALFORMED + i]! > 0) malformed[MALFORMED_CODES[i]!] = v[C_MALFORMED + i]!;
  const out = {} as ReceiverCounters & { rejoins: number };
  for (let i = 0; i < SCALARS.length; i++) out[SCALARS[i]!] = v[i]!;
  out.malformed = malformed;
  out.perPath = [v[C_PATH0]!, v[C_PATH1]!];
  out.rejoins = v[C_REJOINS]!;
  return out;
}

export function readRxState(block: SharedBlock): RxState {
  const v = block.read(new Float64Array(RX_COUNTER_VALUES));
  return { depthPackets: v[C_DEPTH]!, aligned: v[C_ALIGNED] === 1, anchored: v[C_ANCHORED] === 1 };
}

/** The mix block: the bus counters plus frames the ring had no room for (skipped). */
export const MIX_VALUES = 3;

export function writeMixCounters(block: SharedBlock, c: PlayoutMixCounters, ringOverflow: number): void {
  const v = block.values;
  block.begin();
  v[0] = c.droppedFrames;
  v[1] = c.skippedFrames + ringOverflow;
  v[2] = c.playedFrames - ringOverflow;
  block.end();
}

export function readMixCounters(block: SharedBlock): PlayoutMixCounters {
  const v = block.read(new Float64Array(MIX_VALUES));
  return { droppedFrames: v[0]!, skippedFrames: v[1]!, playedFrames: v[2]! };
}

export interface RxWorkerData {
  /** Marks this worker's data (other worker modules may be imported alongside). */
  role: 'rtp-receiver';
  channels: number;
  /** Interleaved float32 ring of `ringFrames` frames. */
  ring: SharedArrayBuffer;
  ringFrames: number;
  /** Int32 RING_* words. */
  control: SharedArrayBuffer;
  /** SharedBlock of MIX_VALUES. */
  mix: SharedArrayBuffer;
  /** Media clock anchor (ptpNs = monotonic ns + anchor), decimal. */
  anchorNs: string;
  /** SO_RCVBUF for the RTP sockets. */
  recvBufferSize: number;
  /** Bus capacity, frames. */
  mixFrames: number;
  /** Playout tick period, us: 1000 ticks on the event loop's timer, less through a PeriodTicker. */
  tickUs: number;
}

export interface RxOpenRequest {
  type: 'open';
  req: number;
  id: string;
  format: AudioFormat;
  payloadType: number;
  delayFrames: number;
  paths: ReceiverPath[];
  ack: { ssrc: number; everyMs: number } | null;
  channelMap: number[];
  /** SharedBlock of RX_COUNTER_VALUES. */
  counters: SharedArrayBuffer;
}

export type RxToWorker = RxOpenRequest | { type: 'close'; req: number; id: string } | { type: 'stop' };

export type RxFromWorker =
  | { type: 'ready'; tid: number | null }
  | { type: 'opened'; req: number }
  | { type: 'failed'; req: number; message: string; code: string | null }
  | { type: 'closed'; req: number }
  | {
      type: 'log';
      level: 'debug' | 'info' | 'warn' | 'error';
      event: string;
      fields: Record<string, unknown>;
    }
  | { type: 'stopped' };

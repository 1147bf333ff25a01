/**
 * RtpSender (main-thread side): owns the shared sample ring and the worker that paces packets.
 * The media timeline fixes each packet's RTP timestamp and due time; this class maps the due time
 * of packet 0 from PTP ns to the monotonic clock the worker reads.
 */
import { execFile } from 'node:child_process';
import type { Worker } from 'node:worker_threads';
import { QperiphError } from '../errors.js';
import { startSiblingWorker } from '../sibling-worker.js';
import { isMulticast } from './address.js';
import type { DatagramBinding, DatagramSocket } from '../net/datagram-binding.js';
import { decodeRtcp, type QlanAck, type ReceiverReport } from './rtcp-codec.js';
import type { MediaClock } from './media-clock.js';
import { MediaTimeline } from './media-timeline.js';
import { checkFormat, type AudioFormat } from './rtp-codec.js';
import {
  CTL_BUSY,
  CTL_DSCP_SET,
  CTL_LATE,
  CTL_READ,
  CTL_SEND_ERRORS,
  CTL_SENT,
  CTL_SKIPPED,
  CTL_STOP,
  CTL_UNDERRUN,
  CTL_WORDS,
  CTL_WRITE,
  type SenderWorkerData,
} from './sender-worker.js';

export interface RtpSenderOptions {
  format: AudioFormat;
  payloadType: number;
  destination: { address: string; port: number };
  bindAddress: string;
  /** Source port for RTP (0 = any). With `rtcp`, RTCP is received on sourcePort + 1. */
  sourcePort?: number;
  /** Listen for RTCP (Q-LAN acks, receiver reports) on sourcePort + 1 through this binding. */
  rtcp?: DatagramBinding | null;
  /** Required for multicast destinations: the local interface address to send from. */
  multicastInterface?: string | null;
  ttl?: number;
  /** DSCP code point (34 = AF41), or null to leave the default. */
  dscp?: number | null;
  ssrc: number;
  firstSequence?: number;
  clock: MediaClock;
  /** SDP mediaclk offset. */
  mediaclkOffset?: number;
  /** When more than this many packets behind, skip ahead (default 20 ms worth). */
  maxBurstPackets?: number;
  /** Packet 0 is due this long after the worker is ready (ns). Default 5 ms. */
  startDelayNs?: bigint;
  /** Ring capacity in frames (default 4800, 100 ms); the ring's storage is the next power of two. */
  ringFrames?: number;
  /**
   * Ring index of the first frame (default 0). The indices are int32 and wrap; tests start them
   * just below a wrap to prove the ring does not glitch there (a day of audio in real time).
   */
  firstRingIndex?: number;
  buffers?: number;
  leadUs?: number;
  /**
   * Busy-wait the last `leadUs` (adaptive) before each deadline (default true): tight pacing for
   * a device. false sleeps until the deadline instead: far less CPU, pacing as loose as the
   * futex wake-up (benches running many streams on one machine).
   */
  busyWait?: boolean;
  /**
   * On an empty ring: 'keep-time' (default) sends silence and drops those frames when they arrive
   * late, so latency never grows; 'hold' sends silence and keeps every frame (file playback, tests).
   */
  underrun?: 'keep-time' | 'hold';
  /** Record per-packet lateness for the first N packets (benchmarks). */
  lateLogPackets?: number;
  /**
   * Give the worker thread SCHED_FIFO at this priority (1..99) with `chrt -f -p PRIO TID`; needs
   * CAP_SYS_NICE. Off by default: a real-time spinner per stream is for a device, not a bench of
   * 100 virtual peripherals.
   */
  rtPriority?: number | null;
  /** The chrt binary (tests). */
  chrtPath?: string;
  /** Timer slack of the worker thread, ns (default 1; null leaves the process default of 50 us). */
  timerSlackNs?: number | null;
}

export interface SenderCounters {
  sent: number;
  underruns: number;
  bufferBusy: number;
  late: number;
  sendErrors: number;
  /** Packets skipped after a stall (time and audio kept aligned). */
  skipped: number;
  /** Times the writer was put back ahead of the sender (resync) after falling behind for good. */
  resyncs: number;
  dscp: 'set' | 'failed' | 'off';
}

export class RtpSender {
  private tl: MediaTimeline | null = null;
  private readonly ring: Float32Array;
  private readonly ctl: Int32Array;
  readonly lateLog: Float64Array;
  private worker: Worker | null = null;
  private rtcpSock: DatagramSocket | null = null;
  /** Last Q-LAN ack / receiver report heard, and how many. */
  lastAck: QlanAck | null = null;
  lastReport: ReceiverReport | null = null;
  acksReceived = 0;
  /** Frames written after their packet had already gone out as silence. */
  droppedLate = 0;
  /** See resync(). */
  resyncs = 0;
  rtcpErrors = 0;
  private readonly ringFrames: number;
  /**
   * Frames of storage: a power of two, so that `index & (slots - 1)` stays continuous when the
   * int32 indices wrap at 2^32 (with 4800 slots the 2^32 wrap fell mid-ring: one glitch a day).
   */
  private readonly slots: number;
  private readonly channels: number;
  /** Kernel thread id of the worker (Linux), for real-time priority. */
  tid: number | null = null;
  /** Scheduling of the worker thread: 'fifo' once chrt succeeded. */
  rt: 'off' | 'fifo' | 'failed' = 'off';
  rtError: string | null = null;
  /** Why the worker's timer slack could not be set (null: set, or not asked). */
  timerSlackError: string | null = null;

  constructor(private readonly o: RtpSenderOptions) {
    checkFormat(o.format);
    const multicast = isMulticast(o.destination.address);
    if (multicast && !o.multicastInterface)
      throw new QperiphError(
        'AUDIO_ERR_STREAM',
        'multicast destination needs an explicit multicastInterface',
      );
    this.channels = o.format.channels;
    this.ringFrames = o.ringFrames ?? 4800;
    if (
      !Number.isInteger(this.ringFrames) ||
      this.ringFrames < o.format.framesPerPacket ||
      this.ringFrames > 1 << 24
    )
      throw new QperiphError('AUDIO_ERR_STREAM', `ringFrames ${this.ringFrames} out of range`);
    this.slots = nextPowerOfTwo(this.ringFrames);
    this.ring = new Float32Array(new SharedArrayBuffer(this.slots * this.channels * 4));
    this.ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
    const first = (o.firstRingIndex ?? 0) | 0;
    this.ctl[CTL_WRITE] = first;
    this.ctl[CTL_READ] = first;
    this.lateLog = new Float64Array(new SharedArrayBuffer((o.lateLogPackets ?? 0) * 8));
  }

  /** Ring capacity, frames. */
  get capacity(): number {
    return this.ringFrames;
  }

  /** Frames in the ring, not yet sent. */
  fill(): number {
    return this.ringFrames - this.space();
  }

  /** Frames the ring can take now. */
  space(): number {
    const used = (Atomics.load(this.ctl, CTL_WRITE) - Atomics.load(this.ctl, CTL_READ)) | 0;
    return this.ringFrames - used;
  }

  /** Append interleaved frames to the ring. Returns frames accepted (less than asked if full). */
  write(src: Float32Array, frames: number, srcOffset = 0): number {
    let w = Atomics.load(this.ctl, CTL_WRITE);
    let dropped = 0;
    const behind = -((w - Atomics.load(this.ctl, CTL_READ)) | 0);
    if (behind > 0) {
      // The sender already played silence for these frames (underrun, keep-time): drop them.
      const drop = Math.min(behind, frames);
      this.droppedLate += drop;
      dropped = drop;
      w = (w + drop) | 0;
      Atomics.store(this.ctl, CTL_WRITE, w);
      frames -= drop;
      srcOffset += drop * this.channels;
      if (frames === 0) return drop;
    }
    const n = Math.min(frames, this.space());
    const ch = this.channels;
    const mask = this.slots - 1;
    for (let f = 0; f < n; f++) {
      const at = ((w + f) & mask) * ch;
      for (let c = 0; c < ch; c++) this.ring[at + c] = src[srcOffset + f * ch + c]!;
    }
    Atomics.store(this.ctl, CTL_WRITE, (w + n) | 0);
    return n + dropped;
  }

  /**
   * Put the write position `leadFrames` ahead of the read position, the gap filled with silence.
   * For a writer that fell behind the sender for good: with keep-time every frame it writes is
   * already stale and dropped, so without this the stream stays silent until the drift loop's
   * 0.1 % closes the gap. Counted in `resyncs`. Returns the fill after it.
   */
  resync(leadFrames: number): number {
    const lead = Math.max(0, Math.min(Math.floor(leadFrames), this.ringFrames));
    const r = Atomics.load(this.ctl, CTL_READ);
    const ch = this.channels;
    // The worker reads nothing past the write position, so these slots are free to fill: from
    // the read slot to the end of the storage, and the rest from its start (lead <= slots).
    const at = r & (this.slots - 1);
    const first = Math.min(lead, this.slots - at);
    this.ring.fill(0, at * ch, (at + first) * ch);
    this.ring.fill(0, 0, (lead - first) * ch);
    Atomics.store(this.ctl, CTL_WRITE, (r + lead) | 0);
    this.resyncs++;
    return this.fill();
  }

  /** The stream's timeline; set by `start()`. */
  get timeline(): MediaTimeline {
    if (!this.tl) throw new QperiphError('AUDIO_ERR_STREAM', 'sender not started');
    return this.tl;
  }

  async start(): Promise<void> {
    if (this.o.rtcp && this.o.sourcePort) {
      const r = this.o.rtcp.createUdp4({ reuseAddr: true });
      r.onMessage((data) => {
        try {
          for (const p of decodeRtcp(data)) {
            if (p.type === 'qlan-ack') {
              this.lastAck = p;
              this.acksReceived++;
            } else if (p.type === 'rr') this.lastReport = p;
          }
        } catch {
          this.rtcpErrors++;
        }
      });
      r.onError(() => undefined);
      await r.bind(this.o.sourcePort + 1, this.o.bindAddress);
      this.rtcpSock = r;
    }
    const data: SenderWorkerData = {
      role: 'rtp-sender',
      host: this.o.destination.address,
      port: this.o.destination.port,
      bindAddress: this.o.bindAddress,
      sourcePort: this.o.sourcePort ?? 0,
      multicastInterface: this.o.multicastInterface ?? null,
      ttl: this.o.ttl ?? 16,
      dscp: this.o.dscp === undefined ? 34 : this.o.dscp,
      encoding: this.o.format.encoding,
      channels: this.channels,
      framesPerPacket: this.o.format.framesPerPacket,
      payloadType: this.o.payloadType,
      ssrc: this.o.ssrc >>> 0,
      firstSequence: this.o.firstSequence ?? 0,
      packetNs: (this.o.format.framesPerPacket * 1e9) / 48000,
      maxBurstPackets:
        this.o.maxBurstPackets ?? Math.max(4, Math.round((48 * 20) / this.o.format.framesPerPacket)),
      ring: this.ring.buffer as SharedArrayBuffer,
      slots: this.slots,
      control: this.ctl.buffer as SharedArrayBuffer,
      lateLog: this.lateLog.buffer as SharedArrayBuffer,
      leadUs: this.o.leadUs ?? 100,
      busyWait: this.o.busyWait ?? true,
      buffers: this.o.buffers ?? 64,
      underrun: this.o.underrun ?? 'keep-time',
      timerSlackNs: this.o.timerSlackNs === undefined ? 1 : this.o.timerSlackNs,
    };
    const w = startSiblingWorker(import.meta.url, 'sender-worker', data);
    this.worker = w;
    await new Promise<void>((resolve, reject) => {
      w.once('message', (m: { tid?: number | null; slackError?: string | null }) => {
        this.tid = m.tid ?? null;
        this.timerSlackError = m.slackError ?? null;
        const startPtp = this.o.clock.nowNs() + (this.o.startDelayNs ?? 5_000_000n);
        const tl = new MediaTimeline(startPtp, this.o.format.framesPerPacket, this.o.mediaclkOffset ?? 0);
        this.tl = tl;
        w.postMessage({
          startMonoNs: (tl.anchor.firstDueNs - this.o.clock.anchorNs).toString(),
          firstTimestamp: tl.anchor.firstTimestamp,
        });
        resolve();
      });
      w.once('error', reject);
      w.once('exit', (code) =>
        reject(new QperiphError('AUDIO_ERR_WORKER', `sender worker exited (${code})`)),
      );
    });
    if (this.o.rtPriority) await this.applyRealtime();
  }

  /**
   * Ask for SCHED_FIFO on the worker thread (`rtPriority`), after start. Resolves with the result;
   * never throws (a failure is kept in `rt`/`rtError` and the sender keeps running at normal
   * priority).
   */
  async applyRealtime(): Promise<'off' | 'fifo' | 'failed'> {
    const prio = this.o.rtPriority;
    if (!prio) return (this.rt = 'off');
    if (!this.tid || !Number.isInteger(prio) || prio < 1 || prio > 99) {
      this.rtError = this.tid ? `priority ${prio} out of 1..99` : 'no worker thread id';
      return (this.rt = 'failed');
    }
    const tid = this.tid;
    return new Promise((resolve) => {
      execFile(this.o.chrtPath ?? 'chrt', ['-f', '-p', String(prio), String(tid)], (err, _o, stderr) => {
        if (err) {
          this.rtError = (stderr || err.message).trim().slice(0, 200);
          this.rt = 'failed';
        } else this.rt = 'fifo';
        resolve(this.rt);
      });
    });
  }

  /** Thread id of the worker (for `chrt -f -p PRIO TID` style real-time priority). */
  get threadId(): number | null {
    return this.worker?.threadId ?? null;
  }

  counters(): SenderCounters {
    const d = Atomics.load(this.ctl, CTL_DSCP_SET);
    return {
      sent: Atomics.load(this.ctl, CTL_SENT),
      underruns: Atomics.load(this.ctl, CTL_UNDERRUN),
      bufferBusy: Atomics.load(this.ctl, CTL_BUSY),
      late: Atomics.load(this.ctl, CTL_LATE),
      sendErrors: Atomics.load(this.ctl, CTL_SEND_ERRORS),
      skipped: Atomics.load(this.ctl, CTL_SKIPPED),
      resyncs: this.resyncs,
      dscp: d === 1 ? 'set' : d === -1 ? 'failed' : 'off',
    };
  }

  async stop(): Promise<void> {
    await this.rtcpSock?.close();
    this.rtcpSock = null;
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    Atomics.store(this.ctl, CTL_STOP, 1);
    Atomics.notify(this.ctl, 8);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void w.terminate().then(() => resolve()), 2000);
      w.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

export { isMulticast } from './address.js';

/** Smallest power of two >= n (n >= 1). */
export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

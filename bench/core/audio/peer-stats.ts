/**
 * The audio peer's bookkeeping, pure: one-way transit times, levels, and the loss figures built
 * from the receivers' counters (ours for peripheral -> Core, the peripheral's Stream.List counters
 * for Core -> peripheral).
 */
import { estimateFrequency } from '../../../firmware/audio/dsp.js';
import type { RxSnapshot } from './rx-side.js';

/** One-way transit samples in a fixed histogram: 0.05 ms bins up to 500 ms (later = last bin). */
export class TransitStats {
  static readonly BIN_MS = 0.05;
  private readonly bins = new Uint32Array(10_000);
  count = 0;
  private sum = 0;
  minMs = Infinity;
  maxMs = -Infinity;

  add(ms: number): void {
    if (!Number.isFinite(ms)) return;
    this.count++;
    this.sum += ms;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
    const i = Math.min(this.bins.length - 1, Math.max(0, Math.floor(ms / TransitStats.BIN_MS)));
    this.bins[i] = this.bins[i]! + 1;
  }

  get meanMs(): number | null {
    return this.count ? this.sum / this.count : null;
  }

  /** Upper edge of the bin holding quantile q (0..1), or null without samples. */
  quantileMs(q: number): number | null {
    if (!this.count) return null;
    const want = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.bins.length; i++) {
      seen += this.bins[i]!;
      if (seen >= want) return (i + 1) * TransitStats.BIN_MS;
    }
    return this.bins.length * TransitStats.BIN_MS;
  }
}

/**
 * RTP sequence numbers as they arrive on the wire (before any jitter buffer): the span from the
 * first to the highest extended sequence number, and how many distinct packets of it arrived.
 * Gaps are wire loss, or packets the sender skipped after a stall (its own counter says how many).
 */
export class SeqTracker {
  private readonly seen = new Uint8Array(65536);
  private first = -1;
  private highest = -1;
  unique = 0;
  duplicates = 0;

  push(seq16: number): void {
    const s = seq16 & 0xffff;
    if (this.highest < 0) {
      this.first = this.highest = s;
      this.seen[s] = 1;
      this.unique = 1;
      return;
    }
    let ext = this.highest - (this.highest & 0xffff) + s;
    if (ext < this.highest - 32768) ext += 65536;
    else if (ext > this.highest + 32768) ext -= 65536;
    // Older than the first packet (or too old to tell): outside the span we judge.
    if (ext < this.first || ext <= this.highest - 32768) return;
    if (ext > this.highest) {
      for (let e = this.highest + 1; e < ext && e <= this.highest + 65536; e++) this.seen[e & 0xffff] = 0;
      this.highest = ext;
      this.seen[s] = 0;
    }
    if (this.seen[s]) this.duplicates++;
    else {
      this.seen[s] = 1;
      this.unique++;
    }
  }

  /** Packets in the span first..highest (0 before the first packet). */
  get expected(): number {
    return this.highest < 0 ? 0 : this.highest - this.first + 1;
  }

  /** Extended sequence numbers of the first packet and the highest so far (-1 before any). */
  get firstExt(): number {
    return this.first;
  }
  get highestExt(): number {
    return this.highest;
  }

  /** Distinct packets with an extended sequence number below `bound`. */
  uniqueBelow(bound: number): number {
    if (this.highest < 0 || bound > this.highest) return this.unique;
    let above = 0;
    for (let e = Math.max(bound, this.highest - 65535, this.first); e <= this.highest; e++)
      above += this.seen[e & 0xffff]!;
    return this.unique - above;
  }

  /**
   * Wire figures up to the sender's own count: `used` sequence numbers handed out by the sender
   * (sent + not sent, from its counters), `notSent` of them skipped. Only the span we have seen
   * is judged (the tail may still be in flight).
   */
  wireUpTo(used: number, notSent: number): WireStats {
    if (this.highest < 0) return wireStats(0, 0, 0);
    const bound = Math.min(used, this.highest + 1);
    return wireStats(Math.max(0, bound - this.first), this.uniqueBelow(bound), notSent);
  }
}

/** Wire loss of one direction: gaps in the sequence numbers the sender did not skip on purpose. */
export interface WireStats {
  expected: number;
  arrived: number;
  /** Sequence numbers the sender used up without sending (skipped after a stall, buffer busy). */
  notSent: number;
  lost: number;
  lossPct: number;
}

export function wireStats(expected: number, arrived: number, notSent: number): WireStats {
  const lost = Math.max(0, expected - arrived - notSent);
  return { expected, arrived, notSent, lost, lossPct: expected > 0 ? (100 * lost) / expected : 0 };
}

export interface Level {
  peakDb: number;
  rmsDb: number;
}

/**
 * Peak and RMS per channel over a window, plus the frequency of channel 1 (zero crossings of the
 * last `historyFrames` frames). `read()` closes the window; a window with no audio keeps the
 * previous reading, so a stats() call between two packets does not show silence.
 */
/**
 * This many exact zeros in a row are silence sent in place of audio (an underrun sends a packet
 * of zeros), not signal: a tone never holds exactly 0 for 16 samples. Left in the history they
 * stretch the crossing span with no crossings and read low (960 Hz for 1 kHz with 4 % of it
 * silent).
 */
const SILENT_RUN_FRAMES = 16;

export class LevelTracker {
  private readonly peak: Float64Array;
  private readonly sumSq: Float64Array;
  private frames = 0;
  private last: Level[];
  private readonly history: Float32Array;
  private histFill = 0;
  /** Exact zeros in a row on channel 0 (see SILENT_RUN_FRAMES). */
  private zeroRun = 0;
  private lastHz = 0;
  private readonly hold: Float64Array;

  constructor(
    readonly channels: number,
    historyFrames = 4800,
  ) {
    this.peak = new Float64Array(channels);
    this.sumSq = new Float64Array(channels);
    this.last = Array.from({ length: channels }, () => ({ peakDb: -Infinity, rmsDb: -Infinity }));
    this.history = new Float32Array(historyFrames);
    this.hold = new Float64Array(channels);
  }

  /** A packet went missing: the frequency history restarts (a splice would fake a frequency). */
  gap(): void {
    this.histFill = 0;
  }

  feed(samples: Float32Array, frames: number): void {
    const ch = this.channels;
    for (let f = 0; f < frames; f++) {
      for (let c = 0; c < ch; c++) {
        const v = samples[f * ch + c]!;
        const a = v < 0 ? -v : v;
        if (a > this.peak[c]!) this.peak[c] = a;
        if (a > this.hold[c]!) this.hold[c] = a;
        this.sumSq[c] = this.sumSq[c]! + v * v;
      }
      const v0 = samples[f * ch]!;
      this.zeroRun = v0 === 0 ? this.zeroRun + 1 : 0;
      // Silence inside the stream (a sender's underrun packets) is a gap too.
      if (this.zeroRun >= SILENT_RUN_FRAMES) {
        this.histFill = 0;
        continue;
      }
      this.history[this.histFill++] = v0;
      if (this.histFill === this.history.length) {
        this.lastHz = estimateFrequency(this.history);
        this.histFill = 0;
      }
    }
    this.frames += frames;
  }

  read(): Level[] {
    if (this.frames > 0) {
      this.last = Array.from({ length: this.channels }, (_, c) => ({
        peakDb: 20 * Math.log10(this.peak[c]!),
        rmsDb: 20 * Math.log10(Math.sqrt(this.sumSq[c]! / this.frames)),
      }));
      this.peak.fill(0);
      this.sumSq.fill(0);
      this.frames = 0;
    }
    return this.last.map((l) => ({ ...l }));
  }

  /**
   * Frequency of channel 1 (Hz) over the last complete run of `historyFrames` contiguous frames
   * (no missing packet and no run of silence inside), 0 before the first.
   */
  frequencyHz(): number {
    return this.lastHz;
  }

  /** Highest peak per channel since creation, dBFS. */
  peakHoldDb(): number[] {
    return Array.from(this.hold, (p) => 20 * Math.log10(p));
  }
}

/** What a receiver reports (our JitterBuffer counters, or the peripheral's via Stream.List). */
export interface ReceiveCounters {
  received: number;
  /** Extended highest sequence number seen (the peripheral's counters; ours come from SeqTracker). */
  extendedHighestSeq: number;
  timestampErrors: number;
  lost: number;
  late: number;
  duplicate: number;
  reordered: number;
  playedPackets: number;
}

export interface DirectionStats extends ReceiveCounters {
  /** lost / playedPackets x 100 (a late packet's slot also counts as lost), 0 before playout. */
  lossPct: number;
}

export function lossPct(c: Pick<ReceiveCounters, 'lost' | 'playedPackets'>): number {
  if (!(c.playedPackets > 0)) return 0;
  return (100 * Math.min(c.lost, c.playedPackets)) / c.playedPackets;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Receive counters out of an engine counters object (unknown shape from the wire: missing = 0). */
export function readCounters(raw: unknown): ReceiveCounters | null {
  if (!raw || typeof raw !== 'object') return null;
  const r = raw as Record<string, unknown>;
  if (typeof r['received'] !== 'number') return null;
  return {
    received: num(r['received']),
    extendedHighestSeq: num(r['extendedHighestSeq']),
    timestampErrors: num(r['timestampErrors']),
    lost: num(r['lost']),
    late: num(r['late']),
    duplicate: num(r['duplicate']),
    reordered: num(r['reordered']),
    playedPackets: num(r['playedPackets']),
  };
}

export function directionStats(c: ReceiveCounters): DirectionStats {
  return { ...c, lossPct: lossPct(c) };
}

/** A sender's counters as Stream.List shows them (unknown shape: missing = 0). */
export interface RemoteSender {
  sent: number;
  /** Sequence numbers used without sending (skipped after a stall + buffer busy). */
  notSent: number;
  /** Packets sent as silence because the sender's ring was empty (its card or host fell behind). */
  underruns: number;
}

export function readSenderCounters(raw: unknown): RemoteSender | null {
  if (!raw || typeof raw !== 'object') return null;
  const r = raw as Record<string, unknown>;
  if (typeof r['sent'] !== 'number') return null;
  return {
    sent: num(r['sent']),
    notSent: num(r['skipped']) + num(r['bufferBusy']),
    underruns: num(r['underruns']),
  };
}

export interface PeerStats {
  peripheral: string;
  format: 'qlan' | 'aes67';
  /** Packets the Core sent to the peripheral. */
  txPackets: number;
  /** Packets the Core received from the peripheral (unique, in time or late). */
  rxPackets: number;
  /**
   * Wire loss, the worse of the two directions, percent: sequence-number gaps the sender did not
   * cause itself. 0 on an idle loopback. Needs a poll() (the peripheral's counters) first.
   */
  lossPct: number;
  /**
   * Playout loss, the worse direction, percent of jitter-buffer slots that played empty (wire loss
   * plus packets that came too late or were skipped by a stalled sender: host scheduling shows here).
   */
  playoutLossPct: number;
  /**
   * Mean one-way transit peripheral -> Core in ms: arrival on the Core's media clock minus the
   * packet's RTP timestamp (sender pacing + scheduling + network). Not the jitter buffer's delay
   * (that is `latency.playoutDelayMs`) and not ADC-to-DAC: the virtual card has no loopback.
   */
  latencyMs: number | null;
  latency: {
    kind: 'one-way-transit';
    samples: number;
    meanMs: number | null;
    p50Ms: number | null;
    p99Ms: number | null;
    maxMs: number | null;
    minMs: number | null;
    playoutDelayMs: number;
  };
  meters: {
    /** What the Core received from the peripheral's inputs (per channel). */
    received: Level[];
    /** Highest peak per channel since start (dBFS) of what the Core received. */
    receivedPeakHold: number[];
    /** Frequency of channel 1 of what the Core received (Hz; last 100 ms without a gap). */
    receivedHz: number;
    /** The peripheral's output meters (audio.out.N.peak/rms) as of the last poll(); null before. */
    peripheralOutput: Level[] | null;
  };
  tx: {
    sent: number;
    underruns: number;
    late: number;
    sendErrors: number;
    skipped: number;
    /** Q-LAN acks heard on the RTCP port. */
    acks: number;
    /** The peripheral's receive counters for our stream, as of the last poll(); null before. */
    remote: DirectionStats | null;
    /** From the peripheral's counters (null before the first poll()). */
    wire: WireStats | null;
  };
  rx: DirectionStats & {
    jitterMs: number;
    malformed: number;
    ssrcErrors: number;
    /** Null until a poll() has read the peripheral's sender counters. */
    wire: WireStats | null;
    /** The peripheral's sender as of the last poll() (null before). */
    remoteSender: RemoteSender | null;
  };
}

export interface SummaryInput {
  peripheral: string;
  format: 'qlan' | 'aes67';
  sender: { sent: number; underruns: number; late: number; sendErrors: number; skipped: number };
  /** Our sender's sequence numbers used without sending (skipped + bufferBusy). */
  senderNotSent: number;
  /** Our sender's first sequence number. */
  firstSequence: number;
  acks: number;
  remote: ReceiveCounters | null;
  remoteSender: RemoteSender | null;
  /** Our sender's notSent when the peripheral's counters were read (poll()). */
  senderNotSentAtPoll: number | null;
  /** The Core's receive side (rx-side.ts), possibly from the receive worker. */
  rx: RxSnapshot;
  playoutDelayMs: number;
  peripheralOutput: Level[] | null;
}

export function summarize(i: SummaryInput): PeerStats {
  const receiver = i.rx.counters;
  const rx = directionStats(receiver);
  const remote = i.remote ? directionStats(i.remote) : null;
  const t = i.rx.transit;
  const txWire = i.remote
    ? wireStats(
        Math.max(0, i.remote.extendedHighestSeq - i.firstSequence + 1),
        i.remote.received + i.remote.late + i.remote.timestampErrors,
        i.senderNotSentAtPoll ?? i.senderNotSent,
      )
    : null;
  // Without the sender's counters a gap cannot be told from a skip: no figure rather than a wrong one.
  const rxWire = i.remoteSender ? i.rx.wire : null;
  return {
    peripheral: i.peripheral,
    format: i.format,
    txPackets: i.sender.sent,
    rxPackets: receiver.received + receiver.late,
    lossPct: Math.max(rxWire?.lossPct ?? 0, txWire?.lossPct ?? 0),
    playoutLossPct: Math.max(rx.lossPct, remote?.lossPct ?? 0),
    latencyMs: t.meanMs,
    latency: {
      kind: 'one-way-transit',
      samples: t.samples,
      meanMs: t.meanMs,
      p50Ms: t.p50Ms,
      p99Ms: t.p99Ms,
      maxMs: t.maxMs,
      minMs: t.minMs,
      playoutDelayMs: i.playoutDelayMs,
    },
    meters: {
      received: i.rx.received,
      receivedPeakHold: i.rx.receivedPeakHold,
      receivedHz: i.rx.receivedHz,
      peripheralOutput: i.peripheralOutput,
    },
    tx: { ...i.sender, acks: i.acks, remote, wire: txWire },
    rx: {
      ...rx,
      jitterMs: receiver.jitter / 48,
      malformed: Object.values(receiver.malformed).reduce((a, b) => a + b, 0),
      ssrcErrors: receiver.ssrcErrors,
      wire: rxWire,
      remoteSender: i.remoteSender,
    },
  };
}

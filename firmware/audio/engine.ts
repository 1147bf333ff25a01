/**
 * AudioEngine: the stream API the control link and the manager call.
 *
 * Capture (sound card, through the AudioBinding) -> per-channel gain/mute and meters -> drift
 * compensation (resampler steered by the sender ring's fill) -> one RtpSender per TX stream
 * (channel map picks capture channels). RX streams (RtpReceiver, jitter buffer, optional LAN B
 * path merged ST 2022-7 style) -> channel map -> PlayoutMix (one local media timeline: streams
 * sharing an output channel are summed sample by sample) -> output gain/mute and meters ->
 * playback. One playout tick drives every receiver, then takes the mix up to the earliest frame
 * any anchored stream has still to deliver.
 *
 * Where receive runs (`rxThread`): with real sockets (the audio datagram binding) the receivers
 * and the mix run in a worker thread (rx-worker.ts) that writes mixed frames into a shared ring,
 * so a stalled event loop no longer makes packets late or lost; this thread keeps output gain,
 * meters, the CardRateMatcher and the card, and drains the ring every millisecond. With any other
 * binding (the in-memory fake of unit tests) the same RxMix runs here, on the engine's clock.
 *
 * The card is opened only while a stream needs it: capture from the first TX stream to the last,
 * playback from the first RX stream to the last (or always, with `captureWhenIdle` /
 * `playbackWhenIdle`), so an idle peripheral runs no audio timers at all. Playback goes through a
 * CardRateMatcher when the binding reports its queue fill, so the card's crystal error never
 * slips a buffer.
 *
 * Every operation validates its spec first and throws AudioEngineError with a stable code; a
 * failing open or close never disturbs other streams.
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { BoardConfig } from '../config/board-types.js';
import { QperiphError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { DatagramBinding } from '../net/datagram-binding.js';
import type { AudioBinding, CaptureStream, PlaybackStream } from './audio-binding.js';
import {
  applyGain,
  createChannelControls,
  dbToLinear,
  DriftTracker,
  Meters,
  Resampler,
  type ChannelControls,
} from './dsp.js';
import type { MediaClock, MediaClockStatus } from './media-clock.js';
import { CardRateMatcher } from './card-rate-matcher.js';
import { rtpTimestampAt } from './media-timeline.js';
import type { PlayoutMixCounters } from './playout-mix.js';
import { RtpReceiver } from './receiver.js';
import { RxMix } from './rx-mix.js';
import type { RxState } from './rx-shared.js';
import { RxThread } from './rx-thread.js';
import { workerSocketsOf } from './audio-datagram.js';
import { checkFormat, QLAN_PAYLOAD_TYPE, type AudioFormat, type SampleEncoding } from './rtp-codec.js';
import { encodeSdp } from './sdp-codec.js';
import { isMulticast, RtpSender, type SenderCounters } from './sender.js';
import type { ReceiverCounters } from './jitter-buffer.js';

export type AudioEngineErrorCode =
  | 'AUDIO_ERR_BAD_SPEC'
  | 'AUDIO_ERR_STREAM_EXISTS'
  | 'AUDIO_ERR_NO_STREAM'
  | 'AUDIO_ERR_STREAM_START'
  | 'AUDIO_ERR_NOT_STARTED';

export class AudioEngineError extends QperiphError {
  declare readonly code: AudioEngineErrorCode;
  constructor(code: AudioEngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export type StreamKind = 'qlan' | 'aes67';

export interface TxStreamSpec {
  id: string;
  kind: StreamKind;
  /** Capture channel (0-based) for each stream channel. */
  channelMap: number[];
  encoding?: Exclude<SampleEncoding, 'F32'>;
  framesPerPacket?: number;
  destination: { address: string; port: number };
  /** Also send on LAN B (when the board has one). */
  redundant?: boolean;
  ttl?: number;
  name?: string;
}

export interface RxStreamSpec {
  id: string;
  kind: StreamKind;
  /** Playback channel (0-based) for each stream channel; -1 drops that channel. */
  channelMap: number[];
  encoding?: Exclude<SampleEncoding, 'F32'>;
  framesPerPacket?: number;
  payloadType?: number;
  /** Unicast: our local port; multicast: the group and port. */
  source: { address: string; port: number };
  /** Also listen on LAN B and merge. */
  redundant?: boolean;
  delayMs?: number;
}

export interface AudioEngineOptions {
  board: BoardConfig;
  audio: AudioBinding;
  datagram: DatagramBinding;
  clock: ClockSource;
  mediaClock: MediaClock;
  logger: Logger;
  /** Local addresses of LAN A and (optionally) LAN B. */
  lanA: string;
  lanB?: string | null;
  /** Capture/playback channel counts and device names (defaults from the board config). */
  captureChannels?: number;
  playbackChannels?: number;
  /** TX ring fill the drift loop holds (latency), frames. Default 480 (10 ms). */
  txBufferFrames?: number;
  /** Frames per capture/playback block. Default 48 (1 ms). */
  blockFrames?: number;
  /** Card playback queue the RX drift loop holds, frames. Default 3 blocks. */
  playbackQueueFrames?: number;
  /** Keep capture running with no TX stream (live input meters at idle). Default false. */
  captureWhenIdle?: boolean;
  /** Keep playback open with no RX stream. Default false. */
  playbackWhenIdle?: boolean;
  /** SCHED_FIFO priority for sender worker threads (needs CAP_SYS_NICE); unset = normal. */
  senderRtPriority?: number | null;
  /** Sender workers busy-wait the last ~100 us before each packet (default true; see RtpSender). */
  senderBusyWait?: boolean;
  /**
   * Where receivers and the playout mix run: 'worker' (a thread of their own, real sockets only)
   * or 'main' (this event loop, through `datagram`). Default: 'worker' when `datagram` is the
   * audio datagram binding (createAudioDatagramBinding), else 'main'. The worker maps media time
   * from `mediaClock.anchorNs` (a clock on the monotonic clock, as both real ones are).
   */
  rxThread?: 'worker' | 'main';
  /**
   * The receive worker's playout tick, us. Default 1000 (its event loop's timer); less runs a
   * PeriodTicker thread (low-latency profile: frames leave the jitter buffer within a tick of
   * their playout time instead of up to 1.1 ms after it). The engine reads the worker's ring
   * when the worker wakes it, either way.
   */
  rxTickUs?: number;
}

interface TxStream {
  spec: TxStreamSpec;
  format: AudioFormat;
  senders: RtpSender[];
  resampler: Resampler;
  tracker: DriftTracker;
  scratchIn: Float32Array;
  scratchOut: Float32Array;
  sdp: string | null;
  ssrc: number;
  /** Since when (monotonic ms) every write has left the ring behind the sender; null: it is not. */
  behindSinceMs: number | null;
}

/**
 * A TX ring left behind its sender (each frame written already stale) for this long is put back
 * at its target fill. Longer than any catch-up burst after a stall (those arrive in one go).
 */
const TX_RESYNC_AFTER_MS = 20;

interface RxStream {
  spec: RxStreamSpec;
  format: AudioFormat;
  /** The receiver, when it runs on this thread (null: it runs in the receive worker). */
  receiver: RtpReceiver | null;
  /** The receive worker it runs in. */
  thread: RxThread | null;
}

export interface StreamStatus {
  id: string;
  direction: 'tx' | 'rx';
  kind: StreamKind;
  channels: number;
  counters: SenderCounters | (ReceiverCounters & { rejoins: number });
  sdp?: string | null;
  driftPpm?: number;
}

function emptyRxCounters(): ReceiverCounters & { rejoins: number } {
  return {
    received: 0,
    lost: 0,
    late: 0,
    duplicate: 0,
    merged: 0,
    reordered: 0,
    ssrcErrors: 0,
    payloadTypeErrors: 0,
    timestampErrors: 0,
    malformed: {},
    playedPackets: 0,
    jitter: 0,
    extendedHighestSeq: 0,
    perPath: [0, 0],
    rejoins: 0,
  };
}

function bad(msg: string): never {
  throw new AudioEngineError('AUDIO_ERR_BAD_SPEC', msg);
}

export class AudioEngine {
  private readonly tx = new Map<string, TxStream>();
  private readonly rx = new Map<string, RxStream>();
  private capture: CaptureStream | null = null;
  private playback: PlaybackStream | null = null;
  private matcher: CardRateMatcher | null = null;
  private cardSlips = 0;
  private started = false;
  /** Serialises card open/close so a close racing an open never leaves a card behind. */
  private cardOps: Promise<void> = Promise.resolve();
  /** RX opens in progress (they hold playback open while their sockets bind). */
  private openingRx = 0;
  private readonly capCh: number;
  private readonly playCh: number;
  private readonly block: number;
  readonly inputControls: ChannelControls;
  readonly outputControls: ChannelControls;
  private readonly inputMeters: Meters;
  private readonly outputMeters: Meters;
  /** Receivers + bus on this thread ('main'), while playback is open. */
  private rxMix: RxMix | null = null;
  /** The receive worker ('worker'), while playback is open. */
  private rxWorker: RxThread | null = null;
  private rxWorkerStarting: Promise<RxThread> | null = null;
  /** Where receive runs (see `AudioEngineOptions.rxThread`). */
  readonly rxThread: 'worker' | 'main';
  private readonly recvBufferSize: number;
  private mixTimer: TimerHandle | null = null;
  private nextSsrc: number;
  /** audio_timer_slack_failed is logged once per engine. */
  private slackWarned = false;

  constructor(private readonly o: AudioEngineOptions) {
    this.capCh = o.captureChannels ?? o.board.audio.capture?.channels ?? 2;
    this.playCh = o.playbackChannels ?? o.board.audio.playback?.channels ?? 2;
    this.block = o.blockFrames ?? 48;
    this.inputControls = createChannelControls(this.capCh);
    this.outputControls = createChannelControls(this.playCh);
    this.inputMeters = new Meters(this.capCh);
    this.outputMeters = new Meters(this.playCh);
    this.nextSsrc = (Number(o.mediaClock.nowNs() % 0xffffffffn) ^ 0x5a5a5a5a) >>> 0;
    const ws = workerSocketsOf(o.datagram);
    this.rxThread = o.rxThread ?? (ws ? 'worker' : 'main');
    this.recvBufferSize = ws?.recvBufferSize ?? 4 * 1024 * 1024;
  }

  async start(): Promise<void> {
    this.started = true;
    if (this.o.captureWhenIdle) this.openCapture();
    if (this.o.playbackWhenIdle) this.openPlayback();
  }

  /** Whether the capture / playback side of the card is open now (for tests and status). */
  cardState(): { capture: boolean; playback: boolean } {
    return { capture: this.capture !== null, playback: this.playback !== null };
  }

  private openCapture(): void {
    if (this.capture) return;
    const cap = this.o.board.audio.capture;
    const c = this.o.audio.openCapture({
      device: cap?.device ?? 'virtual',
      channels: this.capCh,
      periodFrames: this.block,
    });
    c.onData((s, f) => this.onCapture(s, f));
    c.onError((e) => this.o.logger.warn('audio_capture_error', { error: e }));
    this.capture = c;
    this.o.logger.info('audio_card_opened', { side: 'capture' });
  }

  private openPlayback(): void {
    if (this.playback) return;
    const play = this.o.board.audio.playback;
    const p = this.o.audio.openPlayback({
      device: play?.device ?? 'virtual',
      channels: this.playCh,
      periodFrames: this.block,
    });
    p.onError((e) => this.o.logger.warn('audio_playback_error', { error: e }));
    this.playback = p;
    this.cardSlips = 0;
    if (this.rxThread === 'main') this.rxMix = new RxMix(this.playCh);
    this.matcher = p.queuedFrames
      ? new CardRateMatcher({
          channels: this.playCh,
          targetFrames: Math.max(this.o.playbackQueueFrames ?? 3 * this.block, p.minQueueFrames ?? 0),
          blockFrames: this.block,
        })
      : null;
    this.o.logger.info('audio_card_opened', { side: 'playback', driftCompensation: this.matcher !== null });
  }

  /** Close the card sides no stream needs any more. */
  private releaseCard(): Promise<void> {
    this.cardOps = this.cardOps.then(async () => {
      if (this.capture && this.tx.size === 0 && !(this.started && this.o.captureWhenIdle)) {
        const c = this.capture;
        this.capture = null;
        await c.close().catch((e: unknown) => this.o.logger.warn('audio_capture_error', { error: e }));
        this.o.logger.info('audio_card_closed', { side: 'capture' });
      }
      if (
        this.playback &&
        this.rx.size === 0 &&
        this.openingRx === 0 &&
        !(this.started && this.o.playbackWhenIdle)
      ) {
        const p = this.playback;
        this.playback = null;
        this.matcher = null;
        this.rxMix = null;
        this.stopMixTick();
        const w =
          this.rxWorker ?? (this.rxWorkerStarting ? await this.rxWorkerStarting.catch(() => null) : null);
        this.rxWorker = null;
        this.rxWorkerStarting = null;
        await w?.stop();
        await p.close().catch((e: unknown) => this.o.logger.warn('audio_playback_error', { error: e }));
        this.o.logger.info('audio_card_closed', { side: 'playback' });
      }
    });
    return this.cardOps;
  }

  clockStatus(): MediaClockStatus {
    return this.o.mediaClock.status();
  }

  private onCapture(samples: Float32Array, frames: number): void {
    applyGain(samples, frames, this.capCh, this.inputControls);
    this.inputMeters.feed(samples, frames);
    for (const s of this.tx.values()) {
      try {
        this.feedTx(s, samples, frames);
      } catch (e) {
        this.o.logger.warn('audio_tx_feed_error', { stream: s.spec.id, error: e });
      }
    }
  }

  private feedTx(s: TxStream, samples: Float32Array, frames: number): void {
    const ch = s.format.channels;
    const input =
      s.scratchIn.length >= frames * ch ? s.scratchIn : (s.scratchIn = new Float32Array(frames * ch));
    for (let f = 0; f < frames; f++)
      for (let c = 0; c < ch; c++) input[f * ch + c] = samples[f * this.capCh + s.spec.channelMap[c]!]!;
    s.resampler.push(input, frames);
    const sender = s.senders[0]!;
    const ringFill = sender.fill();
    const step = s.tracker.update(ringFill, frames / 48000);
    const out = s.scratchOut;
    const outFrames = out.length / ch;
    while (s.resampler.available > outFrames * step + 4) {
      if (!s.resampler.pull(out, outFrames, step)) break;
      for (const snd of s.senders) snd.write(out, outFrames);
    }
    const fill = sender.fill();
    if (fill >= 0) {
      s.behindSinceMs = null;
      return;
    }
    const now = this.o.clock.monotonicMs();
    s.behindSinceMs ??= now;
    if (now - s.behindSinceMs < TX_RESYNC_AFTER_MS) return;
    // Behind for good (a stall lost the lead and nothing caught it up): back to the target.
    s.behindSinceMs = null;
    for (const snd of s.senders) snd.resync(s.tracker.targetFrames);
    s.tracker.reset();
    this.o.logger.warn('audio_tx_resync', { stream: s.spec.id, behindFrames: -fill });
  }

  private startMixTick(): void {
    // The receive worker wakes the engine when it has mixed frames (RxThread.watch).
    if (this.mixTimer || this.rxThread === 'worker') return;
    this.mixTimer = this.o.clock.setTimeout(() => this.onMixTick(), 1);
  }

  private stopMixTick(): void {
    if (this.mixTimer) this.o.clock.clearTimeout(this.mixTimer);
    this.mixTimer = null;
  }

  /**
   * One playout step for every RX stream at the same local media time, then hand the card all
   * frames every anchored stream has delivered; with the receive worker, hand the card what the
   * worker has mixed. Public so virtual-time tests can drive it.
   */
  onMixTick(): void {
    this.mixTimer = null;
    try {
      if (this.rxWorker) this.rxWorker.drain(this.emitPlayback);
      else this.rxMix?.tick(rtpTimestampAt(this.o.mediaClock.nowNs()), this.emitPlayback);
    } catch (e) {
      this.o.logger.warn('audio_mix_error', { error: e });
    }
    if (this.rx.size > 0 || this.openingRx > 0) this.startMixTick();
  }

  private readonly emitPlayback = (x: Float32Array, n: number): void => this.writePlayback(x, n);

  private writePlayback(samples: Float32Array, frames: number): void {
    applyGain(samples, frames, this.playCh, this.outputControls);
    this.outputMeters.feed(samples, frames);
    const pb = this.playback;
    const queued = this.matcher ? (pb?.queuedFrames?.() ?? null) : null;
    const slips = pb?.slips?.().underruns ?? 0;
    if (slips !== this.cardSlips) {
      this.cardSlips = slips;
      this.matcher?.cardSlipped();
    }
    if (pb && this.matcher && queued !== null)
      this.matcher.feed(samples, frames, queued, (x, n) => pb.write(x, n));
    else pb?.write(samples, frames);
  }

  /**
   * The playout bus's counters (null while playback is closed). With the receive worker,
   * `skippedFrames` also counts mixed frames the shared ring had no room for (this thread did not
   * read for longer than the ring holds) and `playedFrames` counts frames into the ring.
   */
  mixCounters(): PlayoutMixCounters | null {
    if (this.rxMix) return { ...this.rxMix.mix.counters };
    if (this.rxWorker) return this.rxWorker.mixCounters();
    if (this.playback && this.rxThread === 'worker')
      return { droppedFrames: 0, skippedFrames: 0, playedFrames: 0 };
    return null;
  }

  /** An RX stream's jitter-buffer state (benchmarks, diagnostics); null for no such stream. */
  rxState(id: string): RxState | null {
    const s = this.rx.get(id);
    if (!s) return null;
    if (s.receiver)
      return {
        depthPackets: s.receiver.jitter.depthPackets(),
        aligned: s.receiver.jitter.aligned,
        anchored: s.receiver.jitter.anchored,
      };
    return s.thread?.stateOf(id) ?? null;
  }

  private startRxWorker(): Promise<RxThread> {
    // A worker that died (logged as audio_rx_worker_exited) is replaced for new streams; the
    // streams it carried keep their last counters until closed.
    if (this.rxWorker?.running) return Promise.resolve(this.rxWorker);
    if (!this.rxWorkerStarting) {
      const w = new RxThread({
        channels: this.playCh,
        anchorNs: this.o.mediaClock.anchorNs,
        logger: this.o.logger,
        recvBufferSize: this.recvBufferSize,
        ...(this.o.rxTickUs !== undefined ? { tickUs: this.o.rxTickUs } : {}),
      });
      this.rxWorkerStarting = w.start().then(
        () => {
          this.rxWorker = w;
          w.watch(() => this.onMixTick());
          this.rxWorkerStarting = null;
          this.o.logger.info('audio_rx_worker_started', { tid: w.tid });
          return w;
        },
        (e: unknown) => {
          this.rxWorkerStarting = null;
          throw e;
        },
      );
    }
    return this.rxWorkerStarting;
  }

  private formatFor(kind: StreamKind, channels: number, enc?: string, fpp?: number): AudioFormat {
    const f: AudioFormat =
      kind === 'qlan'
        ? { encoding: 'F32', channels, framesPerPacket: 16 }
        : { encoding: (enc ?? 'L24') as SampleEncoding, channels, framesPerPacket: fpp ?? 48 };
    if (kind === 'aes67' && f.encoding === 'F32') bad('AES67 streams are L24 or L16');
    try {
      checkFormat(f);
    } catch (e) {
      bad((e as Error).message);
    }
    return f;
  }

  private checkId(id: unknown): void {
    if (typeof id !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(id))
      bad(`stream id ${JSON.stringify(id)} is not 1..64 of [A-Za-z0-9_.-]`);
    if (this.tx.has(id) || this.rx.has(id))
      throw new AudioEngineError('AUDIO_ERR_STREAM_EXISTS', `stream ${id} is already open`);
  }

  private checkEndpoint(e: { address: string; port: number } | undefined, what: string): void {
    if (!e || typeof e.address !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(e.address))
      bad(`${what}.address is not IPv4`);
    if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65534)
      bad(`${what}.port ${e.port} out of 1..65534`);
  }

  async openTx(spec: TxStreamSpec): Promise<StreamStatus> {
    if (!this.started) throw new AudioEngineError('AUDIO_ERR_NOT_STARTED', 'engine not started');
    this.checkId(spec.id);
    if (spec.kind !== 'qlan' && spec.kind !== 'aes67') bad(`kind ${String(spec.kind)}`);
    if (
      !Array.isArray(spec.channelMap) ||
      spec.channelMap.some((c) => !Number.isInteger(c) || c < 0 || c >= this.capCh)
    )
      bad(`channelMap must list capture channels 0..${this.capCh - 1}`);
    const format = this.formatFor(spec.kind, spec.channelMap.length, spec.encoding, spec.framesPerPacket);
    this.checkEndpoint(spec.destination, 'destination');
    if (spec.kind === 'qlan' && isMulticast(spec.destination.address)) bad('Q-LAN streams are unicast');
    if (spec.redundant && !this.o.lanB) bad('redundant stream needs LAN B');
    const ssrc = this.nextSsrc++ >>> 0;
    const lans = [this.o.lanA, ...(spec.redundant && this.o.lanB ? [this.o.lanB] : [])];
    const payloadType = spec.kind === 'qlan' ? QLAN_PAYLOAD_TYPE : 96;
    const senders = lans.map(
      (lan) =>
        new RtpSender({
          format,
          payloadType,
          destination: spec.destination,
          bindAddress: lan,
          multicastInterface: isMulticast(spec.destination.address) ? lan : null,
          ttl: spec.ttl ?? 32,
          ssrc,
          clock: this.o.mediaClock,
          rtPriority: this.o.senderRtPriority ?? null,
          busyWait: this.o.senderBusyWait ?? true,
        }),
    );
    try {
      for (const s of senders) {
        await s.start();
        if (s.rt === 'failed')
          this.o.logger.warn('audio_sender_rt_failed', { stream: spec.id, tid: s.tid, error: s.rtError });
        if (s.timerSlackError !== null && !this.slackWarned) {
          this.slackWarned = true;
          this.o.logger.warn('audio_timer_slack_failed', { stream: spec.id, error: s.timerSlackError });
        }
      }
      await this.cardOps;
      this.openCapture();
    } catch (e) {
      await Promise.all(senders.map((s) => s.stop()));
      await this.releaseCard();
      throw new AudioEngineError('AUDIO_ERR_STREAM_START', `stream ${spec.id}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const st = this.o.mediaClock.status();
    const sdp =
      spec.kind === 'aes67'
        ? encodeSdp({
            sessionId: String(ssrc),
            sessionVersion: '1',
            origin: this.o.lanA,
            name: spec.name ?? `${this.o.board.id} ${spec.id}`,
            destination: spec.destination.address,
            ttl: spec.ttl ?? 32,
            port: spec.destination.port,
            payloadType,
            encoding: format.encoding as 'L24' | 'L16',
            channels: format.channels,
            rate: 48000,
            ptimeMs: format.framesPerPacket / 48,
            framesPerPacket: format.framesPerPacket,
            ptp: st.grandmaster ? { gmIdentity: st.grandmaster, domain: st.domain } : null,
            mediaclkOffset: 0,
            info: spec.channelMap.map((c) => c + 1).join(' '),
          })
        : null;
    const s: TxStream = {
      spec: { ...spec, channelMap: [...spec.channelMap] },
      format,
      senders,
      resampler: new Resampler(format.channels, 9600),
      tracker: new DriftTracker(this.o.txBufferFrames ?? 480),
      scratchIn: new Float32Array(this.block * format.channels),
      scratchOut: new Float32Array(format.framesPerPacket * format.channels),
      sdp,
      ssrc,
      behindSinceMs: null,
    };
    // Start at the latency the drift loop holds: the ring begins with that much silence, so
    // the first packets are not underruns and the loop has nothing to catch up.
    const txFill = this.o.txBufferFrames ?? 480;
    const pre = new Float32Array(txFill * format.channels);
    for (const snd of senders) snd.write(pre, txFill);
    this.tx.set(spec.id, s);
    this.o.logger.info('audio_stream_opened', {
      id: spec.id,
      direction: 'tx',
      kind: spec.kind,
      channels: format.channels,
    });
    return this.txStatus(s);
  }

  async openRx(spec: RxStreamSpec): Promise<StreamStatus> {
    if (!this.started) throw new AudioEngineError('AUDIO_ERR_NOT_STARTED', 'engine not started');
    this.checkId(spec.id);
    if (spec.kind !== 'qlan' && spec.kind !== 'aes67') bad(`kind ${String(spec.kind)}`);
    if (
      !Array.isArray(spec.channelMap) ||
      spec.channelMap.some((c) => !Number.isInteger(c) || c < -1 || c >= this.playCh)
    )
      bad(`channelMap must list playback channels 0..${this.playCh - 1} or -1`);
    const format = this.formatFor(spec.kind, spec.channelMap.length, spec.encoding, spec.framesPerPacket);
    this.checkEndpoint(spec.source, 'source');
    if (spec.redundant && !this.o.lanB) bad('redundant stream needs LAN B');
    const delayMs = spec.delayMs ?? (spec.kind === 'qlan' ? 2 : 3);
    if (!(delayMs >= 0.5 && delayMs <= 500)) bad(`delayMs ${delayMs} out of 0.5..500`);
    const group = isMulticast(spec.source.address) ? spec.source.address : null;
    const lans = [this.o.lanA, ...(spec.redundant && this.o.lanB ? [this.o.lanB] : [])];
    const channels = format.channels;
    const payloadType = spec.payloadType ?? (spec.kind === 'qlan' ? QLAN_PAYLOAD_TYPE : 96);
    const delayFrames = Math.round(delayMs * 48);
    const paths = lans.map((lan) => ({
      bindAddress: group ? lan : spec.source.address,
      port: spec.source.port,
      group,
    }));
    const ack = spec.kind === 'qlan' ? { ssrc: this.nextSsrc++ >>> 0, everyMs: 10 } : null;
    const channelMap = [...spec.channelMap];
    let receiver: RtpReceiver | null = null;
    let thread: RxThread | null = null;
    this.openingRx++;
    try {
      await this.cardOps;
      this.openPlayback();
      if (this.rxThread === 'worker') {
        const w = await this.startRxWorker();
        thread = w;
        await w.open({ id: spec.id, format, payloadType, delayFrames, paths, ack, channelMap });
      } else {
        const mix = this.rxMix!;
        receiver = new RtpReceiver({
          binding: this.o.datagram,
          clock: this.o.clock,
          mediaClock: this.o.mediaClock,
          logger: this.o.logger.child({ stream: spec.id }),
          format,
          payloadType,
          delayFrames,
          paths,
          ack,
          // The engine's mix tick drives every receiver at one local media time.
          externalTick: true,
          sink: mix.sinkFor(() => receiver, channels, channelMap),
        });
        try {
          await receiver.start();
        } catch (e) {
          await receiver.close();
          throw e;
        }
        mix.add(spec.id, { receiver, channels, channelMap });
      }
    } catch (e) {
      this.openingRx--;
      await this.releaseCard();
      throw new AudioEngineError('AUDIO_ERR_STREAM_START', `stream ${spec.id}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const s: RxStream = { spec: { ...spec, channelMap }, format, receiver, thread };
    this.openingRx--;
    this.rx.set(spec.id, s);
    this.startMixTick();
    this.o.logger.info('audio_stream_opened', { id: spec.id, direction: 'rx', kind: spec.kind, channels });
    return this.rxStatus(s);
  }

  async close(id: string): Promise<void> {
    const t = this.tx.get(id);
    const r = this.rx.get(id);
    if (!t && !r) throw new AudioEngineError('AUDIO_ERR_NO_STREAM', `no stream ${id}`);
    this.tx.delete(id);
    this.rx.delete(id);
    if (t) await Promise.all(t.senders.map((s) => s.stop()));
    if (r?.receiver) {
      this.rxMix?.delete(id);
      await r.receiver.close();
    } else if (r) await r.thread?.close(id);
    await this.releaseCard();
    this.o.logger.info('audio_stream_closed', { id });
  }

  /**
   * The media clock was mapped again after a system clock step (event `realigned`): reopen every
   * stream with its spec, and start a fresh receive worker, so senders, receivers and the worker
   * all take the new mapping. The streams' timestamps jump once, as they must when the time they
   * follow stepped; ids and specs stay. A stream that fails to reopen is logged and left closed,
   * the others go on. Returns the ids reopened and the ones that failed.
   */
  async realign(): Promise<{ reopened: string[]; failed: string[] }> {
    const txSpecs = [...this.tx.values()].map((s) => s.spec);
    const rxSpecs = [...this.rx.values()].map((s) => s.spec);
    for (const sp of [...txSpecs, ...rxSpecs]) await this.close(sp.id);
    // The worker holds the old anchor: replace it, even if the card stays open (playbackWhenIdle).
    const w = this.rxWorker ?? (this.rxWorkerStarting ? await this.rxWorkerStarting.catch(() => null) : null);
    this.rxWorker = null;
    this.rxWorkerStarting = null;
    await w?.stop();
    const reopened: string[] = [];
    const failed: string[] = [];
    const reopen = async (id: string, open: () => Promise<unknown>): Promise<void> => {
      try {
        await open();
        reopened.push(id);
      } catch (e) {
        failed.push(id);
        this.o.logger.warn('audio_realign_reopen_failed', { id, error: e });
      }
    };
    for (const sp of rxSpecs) await reopen(sp.id, () => this.openRx(sp));
    for (const sp of txSpecs) await reopen(sp.id, () => this.openTx(sp));
    this.o.logger.info('audio_realigned', { reopened, failed });
    return { reopened, failed };
  }

  private txStatus(s: TxStream): StreamStatus {
    return {
      id: s.spec.id,
      direction: 'tx',
      kind: s.spec.kind,
      channels: s.format.channels,
      counters: s.senders[0]!.counters(),
      sdp: s.sdp,
      driftPpm: s.tracker.ppm,
    };
  }

  private rxStatus(s: RxStream): StreamStatus {
    return {
      id: s.spec.id,
      direction: 'rx',
      kind: s.spec.kind,
      channels: s.format.channels,
      counters: s.receiver?.counters() ?? s.thread?.counterOf(s.spec.id) ?? emptyRxCounters(),
      ...(this.matcher ? { driftPpm: this.matcher.tracker.ppm } : {}),
    };
  }

  list(): StreamStatus[] {
    return [
      ...[...this.tx.values()].map((s) => this.txStatus(s)),
      ...[...this.rx.values()].map((s) => this.rxStatus(s)),
    ];
  }

  /** Per-channel gain in dB (-100 = silence) and mute, for 'input' (capture) or 'output' (playback). */
  setGain(side: 'input' | 'output', channel: number, db: number): void {
    const ctl = side === 'input' ? this.inputControls : this.outputControls;
    if (!Number.isInteger(channel) || channel < 0 || channel >= ctl.gain.length)
      bad(`${side} channel ${channel}`);
    if (!Number.isFinite(db) || db > 24) bad(`gain ${db} dB (max +24)`);
    ctl.gain[channel] = dbToLinear(db);
  }

  setMute(side: 'input' | 'output', channel: number, mute: boolean): void {
    const ctl = side === 'input' ? this.inputControls : this.outputControls;
    if (!Number.isInteger(channel) || channel < 0 || channel >= ctl.mute.length)
      bad(`${side} channel ${channel}`);
    ctl.mute[channel] = mute ? 1 : 0;
  }

  /** Peak/RMS per channel since the last call. */
  meters(): {
    input: Array<{ peakDb: number; rmsDb: number }>;
    output: Array<{ peakDb: number; rmsDb: number }>;
  } {
    return { input: this.inputMeters.read(), output: this.outputMeters.read() };
  }

  async stop(): Promise<void> {
    for (const id of [...this.tx.keys(), ...this.rx.keys()]) await this.close(id);
    this.started = false;
    await this.releaseCard();
  }
}

/**
 * AudioPeer: the emulated Core's audio side towards one peripheral. Over the control link it asks
 * the peripheral to open a receive stream (the Core sends it a test tone) and a send stream (the
 * peripheral's inputs come to the Core), in Q-LAN or AES67 format; it runs the firmware's own
 * RtpSender and RtpReceiver for its ends, meters what comes back, counts loss, late and
 * duplicate packets both ways (the far side's counters through Stream.List), and times every
 * arriving packet against the media clock.
 *
 * Latency: the virtual card has no loopback (its capture is a generator, its playback a recorder),
 * so a marker cannot travel Core -> peripheral -> Core. What is measured is the one-way transit
 * peripheral -> Core: arrival on the Core's media clock minus the packet's RTP timestamp. Both
 * ends stamp RTP time from PTP (or from the same host clock on loopback), so this is sender pacing,
 * scheduling and network. The jitter buffer adds its fixed playout delay on top.
 *
 * Use: `new AudioPeer(opts)`, `await start()`, then `await poll()` now and then (pulls the
 * peripheral's counters and output meters) and `stats()`; `await stop()` closes both streams.
 */
import { createAudioDatagramBinding } from '../../firmware/audio/audio-datagram.js';
import type { MediaClock } from '../../firmware/audio/media-clock.js';
import { RtpSender } from '../../firmware/audio/sender.js';
import { createSystemClock, type ClockSource, type TimerHandle } from '../../firmware/clock/clock.js';
import { silentLogger, type Logger } from '../../firmware/log/logger.js';
import type { DatagramBinding } from '../../firmware/net/datagram-binding.js';
import { CoreAudioError } from './audio/errors.js';
import {
  readCounters,
  readSenderCounters,
  summarize,
  type Level,
  type PeerStats,
  type ReceiveCounters,
  type RemoteSender,
} from './audio/peer-stats.js';
import { emptyRxSnapshot, RxSide, type RxSideOptions, type RxSnapshot } from './audio/rx-side.js';
import { ThreadRx } from './audio/rx-thread.js';
import { planStreams, type PeerFormat, type StreamPlan } from './audio/stream-plan.js';
import { ToneSource } from './audio/tone.js';

export type { PeerStats } from './audio/peer-stats.js';
export { CoreAudioError } from './audio/errors.js';

/** A control-link request to this peripheral: resolves with the result, rejects on an RPC error. */
export type ControlCall = (method: string, params: unknown) => Promise<unknown>;

export interface AudioPeerOptions {
  /** The peripheral's LAN A address. */
  peripheral: string;
  /** The Core's own address for its RTP sockets (on loopback: the Core's 127.x address). */
  localAddress: string;
  call: ControlCall;
  mediaClock: MediaClock;
  format?: PeerFormat;
  /** Channels each way, default 2 (peripheral channels 1..N). */
  channels?: number;
  /** Even; the peer uses basePort..basePort+5. Default 6518. Give each peer its own range. */
  basePort?: number;
  /** AES67: multicast groups (multicast on `lo` only in tests). Without them AES67 is unicast. */
  groups?: { toPeripheral: string; fromPeripheral: string } | null;
  toneHz?: number;
  amplitude?: number;
  /** The Core's receive jitter buffer delay, ms. Default 2 (Q-LAN) / 3 (AES67). */
  playoutDelayMs?: number;
  /** The sender worker's busy-wait lead (us) before each packet; default 100 (as the firmware). */
  leadUs?: number;
  /**
   * The sender worker busy-waits before each packet (true, as the firmware) or sleeps to each
   * deadline (default false: one Core process serves many peers, and a spinning thread per
   * stream would take the bench machine's cores; on an idle machine sleeping paces as well).
   */
  busyWait?: boolean;
  /** Frames the Core keeps queued in its sender ring (default 960 = 20 ms). */
  txQueueFrames?: number;
  clock?: ClockSource;
  datagram?: DatagramBinding;
  /**
   * Where the Core's receive side runs: `worker` (the shared receive worker, off the main thread;
   * the default with real sockets) or `main` (the default when `datagram` is injected: a fake
   * network lives in this thread).
   */
  receiveIn?: 'worker' | 'main';
  logger?: Logger;
}

type State = 'idle' | 'starting' | 'running' | 'stopped';

export class AudioPeer {
  readonly plan: StreamPlan;
  readonly format: PeerFormat;
  private state: State = 'idle';
  private sender: RtpSender | null = null;
  private rxMain: RxSide | null = null;
  private rxThread: ThreadRx | null = null;
  private rxSnap: RxSnapshot;
  private readonly tone: ToneSource;
  private remoteSender: RemoteSender | null = null;
  private senderNotSentAtPoll: number | null = null;
  private feedTimer: TimerHandle | null = null;
  private remote: ReceiveCounters | null = null;
  private peripheralOutput: Level[] | null = null;
  private readonly clock: ClockSource;
  private readonly log: Logger;
  private readonly playoutDelayMs: number;
  /** The peripheral's stream ids (its receive stream for our TX, its send stream for our RX). */
  readonly streamIds: { toPeripheral: string | null; fromPeripheral: string | null } = {
    toPeripheral: null,
    fromPeripheral: null,
  };

  constructor(private readonly o: AudioPeerOptions) {
    this.format = o.format ?? 'qlan';
    this.plan = planStreams({
      peripheral: o.peripheral,
      local: o.localAddress,
      format: this.format,
      channels: o.channels ?? 2,
      basePort: o.basePort ?? 6518,
      groups: o.groups ?? null,
    });
    this.playoutDelayMs = o.playoutDelayMs ?? (this.format === 'qlan' ? 2 : 3);
    if (!(this.playoutDelayMs >= 0.5 && this.playoutDelayMs <= 500))
      throw new CoreAudioError(
        'CORE_AUDIO_ERR_BAD_OPTIONS',
        `playoutDelayMs ${this.playoutDelayMs} out of 0.5..500`,
      );
    const ch = this.plan.format.channels;
    this.tone = new ToneSource(ch, o.toneHz ?? 440, o.amplitude ?? 0.25);
    this.rxSnap = emptyRxSnapshot(ch);
    this.clock = o.clock ?? createSystemClock();
    this.log = (o.logger ?? silentLogger).child({ module: 'core-audio', peripheral: o.peripheral });
  }

  /** Open both streams (ours first, then the peripheral's). On failure everything opened is closed. */
  async start(): Promise<void> {
    if (this.state !== 'idle')
      throw new CoreAudioError('CORE_AUDIO_ERR_STATE', `start() while ${this.state}`);
    this.state = 'starting';
    try {
      // Listen before the peripheral sends; let it listen before we send (no refused sends).
      await this.openReceiver();
      this.streamIds.fromPeripheral = await this.openRemote(this.plan.fromPeripheral.open);
      this.streamIds.toPeripheral = await this.openRemote(this.plan.toPeripheral.open);
      await this.openSender();
      this.state = 'running';
      this.log.info('core_audio_started', { format: this.format, streams: { ...this.streamIds } });
    } catch (e) {
      await this.teardown();
      this.state = 'stopped';
      throw e instanceof CoreAudioError
        ? e
        : new CoreAudioError(
            'CORE_AUDIO_ERR_OPEN',
            `audio with ${this.o.peripheral}: ${(e as Error).message}`,
            {
              cause: e,
            },
          );
    }
  }

  private async openRemote(params: unknown): Promise<string> {
    let res: unknown;
    try {
      res = await this.o.call('Stream.Open', params);
    } catch (e) {
      throw new CoreAudioError(
        'CORE_AUDIO_ERR_OPEN',
        `${this.o.peripheral} refused Stream.Open: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const id = (res as { StreamId?: unknown } | null)?.StreamId;
    if (typeof id !== 'string')
      throw new CoreAudioError('CORE_AUDIO_ERR_OPEN', 'Stream.Open answer has no StreamId');
    return id;
  }

  private async openReceiver(): Promise<void> {
    const p = this.plan;
    const opts: RxSideOptions = {
      format: p.format,
      payloadType: p.payloadType,
      delayFrames: Math.round(this.playoutDelayMs * 48),
      bind: {
        address: p.fromPeripheral.bind.address,
        port: p.fromPeripheral.bind.port,
        group: p.fromPeripheral.bind.group,
      },
      ackSsrc: this.format === 'qlan' ? randomSsrc() : null,
    };
    const where = this.o.receiveIn ?? (this.o.datagram ? 'main' : 'worker');
    if (where === 'main') {
      this.rxMain = new RxSide(opts, {
        binding: this.o.datagram ?? createAudioDatagramBinding(),
        clock: this.clock,
        mediaClock: this.o.mediaClock,
        logger: this.log,
      });
      await this.rxMain.start();
    } else {
      this.rxThread = new ThreadRx(opts, this.o.mediaClock, this.log);
      await this.rxThread.start();
    }
  }

  /** Fresh receive-side figures (from the worker: one round trip). */
  private async refreshRx(): Promise<void> {
    if (this.rxMain) this.rxSnap = this.rxMain.snapshot(this.remoteSender);
    else if (this.rxThread)
      try {
        this.rxSnap = await this.rxThread.snapshot(this.remoteSender);
      } catch (e) {
        this.log.debug('core_audio_rx_snapshot_failed', { error: e });
      }
  }

  private async openSender(): Promise<void> {
    const p = this.plan;
    const s = new RtpSender({
      format: p.format,
      payloadType: p.payloadType,
      destination: p.toPeripheral.destination,
      bindAddress: this.o.localAddress,
      sourcePort: p.toPeripheral.sourcePort,
      rtcp: this.format === 'qlan' ? (this.o.datagram ?? createAudioDatagramBinding()) : null,
      multicastInterface: p.toPeripheral.multicastInterface,
      ttl: 32,
      ssrc: randomSsrc(),
      clock: this.o.mediaClock,
      ...(this.o.leadUs !== undefined ? { leadUs: this.o.leadUs } : {}),
      busyWait: this.o.busyWait ?? false,
    });
    this.sender = s;
    this.feed();
    await s.start();
    this.scheduleFeed();
  }

  /** Keep the sender's ring at txQueueFrames with the tone. */
  private feed(): void {
    const s = this.sender;
    if (!s) return;
    const target = Math.min(s.capacity - 48, this.o.txQueueFrames ?? 960);
    const need = target - s.fill();
    if (need > 0) s.write(this.tone.next(need), need);
  }

  private scheduleFeed(): void {
    this.feedTimer = this.clock.setTimeout(() => {
      this.feed();
      if (this.state === 'starting' || this.state === 'running') this.scheduleFeed();
    }, 5);
  }

  /**
   * Pull the peripheral's side: its receive counters for our stream (Stream.List) and its output
   * meters (Controls.Get audio.out.N.peak/rms). A failed call keeps the previous values.
   */
  async poll(): Promise<void> {
    if (this.state !== 'running')
      throw new CoreAudioError('CORE_AUDIO_ERR_STATE', `poll() while ${this.state}`);
    try {
      const list = await this.o.call('Stream.List', {});
      if (Array.isArray(list)) {
        const find = (id: string | null): { counters?: unknown } | undefined =>
          list.find((s) => (s as { streamId?: unknown } | null)?.streamId === id) as
            { counters?: unknown } | undefined;
        const c = readCounters(find(this.streamIds.toPeripheral)?.counters);
        if (c) {
          this.remote = c;
          const sc = this.sender?.counters();
          this.senderNotSentAtPoll = sc ? sc.skipped + sc.bufferBusy : null;
        }
        const sc = readSenderCounters(find(this.streamIds.fromPeripheral)?.counters);
        if (sc) this.remoteSender = sc;
      }
    } catch (e) {
      this.log.debug('core_audio_poll_failed', { method: 'Stream.List', error: e });
    }
    try {
      const names = this.plan.toPeripheral.open.Channels.flatMap((c) => [
        `audio.out.${c}.peak`,
        `audio.out.${c}.rms`,
      ]);
      const values = await this.o.call('Controls.Get', names);
      if (Array.isArray(values))
        this.peripheralOutput = metersFromControls(values, this.plan.toPeripheral.open.Channels);
    } catch (e) {
      this.log.debug('core_audio_poll_failed', { method: 'Controls.Get', error: e });
    }
    await this.refreshRx();
  }

  stats(): PeerStats {
    const sc = this.sender?.counters() ?? {
      sent: 0,
      underruns: 0,
      late: 0,
      sendErrors: 0,
      skipped: 0,
      bufferBusy: 0,
    };
    if (this.rxMain && this.state !== 'stopped') this.rxSnap = this.rxMain.snapshot(this.remoteSender);
    return summarize({
      peripheral: this.o.peripheral,
      format: this.format,
      sender: {
        sent: sc.sent,
        underruns: sc.underruns,
        late: sc.late,
        sendErrors: sc.sendErrors,
        skipped: sc.skipped,
      },
      senderNotSent: sc.skipped + sc.bufferBusy,
      firstSequence: 0,
      acks: this.sender?.acksReceived ?? 0,
      remote: this.remote,
      remoteSender: this.remoteSender,
      senderNotSentAtPoll: this.senderNotSentAtPoll,
      rx: this.rxSnap,
      playoutDelayMs: this.playoutDelayMs,
      peripheralOutput: this.peripheralOutput,
    });
  }

  /**
   * Stop our sender and receiver, then close the peripheral's streams (best effort: the link may
   * be gone). Counters stay readable: stats() after stop() gives the final figures (the
   * peripheral's side as of the last poll()).
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'idle') {
      this.state = 'stopped';
      return;
    }
    await this.refreshRx();
    this.state = 'stopped';
    await this.teardown();
    this.log.info('core_audio_stopped', {});
  }

  private async teardown(): Promise<void> {
    if (this.feedTimer) this.clock.clearTimeout(this.feedTimer);
    this.feedTimer = null;
    await this.sender?.stop().catch(() => undefined);
    await this.rxMain?.close().catch(() => undefined);
    await this.rxThread?.close().catch(() => undefined);
    for (const key of ['toPeripheral', 'fromPeripheral'] as const) {
      const id = this.streamIds[key];
      if (!id) continue;
      try {
        await this.o.call('Stream.Close', { StreamId: id });
      } catch (e) {
        this.log.debug('core_audio_close_failed', { stream: id, error: e });
      }
    }
  }
}

function randomSsrc(): number {
  return (Math.random() * 0x1_0000_0000) >>> 0;
}

/** Controls.Get answer (`[{Name, Value}]`) -> per-channel levels in channel order. */
export function metersFromControls(values: unknown[], channels: number[]): Level[] {
  const byName = new Map<string, number>();
  for (const v of values) {
    const c = v as { Name?: unknown; Value?: unknown } | null;
    if (c && typeof c.Name === 'string' && typeof c.Value === 'number')
      byName.set(c.Name.toLowerCase(), c.Value);
  }
  return channels.map((ch) => ({
    peakDb: byName.get(`audio.out.${ch}.peak`) ?? -Infinity,
    rmsDb: byName.get(`audio.out.${ch}.rms`) ?? -Infinity,
  }));
}

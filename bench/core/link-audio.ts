/**
 * The Core's audio side towards one design peripheral (`audioPeer` in the design): while the
 * control link is up, an AudioPeer sends the peripheral a test tone and meters what its inputs
 * send back, counting loss and one-way transit; it polls the peripheral's counters and output
 * meters once a second. A link that drops takes the peer down with it; the next link (or the
 * backup Core's) opens the streams again.
 */
import type { MediaClock } from '../../firmware/audio/media-clock.js';
import type { Logger } from '../../firmware/log/logger.js';
import { AudioPeer, type ControlCall, type PeerStats } from './audio-peer.js';
import type { DesignAudioPeer } from './design.js';

export interface LinkAudioOptions {
  peripheral: string;
  plan: Readonly<DesignAudioPeer>;
  /** The Core's address for its RTP sockets. */
  localAddress: string;
  /** Even; this peer uses basePort..basePort+5. */
  basePort: number;
  mediaClock: MediaClock;
  logger: Logger;
  pollMs?: number;
  /** Called after each poll and state change (the dashboard re-renders). */
  onUpdate?: () => void;
}

export type LinkAudioState = 'down' | 'starting' | 'running' | 'failed';

export class LinkAudio {
  state: LinkAudioState = 'down';
  detail: string | null = null;
  private peer: AudioPeer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private last: PeerStats | null = null;
  private generation = 0;
  private readonly log: Logger;

  constructor(private readonly o: LinkAudioOptions) {
    this.log = o.logger.child({ module: 'core-audio', peripheral: o.peripheral });
  }

  /** The link is up: open the streams (errors are logged and shown, never thrown). */
  async attach(address: string, call: ControlCall): Promise<void> {
    await this.detach();
    const gen = ++this.generation;
    this.state = 'starting';
    this.detail = null;
    const peer = new AudioPeer({
      peripheral: address,
      localAddress: this.o.localAddress,
      call,
      mediaClock: this.o.mediaClock,
      format: this.o.plan.format,
      channels: this.o.plan.channels,
      toneHz: this.o.plan.toneHz,
      basePort: this.o.basePort,
      logger: this.o.logger,
    });
    try {
      await peer.start();
    } catch (err) {
      await peer.stop().catch(() => undefined);
      if (gen !== this.generation) return;
      this.state = 'failed';
      this.detail = (err as Error).message;
      this.log.warn('audio_peer_failed', { err });
      return;
    }
    if (gen !== this.generation) {
      await peer.stop().catch(() => undefined);
      return;
    }
    this.peer = peer;
    this.state = 'running';
    this.o.onUpdate?.();
    this.log.info('audio_peer_running', { format: this.o.plan.format, channels: this.o.plan.channels });
    const poll = (): void => {
      this.timer = setTimeout(() => {
        void peer
          .poll()
          .catch(() => undefined)
          .then(() => {
            if (this.peer !== peer) return;
            this.last = peer.stats();
            this.o.onUpdate?.();
            poll();
          });
      }, this.o.pollMs ?? 1000);
      this.timer.unref();
    };
    poll();
  }

  /** The link went away: close our ends (the peripheral closes its streams with the session). */
  async detach(): Promise<void> {
    this.generation++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const peer = this.peer;
    this.peer = null;
    if (peer) {
      this.last = peer.stats();
      await peer.stop().catch(() => undefined);
    }
    if (this.state !== 'failed') this.state = 'down';
    this.o.onUpdate?.();
  }

  /** For the dashboard and the snapshot. */
  status(): { state: LinkAudioState; detail: string | null; stats: PeerStats | null } {
    return { state: this.state, detail: this.detail, stats: this.peer ? this.peer.stats() : this.last };
  }
}

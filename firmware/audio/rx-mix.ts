/**
 * RxMix: every RX stream's receiver and the summing bus, stepped together. One `tick(nowTs)`
 * plays out every receiver at the same local media time onto the PlayoutMix, then hands on all
 * frames every anchored stream has delivered. The same code runs in the receive worker (real
 * sockets, the engine's default) and on the engine's own event loop (fake bindings, virtual-time
 * tests), so the two modes cannot drift apart.
 *
 * No timers or sockets of its own: the owner creates the receivers (with `externalTick`), routes
 * their sinks through `sinkFor`, and calls `tick`.
 */
import type { PlayoutSink } from './jitter-buffer.js';
import { tsDiff } from './media-timeline.js';
import { PlayoutMix } from './playout-mix.js';
import type { RtpReceiver } from './receiver.js';

export interface RxMixStream {
  receiver: RtpReceiver;
  channels: number;
  /** Output channel for each stream channel (-1 drops it). */
  channelMap: readonly number[];
}

export class RxMix {
  readonly mix: PlayoutMix;
  private readonly streams = new Map<string, RxMixStream>();

  constructor(channels: number, capacityFrames?: number) {
    this.mix = new PlayoutMix(channels, capacityFrames);
  }

  get size(): number {
    return this.streams.size;
  }

  /**
   * The receiver sink for a stream: each packet played out lands on the bus at the local media
   * time it plays. `receiver` is read when packets play (after construction).
   */
  sinkFor(receiver: () => RtpReceiver | null, channels: number, channelMap: readonly number[]): PlayoutSink {
    return (samples, frames, missing, timestamp) => {
      const r = receiver();
      if (missing || !r) return;
      this.mix.add(r.jitter.localTsOf(timestamp), samples, frames, channels, channelMap);
    };
  }

  add(id: string, s: RxMixStream): void {
    this.streams.set(id, s);
  }

  delete(id: string): RxMixStream | undefined {
    const s = this.streams.get(id);
    this.streams.delete(id);
    return s;
  }

  get(id: string): RxMixStream | undefined {
    return this.streams.get(id);
  }

  values(): IterableIterator<RxMixStream> {
    return this.streams.values();
  }

  /** One playout step at local media time `nowTs`; mixed frames go to `emit`. */
  tick(nowTs: number, emit: (samples: Float32Array, frames: number) => void): void {
    const mix = this.mix;
    if (!mix.running) {
      const first = this.earliestNext(nowTs);
      if (first !== null) mix.start(first);
    }
    for (const s of this.streams.values()) s.receiver.onTick(nowTs);
    const horizon = this.earliestNext(nowTs);
    if (horizon === null) {
      if (mix.running) mix.reset();
    } else mix.take(horizon, emit);
  }

  /** Earliest local media time any anchored stream will play next (null: none anchored). */
  private earliestNext(nowTs: number): number | null {
    let best: number | null = null;
    let bestOff = 0;
    for (const s of this.streams.values()) {
      const next = s.receiver.jitter.nextLocalTs();
      if (next === null) continue;
      const off = tsDiff(nowTs, next);
      if (best === null || off < bestOff) {
        best = next;
        bestOff = off;
      }
    }
    return best;
  }
}

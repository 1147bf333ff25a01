/**
 * PlayoutMix: the summing bus between the receivers and the playback card, on one local media
 * timeline. Every receiver places each played-out packet at the local media timestamp where it
 * plays (its own clock offset and playout delay already applied), so several streams feeding the
 * same output channel add up sample by sample instead of queueing one after the other, and a
 * stream that joins later lands exactly where its frames belong.
 *
 * Pure: no timers or sockets. The owner starts the bus at the first anchored stream, adds
 * packets, and takes everything up to a horizon (the earliest frame any anchored stream has yet
 * to deliver), so no frame leaves the bus before every stream had its chance to add to it.
 */
import { tsDiff } from './media-timeline.js';

export interface PlayoutMixCounters {
  /** Frames that arrived behind the cursor (already played) or beyond the bus capacity. */
  droppedFrames: number;
  /** Frames skipped without playing because the owner fell further behind than the capacity. */
  skippedFrames: number;
  /** Frames handed to the card. */
  playedFrames: number;
}

export class PlayoutMix {
  readonly counters: PlayoutMixCounters = { droppedFrames: 0, skippedFrames: 0, playedFrames: 0 };
  private readonly ring: Float32Array;
  private readonly out: Float32Array;
  /** Local media timestamp of the next frame to take, or null while stopped. */
  private cursor: number | null = null;
  private cursorIndex = 0;

  constructor(
    private readonly channels: number,
    private readonly capacityFrames = 9600,
  ) {
    this.ring = new Float32Array(capacityFrames * channels);
    this.out = new Float32Array(capacityFrames * channels);
  }

  get running(): boolean {
    return this.cursor !== null;
  }

  /** The local media timestamp of the next frame to be taken (null while stopped). */
  get position(): number | null {
    return this.cursor;
  }

  /** Start the bus at `localTs` (no effect while running). */
  start(localTs: number): void {
    if (this.cursor !== null) return;
    this.cursor = localTs >>> 0;
    this.cursorIndex = 0;
  }

  /** Stop and forget everything queued. */
  reset(): void {
    this.cursor = null;
    this.ring.fill(0);
  }

  /**
   * Add `frames` frames of a `srcChannels`-channel packet that plays at `localTs`; source channel
   * c goes to output channel `channelMap[c]` (-1 drops it).
   */
  add(
    localTs: number,
    samples: Float32Array,
    frames: number,
    srcChannels: number,
    channelMap: readonly number[],
  ): void {
    if (this.cursor === null) return;
    const ch = this.channels;
    const cap = this.capacityFrames;
    const off = tsDiff(this.cursor, localTs >>> 0);
    for (let f = 0; f < frames; f++) {
      const at = off + f;
      if (at < 0 || at >= cap) {
        this.counters.droppedFrames++;
        continue;
      }
      const base = ((this.cursorIndex + at) % cap) * ch;
      const src = f * srcChannels;
      for (let c = 0; c < srcChannels; c++) {
        const dst = channelMap[c]!;
        if (dst >= 0) this.ring[base + dst] = this.ring[base + dst]! + samples[src + c]!;
      }
    }
  }

  /**
   * Hand every frame from the cursor up to (not including) `horizonTs` to `emit`, in at most two
   * contiguous pieces; the slots are cleared for reuse. Returns frames emitted.
   */
  take(horizonTs: number, emit: (samples: Float32Array, frames: number) => void): number {
    if (this.cursor === null) return 0;
    const ch = this.channels;
    const cap = this.capacityFrames;
    let remaining = tsDiff(this.cursor, horizonTs >>> 0);
    if (remaining <= 0) return 0;
    if (remaining > cap) {
      // Fell behind by more than the bus holds (a long stall): drop it all and carry on in time.
      this.counters.skippedFrames += remaining;
      this.ring.fill(0);
      this.cursor = horizonTs >>> 0;
      this.cursorIndex = 0;
      return 0;
    }
    let emitted = 0;
    while (remaining > 0) {
      const n = Math.min(remaining, cap - this.cursorIndex);
      const from = this.cursorIndex * ch;
      const piece = this.out.subarray(0, n * ch);
      piece.set(this.ring.subarray(from, from + n * ch));
      this.ring.fill(0, from, from + n * ch);
      this.cursorIndex = (this.cursorIndex + n) % cap;
      this.cursor = (this.cursor + n) >>> 0;
      remaining -= n;
      emitted += n;
      emit(piece, n);
    }
    this.counters.playedFrames += emitted;
    return emitted;
  }
}

/**
 * Receive-side drift compensation: audio played out on the media clock (PTP) goes to a sound card
 * that runs on its own crystal. The matcher resamples the played-out frames so the card's queue
 * holds `targetFrames`: a PI loop (DriftTracker) on the queue fill steers the resampler step, and
 * its integral term learns the crystal's ratio. Pure: the caller passes the card's queue fill and
 * a sink, so tests run it against a simulated card in virtual time.
 *
 * Timestamps are untouched (the jitter buffer keeps its anchor); only the card side bends, by at
 * most +-1000 ppm per step, so nothing ever jumps.
 */
import { DriftTracker, Resampler } from './dsp.js';

export interface CardRateMatcherOptions {
  channels: number;
  /** Card queue fill to hold, frames (latency the matcher adds). */
  targetFrames: number;
  /** Frames per write to the card. */
  blockFrames: number;
  /** Resampler FIFO capacity, frames. Default 4800. */
  capacityFrames?: number;
  /**
   * Stream start (input frames; default 48000 = 1 s): while the card's queue is far from the
   * target, whole blocks are dropped or silence is added so the stream starts at its latency;
   * after this only the rate bends (the loop moves the queue by at most 48 frames a second).
   */
  settleFrames?: number;
}

export class CardRateMatcher {
  readonly tracker: DriftTracker;
  private readonly resampler: Resampler;
  private readonly out: Float32Array;
  /** Input frames the FIFO had no room for (dropped; should stay 0). */
  overflows = 0;
  /** Stream start: input frames dropped, silent frames added to reach the target queue. */
  startTrimmed = 0;
  startPadded = 0;
  private fed = 0;

  constructor(private readonly o: CardRateMatcherOptions) {
    this.resampler = new Resampler(o.channels, o.capacityFrames ?? 4800);
    this.tracker = new DriftTracker(o.targetFrames);
    this.out = new Float32Array(o.blockFrames * o.channels);
  }

  /**
   * The card slipped (an underrun: it stopped and restarts with whatever is queued then). The
   * audio is broken already, so open the start window again: the queue goes back to the target
   * at once instead of keeping the extra latency until the loop drains it at 48 frames a second.
   */
  cardSlipped(): void {
    this.fed = 0;
    this.resyncs++;
  }

  /** Times the start window was reopened after a card slip. */
  resyncs = 0;

  /** Frames waiting in the resampler (part of the latency). */
  get backlog(): number {
    return Math.max(0, this.resampler.available);
  }

  /** Current step: input frames per output frame; > 1 means the card is slower than the media clock. */
  get step(): number {
    return this.tracker.step;
  }

  /**
   * Take `frames` frames played out on the media clock, steer on the card's current queue fill,
   * and hand whole blocks to `write` (which queues them on the card).
   */
  feed(
    src: Float32Array,
    frames: number,
    cardQueued: number,
    write: (samples: Float32Array, frames: number) => void,
  ): void {
    const block = this.o.blockFrames;
    if (this.fed < (this.o.settleFrames ?? 48000)) {
      this.fed += frames;
      const fill = cardQueued + this.backlog;
      if (fill > this.o.targetFrames + block) {
        this.startTrimmed += frames;
        return;
      }
      if (fill + frames < this.o.targetFrames - block) {
        const pad = new Float32Array(block * this.o.channels);
        let padded = 0;
        while (fill + frames + padded + block <= this.o.targetFrames) {
          write(pad, block);
          padded += block;
        }
        this.startPadded += padded;
      }
    }
    if (!this.resampler.push(src, frames)) this.overflows += frames;
    const fill = cardQueued + this.backlog / this.tracker.step;
    const step = this.tracker.update(fill, frames / 48000);
    while (this.resampler.available > block * step + 4) {
      if (!this.resampler.pull(this.out, block, step)) break;
      write(this.out, block);
    }
  }
}

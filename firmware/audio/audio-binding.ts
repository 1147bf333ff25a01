/**
 * The AudioBinding seam: capture and playback of interleaved float32 frames.
 *
 * Contract (obeyed by both bindings): `openCapture` delivers blocks through `onData` at the card's
 * pace until `close()`; after close nothing is delivered. `openPlayback().write` queues frames and
 * never blocks; `close()` stops. A binding that loses its device reports `onError` and, for the
 * ALSA binding, restarts the tool by itself (counted in `restarts`).
 *
 * - createVirtualAudioBinding: a tone (or pattern) source and a recording sink, paced by a
 *   ClockSource, with a crystal error in ppm so drift compensation can be tested.
 * - alsa-binding.ts: arecord/aplay child processes over pipes.
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import { startPeriodTicker, type PeriodTicker } from '../clock/period-ticker.js';

export interface CaptureOptions {
  device: string;
  channels: number;
  /** Frames per delivered block. */
  periodFrames: number;
}

export interface CaptureStream {
  onData(handler: (samples: Float32Array, frames: number) => void): void;
  onError(handler: (err: Error) => void): void;
  readonly restarts: number;
  close(): Promise<void>;
}

export interface PlaybackStream {
  write(samples: Float32Array, frames: number): void;
  onError(handler: (err: Error) => void): void;
  readonly restarts: number;
  /**
   * Frames written but not yet played by the card, when the binding can tell: the virtual card
   * always; the ALSA binding once it found aplay's substream in procfs (null until then, or where
   * the kernel does not show it). The engine steers its playback resampler on this; while it is
   * null the engine writes at media-clock pace and the card's crystal error is not compensated.
   */
  queuedFrames?(): number | null;
  /** The smallest queue the card side needs to run without underruns (frames), if it has one. */
  readonly minQueueFrames?: number;
  /** Card-side slips so far: underruns (card ran dry) and overruns (queue full, frames dropped). */
  slips?(): { underruns: number; overruns: number };
  close(): Promise<void>;
}

/** The virtual card always knows its queue and its slips. */
export type VirtualPlaybackStream = Omit<PlaybackStream, 'queuedFrames' | 'slips'> & {
  queuedFrames(): number;
  slips(): { underruns: number; overruns: number };
};

export interface AudioBinding {
  openCapture(o: CaptureOptions): CaptureStream;
  openPlayback(o: CaptureOptions): PlaybackStream;
}

export interface VirtualAudioOptions {
  clock: ClockSource;
  /** Playback queue capacity in frames (the card's buffer). Default 4800 (100 ms). */
  playbackBufferFrames?: number;
  /** Keep played frames in `recorded` (default true; long simulations turn it off). */
  record?: boolean;
  /** Frames queued before a stopped playback card starts (ALSA start threshold). Default 2 periods. */
  playbackStartFrames?: number;
  /** Card crystal error: +100 means the card runs 100 ppm fast. */
  ppm?: number;
  /** Source signal per channel: a sine of `toneHz` (default 1000) at `amplitude`, or a custom generator. */
  toneHz?: number;
  amplitude?: number;
  generator?: (frame: number, channel: number) => number;
  /**
   * Told of every period the playback card takes, with the monotonic ms it started playing
   * (benchmarks: end-to-end latency). The samples are only valid during the call.
   */
  onPlay?: (samples: Float32Array, frames: number, atMs: number) => void;
  /**
   * Wake once per period through a PeriodTicker thread, as a real card wakes its reader per
   * period, instead of the clock's timers (1 ms granularity, so a 16-frame card delivers 3.5
   * periods every 1.14 ms). Only with the system clock; costs a thread and a wake per period.
   */
  periodWakes?: boolean;
}

/** Virtual sound card. `recorded` holds every frame written to any playback stream. */
export class VirtualAudioBinding implements AudioBinding {
  readonly recorded: number[][] = [];
  constructor(private readonly o: VirtualAudioOptions) {}

  private ratePerMs(): number {
    return 48 * (1 + (this.o.ppm ?? 0) / 1e6);
  }

  openCapture(c: CaptureOptions): CaptureStream {
    const clock = this.o.clock;
    const handlers: Array<(s: Float32Array, f: number) => void> = [];
    const block = new Float32Array(c.periodFrames * c.channels);
    const gen =
      this.o.generator ??
      ((f: number) =>
        (this.o.amplitude ?? 0.5) * Math.sin((2 * Math.PI * (this.o.toneHz ?? 1000) * f) / 48000));
    let frame = 0;
    let closed = false;
    let timer: TimerHandle | null = null;
    const t0 = clock.monotonicMs();
    const periodMs = c.periodFrames / this.ratePerMs();
    const deliver = (): void => {
      if (closed) return;
      const due = Math.floor((clock.monotonicMs() - t0) * this.ratePerMs());
      while (frame + c.periodFrames <= due) {
        for (let f = 0; f < c.periodFrames; f++)
          for (let ch = 0; ch < c.channels; ch++) block[f * c.channels + ch] = gen(frame + f, ch);
        frame += c.periodFrames;
        for (const h of handlers) h(block, c.periodFrames);
      }
    };
    const tick = (): void => {
      deliver();
      if (!closed) timer = clock.setTimeout(tick, periodMs);
    };
    let ticker: PeriodTicker | null = null;
    if (this.o.periodWakes) ticker = startPeriodTicker(periodMs * 1000, deliver);
    else timer = clock.setTimeout(tick, periodMs);
    return {
      onData: (h) => void handlers.push(h),
      onError: () => undefined,
      restarts: 0,
      close: async () => {
        closed = true;
        if (timer) clock.clearTimeout(timer);
        ticker?.stop();
      },
    };
  }

  /**
   * A card that plays at its crystal's pace: it starts once `playbackStartFrames` are queued,
   * takes one period per period time, and stops on an underrun (counted) until refilled, as ALSA
   * does. `recorded` holds the frames actually played (underrun gaps are not recorded).
   */
  openPlayback(c: CaptureOptions): VirtualPlaybackStream {
    const clock = this.o.clock;
    const chans: number[][] = Array.from({ length: c.channels }, () => []);
    this.recorded.push(...chans);
    const cap = this.o.playbackBufferFrames ?? 4800;
    const startAt = this.o.playbackStartFrames ?? 2 * c.periodFrames;
    const q = new Float32Array(cap * c.channels);
    let head = 0;
    let count = 0;
    let running = false;
    let played = 0;
    let t0 = 0;
    let closed = false;
    let timer: TimerHandle | null = null;
    const slips = { underruns: 0, overruns: 0 };
    const record = this.o.record ?? true;
    const onPlay = this.o.onPlay;
    const played1 = onPlay ? new Float32Array(cap * c.channels) : null;
    const take = (n: number, atMs: number): void => {
      if (onPlay && played1 && n > 0) {
        for (let f = 0; f < n; f++) {
          const o = ((head + f) % cap) * c.channels;
          for (let ch = 0; ch < c.channels; ch++) played1[f * c.channels + ch] = q[o + ch]!;
        }
        onPlay(played1, n, atMs);
      }
      if (record)
        for (let f = 0; f < n; f++) {
          const o = ((head + f) % cap) * c.channels;
          for (let ch = 0; ch < c.channels; ch++) chans[ch]!.push(q[o + ch]!);
        }
      head = (head + n) % cap;
      count -= n;
    };
    const periodMs = c.periodFrames / this.ratePerMs();
    const ticker: PeriodTicker | null = this.o.periodWakes
      ? startPeriodTicker(periodMs * 1000, () => {
          if (running) consume();
        })
      : null;
    const tick = (): void => {
      timer = null;
      if (closed || !running) return;
      if (consume()) timer = clock.setTimeout(tick, periodMs);
    };
    /** Plays the periods due by now; false when the card stopped on an underrun. */
    const consume = (): boolean => {
      const due = Math.floor((clock.monotonicMs() - t0) * this.ratePerMs());
      // The card consumes whole periods.
      while (played + c.periodFrames <= due) {
        const at = t0 + played / this.ratePerMs();
        if (count < c.periodFrames) {
          take(count, at);
          slips.underruns++;
          running = false;
          return false;
        }
        take(c.periodFrames, at);
        played += c.periodFrames;
      }
      return true;
    };
    return {
      write: (s, frames) => {
        if (closed) return;
        let n = frames;
        if (count + n > cap) {
          slips.overruns++;
          n = cap - count;
        }
        for (let f = 0; f < n; f++) {
          const o = ((head + count + f) % cap) * c.channels;
          for (let ch = 0; ch < c.channels; ch++) q[o + ch] = s[f * c.channels + ch]!;
        }
        count += n;
        if (!running && count >= startAt) {
          running = true;
          played = 0;
          t0 = clock.monotonicMs();
          if (!ticker) timer = clock.setTimeout(tick, periodMs);
        }
      },
      // Like ALSA's delay: what was queued since the card started, less what its crystal has
      // played by now (continuous, not rounded to the periods the tick takes).
      queuedFrames: () => {
        if (!running) return count;
        return Math.max(0, count + played - (clock.monotonicMs() - t0) * this.ratePerMs());
      },
      slips: () => ({ ...slips }),
      onError: () => undefined,
      restarts: 0,
      close: async () => {
        closed = true;
        if (timer) clock.clearTimeout(timer);
        ticker?.stop();
      },
    };
  }
}

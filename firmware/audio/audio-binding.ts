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
  close(): Promise<void>;
}

export interface AudioBinding {
  openCapture(o: CaptureOptions): CaptureStream;
  openPlayback(o: CaptureOptions): PlaybackStream;
}

export interface VirtualAudioOptions {
  clock: ClockSource;
  /** Card crystal error: +100 means the card runs 100 ppm fast. */
  ppm?: number;
  /** Source signal per channel: a sine of `toneHz` (default 1000) at `amplitude`, or a custom generator. */
  toneHz?: number;
  amplitude?: number;
  generator?: (frame: number, channel: number) => number;
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
    const tick = (): void => {
      if (closed) return;
      const due = Math.floor((clock.monotonicMs() - t0) * this.ratePerMs());
      while (frame + c.periodFrames <= due) {
        for (let f = 0; f < c.periodFrames; f++)
          for (let ch = 0; ch < c.channels; ch++) block[f * c.channels + ch] = gen(frame + f, ch);
        frame += c.periodFrames;
        for (const h of handlers) h(block, c.periodFrames);
      }
      timer = clock.setTimeout(tick, c.periodFrames / this.ratePerMs());
    };
    timer = clock.setTimeout(tick, c.periodFrames / this.ratePerMs());
    return {
      onData: (h) => void handlers.push(h),
      onError: () => undefined,
      restarts: 0,
      close: async () => {
        closed = true;
        if (timer) clock.clearTimeout(timer);
      },
    };
  }

  openPlayback(c: CaptureOptions): PlaybackStream {
    const chans: number[][] = Array.from({ length: c.channels }, () => []);
    this.recorded.push(...chans);
    return {
      write: (s, frames) => {
        for (let f = 0; f < frames; f++)
          for (let ch = 0; ch < c.channels; ch++) chans[ch]!.push(s[f * c.channels + ch]!);
      },
      onError: () => undefined,
      restarts: 0,
      close: async () => undefined,
    };
  }
}

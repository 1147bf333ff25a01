/** The Core's test signal (pure): a sine on every channel, phase-continuous across blocks. */
import { sine } from '../../../firmware/audio/dsp.js';

export class ToneSource {
  private phase = 0;
  private scratch: Float32Array;

  constructor(
    readonly channels: number,
    readonly hz = 440,
    readonly amplitude = 0.25,
  ) {
    this.scratch = new Float32Array(960 * channels);
  }

  /** The next `frames` frames, interleaved (a view valid until the next call). */
  next(frames: number): Float32Array {
    if (this.scratch.length < frames * this.channels) this.scratch = new Float32Array(frames * this.channels);
    this.phase = sine(this.scratch, frames, this.channels, this.hz, this.amplitude, this.phase);
    return this.scratch.subarray(0, frames * this.channels);
  }
}

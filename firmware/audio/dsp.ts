/**
 * Signal processing, pure and allocation-free per block: a streaming cubic (Catmull-Rom)
 * resampler with exact sample accounting, the drift-tracking loop that steers it, per-channel
 * gain/mute, and peak/RMS meters.
 */

/**
 * Streaming resampler. Input frames are appended with `push`; `pull` produces output frames,
 * advancing the read position by `step` input frames per output frame (step > 1 consumes faster).
 * The position is kept as an integer frame count plus a fraction, so accounting is exact: after
 * any sequence of pulls, consumed input = sum of steps (to float rounding of the fraction only).
 */
export class Resampler {
  private readonly fifo: Float32Array;
  private readonly cap: number;
  /** Frames stored, and where the first stored frame sits in the ring. */
  private count = 0;
  private head = 0;
  /** Fractional read position past the first stored frame (which is x[-1] of the cubic). */
  private frac = 0;
  /** Total input frames discarded from the front (consumed). */
  consumed = 0;
  produced = 0;

  constructor(
    readonly channels: number,
    capacityFrames = 8192,
  ) {
    this.cap = capacityFrames;
    this.fifo = new Float32Array(capacityFrames * channels);
  }

  /** Frames available to read past the interpolation point (fill level for the tracking loop). */
  get available(): number {
    return this.count - 3 - this.frac;
  }

  get stored(): number {
    return this.count;
  }

  /** Append `frames` interleaved frames. Returns false (nothing stored) when the FIFO is full. */
  push(src: Float32Array, frames: number, srcOffset = 0): boolean {
    if (this.count + frames > this.cap) return false;
    const ch = this.channels;
    let w = (this.head + this.count) % this.cap;
    for (let f = 0; f < frames; f++) {
      const so = srcOffset + f * ch;
      const wo = w * ch;
      for (let c = 0; c < ch; c++) this.fifo[wo + c] = src[so + c]!;
      if (++w === this.cap) w = 0;
    }
    this.count += frames;
    return true;
  }

  /**
   * Produce `frames` output frames into `dst` at `step` input frames per output frame.
   * Returns false (nothing produced) when the input does not hold enough frames: an underrun.
   */
  pull(dst: Float32Array, frames: number, step: number, dstOffset = 0): boolean {
    const need = Math.floor(this.frac + step * (frames - 1)) + 4;
    if (need > this.count) return false;
    const ch = this.channels;
    const cap = this.cap;
    let pos = this.frac;
    for (let f = 0; f < frames; f++) {
      const i = Math.floor(pos);
      const t = pos - i;
      const t2 = t * t;
      const t3 = t2 * t;
      // Catmull-Rom weights for x[i], x[i+1], x[i+2], x[i+3]; output lies between i+1 and i+2.
      const w0 = -0.5 * t3 + t2 - 0.5 * t;
      const w1 = 1.5 * t3 - 2.5 * t2 + 1;
      const w2 = -1.5 * t3 + 2 * t2 + 0.5 * t;
      const w3 = 0.5 * t3 - 0.5 * t2;
      const b0 = ((this.head + i) % cap) * ch;
      const b1 = ((this.head + i + 1) % cap) * ch;
      const b2 = ((this.head + i + 2) % cap) * ch;
      const b3 = ((this.head + i + 3) % cap) * ch;
      const o = dstOffset + f * ch;
      for (let c = 0; c < ch; c++)
        dst[o + c] =
          w0 * this.fifo[b0 + c]! +
          w1 * this.fifo[b1 + c]! +
          w2 * this.fifo[b2 + c]! +
          w3 * this.fifo[b3 + c]!;
      pos += step;
    }
    const whole = Math.floor(pos);
    this.frac = pos - whole;
    this.head = (this.head + whole) % cap;
    this.count -= whole;
    this.consumed += whole;
    this.produced += frames;
    return true;
  }

  /** Exact input position consumed so far, including the fraction. */
  get position(): number {
    return this.consumed + this.frac;
  }
}

/**
 * Drift tracking: a PI loop on the resampler's fill level. Call `update` once per block with the
 * fill (frames) and the block's duration (s); it returns the step to use. The integral term learns
 * the crystal's ratio, the proportional term holds the fill near its target; the step is clamped to
 * +-maxPpm, so the loop never makes an audible jump.
 */
export class DriftTracker {
  private integral = 0;
  private filtered: number | null = null;
  step = 1;

  constructor(
    readonly targetFrames: number,
    readonly kp = 8e-6,
    readonly ki = 2e-6,
    readonly maxPpm = 1000,
  ) {}

  update(fillFrames: number, dtS: number): number {
    this.filtered = this.filtered === null ? fillFrames : this.filtered + (fillFrames - this.filtered) * 0.02;
    const err = this.filtered - this.targetFrames;
    this.integral += err * dtS;
    const lim = this.maxPpm * 1e-6;
    const maxI = lim / this.ki;
    if (this.integral > maxI) this.integral = maxI;
    if (this.integral < -maxI) this.integral = -maxI;
    let corr = this.kp * err + this.ki * this.integral;
    if (corr > lim) corr = lim;
    if (corr < -lim) corr = -lim;
    this.step = 1 + corr;
    return this.step;
  }

  /** Forget the loop's history (after the buffer it steers was reset). */
  reset(): void {
    this.integral = 0;
    this.filtered = null;
    this.step = 1;
  }

  /** Current estimate of the ratio error in ppm. */
  get ppm(): number {
    return (this.step - 1) * 1e6;
  }
}

export interface ChannelControls {
  /** Linear gain per channel. */
  gain: Float32Array;
  mute: Uint8Array;
}

export function createChannelControls(channels: number): ChannelControls {
  return { gain: new Float32Array(channels).fill(1), mute: new Uint8Array(channels) };
}

export function dbToLinear(db: number): number {
  return db <= -100 ? 0 : 10 ** (db / 20);
}

/** Apply gain/mute in place to `frames` interleaved frames. */
export function applyGain(
  buf: Float32Array,
  frames: number,
  channels: number,
  ctl: ChannelControls,
  offset = 0,
): void {
  for (let c = 0; c < channels; c++) {
    const g = ctl.mute[c] ? 0 : ctl.gain[c]!;
    if (g === 1) continue;
    for (let f = 0, i = offset + c; f < frames; f++, i += channels) buf[i] = buf[i]! * g;
  }
}

/** Peak and RMS per channel, accumulated until `read()`. */
export class Meters {
  private readonly peak: Float32Array;
  private readonly sumSq: Float64Array;
  private frames = 0;
  constructor(readonly channels: number) {
    this.peak = new Float32Array(channels);
    this.sumSq = new Float64Array(channels);
  }
  feed(buf: Float32Array, frames: number, offset = 0): void {
    const ch = this.channels;
    for (let f = 0, i = offset; f < frames; f++)
      for (let c = 0; c < ch; c++, i++) {
        const v = buf[i]!;
        const a = v < 0 ? -v : v;
        if (a > this.peak[c]!) this.peak[c] = a;
        this.sumSq[c] = this.sumSq[c]! + v * v;
      }
    this.frames += frames;
  }
  /** Per channel { peakDb, rmsDb } since the last read (-Infinity for silence), then resets. */
  read(): Array<{ peakDb: number; rmsDb: number }> {
    const out = [];
    for (let c = 0; c < this.channels; c++) {
      const rms = this.frames ? Math.sqrt(this.sumSq[c]! / this.frames) : 0;
      out.push({ peakDb: 20 * Math.log10(this.peak[c]!), rmsDb: 20 * Math.log10(rms) });
    }
    this.peak.fill(0);
    this.sumSq.fill(0);
    this.frames = 0;
    return out;
  }
}

/** Fill `frames` interleaved frames with a sine; returns the next phase (radians). */
export function sine(
  dst: Float32Array,
  frames: number,
  channels: number,
  freqHz: number,
  amplitude: number,
  phase: number,
  rate = 48000,
): number {
  const w = (2 * Math.PI * freqHz) / rate;
  for (let f = 0; f < frames; f++) {
    const v = amplitude * Math.sin(phase + w * f);
    for (let c = 0; c < channels; c++) dst[f * channels + c] = v;
  }
  return (phase + w * frames) % (2 * Math.PI);
}

/** Estimate a tone's frequency from rising zero crossings (linear interpolation). */
export function estimateFrequency(x: ArrayLike<number>, rate = 48000): number {
  let first = -1;
  let last = -1;
  let n = 0;
  for (let i = 1; i < x.length; i++) {
    const a = x[i - 1]!;
    const b = x[i]!;
    if (a < 0 && b >= 0) {
      const t = i - 1 + a / (a - b);
      if (first < 0) first = t;
      else n++;
      last = t;
    }
  }
  return n > 0 ? (n * rate) / (last - first) : 0;
}

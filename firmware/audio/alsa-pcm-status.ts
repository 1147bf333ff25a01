/**
 * What the kernel says about a running ALSA substream, from procfs
 * (`/proc/asound/cardC/pcmDp/subS/status`, CONFIG_SND_VERBOSE_PROCFS, on in Debian and Raspberry
 * Pi kernels). `aplay` behind a pipe cannot tell us how much it still has to play; the kernel can:
 * `delay` is what sits in the card's ring, `appl_ptr` counts the frames aplay has handed to it.
 * With the frames we wrote into the pipe, that gives the whole queue between us and the DAC, which
 * is what the receive-side drift loop (CardRateMatcher) steers on.
 *
 * Pure: parsePcmStatus reads the file's text, AlsaQueueEstimator turns readings plus our own write
 * count into a queue estimate at any time. The I/O (finding the substream aplay opened, reading it
 * now and then) is in alsa-binding.ts.
 */
import { QperiphError } from '../errors.js';

export class AlsaStatusError extends QperiphError {
  declare readonly code: 'AUDIO_ERR_ALSA_STATUS';
  constructor(message: string) {
    super('AUDIO_ERR_ALSA_STATUS', message);
  }
}

export type PcmState =
  'OPEN' | 'SETUP' | 'PREPARED' | 'RUNNING' | 'XRUN' | 'DRAINING' | 'PAUSED' | 'SUSPENDED' | 'DISCONNECTED';

export type PcmStatus =
  | { open: false }
  | {
      open: true;
      state: PcmState;
      ownerPid: number | null;
      delay: number;
      avail: number;
      hwPtr: number;
      applPtr: number;
    };

const STATES = new Set<string>([
  'OPEN',
  'SETUP',
  'PREPARED',
  'RUNNING',
  'XRUN',
  'DRAINING',
  'PAUSED',
  'SUSPENDED',
  'DISCONNECTED',
]);

/** Parse a substream `status` file. Throws AlsaStatusError on text that is neither form. */
export function parsePcmStatus(text: string): PcmStatus {
  const trimmed = text.trim();
  if (trimmed === 'closed') return { open: false };
  const fields = new Map<string, string>();
  for (const line of trimmed.split('\n')) {
    const m = /^([a-z_]+)\s*:\s*(.*)$/.exec(line.trim());
    if (m) fields.set(m[1]!, m[2]!.trim());
  }
  const state = fields.get('state');
  if (!state || !STATES.has(state))
    throw new AlsaStatusError(`no PCM state in status: ${trimmed.slice(0, 40)}`);
  const int = (k: string, required: boolean): number | null => {
    const v = fields.get(k);
    if (v === undefined) {
      if (required) throw new AlsaStatusError(`status has no ${k}`);
      return null;
    }
    if (!/^-?\d+$/.test(v)) throw new AlsaStatusError(`status ${k} is not an integer: ${v.slice(0, 20)}`);
    return Number(v);
  };
  return {
    open: true,
    state: state as PcmState,
    ownerPid: int('owner_pid', false),
    delay: int('delay', true)!,
    avail: int('avail', true)!,
    hwPtr: int('hw_ptr', true)!,
    applPtr: int('appl_ptr', true)!,
  };
}

/**
 * Frames between us and the DAC: (frames we wrote into the pipe - frames aplay handed to ALSA)
 * + the card's delay. Between readings it runs the card on at the nominal rate; the drift loop
 * corrects the rest at the next reading. An xrun makes ALSA move appl_ptr up to hw_ptr; that jump
 * is not frames aplay read, so the consumed count never passes the written count.
 */
export class AlsaQueueEstimator {
  private written = 0;
  private consumed = 0;
  private lastAppl: number | null = null;
  private base: { queued: number; written: number; atMs: number; running: boolean } | null = null;
  /** Readings taken (for status and tests). */
  readings = 0;
  /** Times a running card was seen stopped again (XRUN, or re-prepared after one). */
  xruns = 0;
  private wasRunning = false;

  constructor(private readonly framesPerMs = 48) {}

  /** Frames written since the last reset. */
  get writtenFrames(): number {
    return this.written;
  }

  /** We wrote `frames` more frames into aplay's pipe. */
  wrote(frames: number): void {
    this.written += frames;
  }

  /** A fresh kernel reading at `nowMs`. */
  onStatus(s: PcmStatus, nowMs: number): void {
    if (!s.open) return;
    this.readings++;
    if (this.lastAppl !== null) {
      const d = s.applPtr - this.lastAppl;
      // appl_ptr wraps at the boundary (a large power of two times the buffer); a negative step
      // is a wrap or a reset, never frames going back: count nothing for it.
      if (d > 0) this.consumed += d;
    } else {
      this.consumed = Math.min(this.written, Math.max(0, s.applPtr));
    }
    if (this.consumed > this.written) this.consumed = this.written;
    this.lastAppl = s.applPtr;
    const running = s.state === 'RUNNING' || s.state === 'DRAINING';
    if (this.wasRunning && !running && s.state !== 'PAUSED') this.xruns++;
    this.wasRunning = running;
    this.base = {
      queued: this.written - this.consumed + Math.max(0, s.delay),
      written: this.written,
      atMs: nowMs,
      running: s.state === 'RUNNING' || s.state === 'DRAINING',
    };
  }

  /** Estimated frames queued at `nowMs`, or null before the first reading. */
  queued(nowMs: number): number | null {
    const b = this.base;
    if (!b) return null;
    const played = b.running ? (nowMs - b.atMs) * this.framesPerMs : 0;
    return Math.max(0, b.queued + (this.written - b.written) - played);
  }

  /** Forget everything (the tool restarted). */
  reset(): void {
    this.written = 0;
    this.consumed = 0;
    this.lastAppl = null;
    this.base = null;
    this.wasRunning = false;
  }
}

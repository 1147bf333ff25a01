/**
 * ALSA binding over alsa-utils: `arecord`/`aplay` child processes exchanging raw PCM over pipes,
 * with explicit `--period-time`/`--buffer-time`. A tool that exits is restarted after a back-off
 * (the stream stays open; `restarts` counts it). Samples are converted between the card's format
 * and interleaved float32.
 *
 * Playback queue: aplay reads our pipe and cannot say how much it still has to play, so the
 * binding finds the substream aplay opened in procfs (`asound/card*\/pcm*p/sub*\/status`, by
 * owner_pid) and reads it every `statusMs`; AlsaQueueEstimator turns that into `queuedFrames()`,
 * which the engine's drift loop steers on. aplay starts the card after two periods
 * (`--start-delay`), not after a full buffer, so the loop can hold the queue at three periods.
 * Where procfs has no such entry (PulseAudio/PipeWire, `file` PCMs, kernels without
 * CONFIG_SND_VERBOSE_PROCFS) `queuedFrames()` stays null and playback runs uncompensated
 * (`alsa_queue_unknown` is logged once).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AlsaDeviceConfig } from '../config/board-types.js';
import type { Logger } from '../log/logger.js';
import type { AudioBinding, CaptureOptions, CaptureStream, PlaybackStream } from './audio-binding.js';
import { AlsaQueueEstimator, parsePcmStatus } from './alsa-pcm-status.js';

export type AlsaFormat = AlsaDeviceConfig['sampleFormat'];

const BYTES: Record<AlsaFormat, number> = { S16_LE: 2, S24_3LE: 3, S24_LE: 4, S32_LE: 4, FLOAT_LE: 4 };

export function alsaBytesPerSample(f: AlsaFormat): number {
  return BYTES[f];
}

/** Card bytes -> float32 (count samples). */
export function alsaToFloat(f: AlsaFormat, src: Buffer, count: number, dst: Float32Array): void {
  for (let i = 0; i < count; i++) {
    switch (f) {
      case 'S16_LE':
        dst[i] = src.readInt16LE(i * 2) / 32768;
        break;
      case 'S24_3LE':
        dst[i] = src.readIntLE(i * 3, 3) / 8388608;
        break;
      case 'S24_LE':
        dst[i] = ((src.readInt32LE(i * 4) << 8) >> 8) / 8388608;
        break;
      case 'S32_LE':
        dst[i] = src.readInt32LE(i * 4) / 2147483648;
        break;
      case 'FLOAT_LE':
        dst[i] = src.readFloatLE(i * 4);
        break;
    }
  }
}

/** float32 -> card bytes (clipped). */
export function floatToAlsa(f: AlsaFormat, src: Float32Array, count: number, dst: Buffer): void {
  for (let i = 0; i < count; i++) {
    const v = Math.max(-1, Math.min(1, src[i]!));
    switch (f) {
      case 'S16_LE':
        dst.writeInt16LE(Math.min(32767, Math.round(v * 32768)), i * 2);
        break;
      case 'S24_3LE':
        dst.writeIntLE(Math.min(8388607, Math.round(v * 8388608)), i * 3, 3);
        break;
      case 'S24_LE':
        dst.writeInt32LE(Math.min(8388607, Math.round(v * 8388608)), i * 4);
        break;
      case 'S32_LE':
        dst.writeInt32LE(Math.min(2147483647, Math.round(v * 2147483648)), i * 4);
        break;
      case 'FLOAT_LE':
        dst.writeFloatLE(v, i * 4);
        break;
    }
  }
}

export interface AlsaBindingOptions {
  logger: Logger;
  format: AlsaFormat;
  periodTimeUs: number;
  bufferTimeUs: number;
  arecordPath?: string;
  aplayPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Restart back-off in ms (doubles up to 30 s). */
  restartMs?: number;
  /** Stop restarting after this many (tests with finite file PCMs). Default unlimited. */
  maxRestarts?: number;
  /** Where procfs is mounted (tests point it at a fake tree). Default /proc. */
  procRoot?: string;
  /** Read the substream status this often, ms. Default 20. */
  statusMs?: number;
  /** Give up looking for aplay's substream after this long, ms. Default 5000. */
  statusSearchMs?: number;
  /** Monotonic ms (tests). Default performance.now. */
  now?: () => number;
}

/** The procfs status file of the playback substream owned by `pid`, or null. */
export function findPlaybackSubstream(procRoot: string, pid: number): string | null {
  const asound = join(procRoot, 'asound');
  const list = (dir: string, re: RegExp): string[] => {
    try {
      return readdirSync(dir).filter((n) => re.test(n));
    } catch {
      return [];
    }
  };
  for (const card of list(asound, /^card\d+$/))
    for (const pcm of list(join(asound, card), /^pcm\d+p$/))
      for (const sub of list(join(asound, card, pcm), /^sub\d+$/)) {
        const file = join(asound, card, pcm, sub, 'status');
        try {
          const st = parsePcmStatus(readFileSync(file, 'utf8'));
          if (st.open && st.ownerPid === pid) return file;
        } catch {
          // closed between listing and reading, or not a status file: look on
        }
      }
  return null;
}

function args(o: AlsaBindingOptions, c: CaptureOptions, playback = false): string[] {
  return [
    '-q',
    '-D',
    c.device,
    '-t',
    'raw',
    '-f',
    o.format,
    '-r',
    '48000',
    '-c',
    String(c.channels),
    `--period-time=${o.periodTimeUs}`,
    `--buffer-time=${o.bufferTimeUs}`,
    ...(playback ? [`--start-delay=${2 * o.periodTimeUs}`] : []),
  ];
}

class Supervised {
  child: ChildProcess | null = null;
  restarts = 0;
  closed = false;
  readonly errorHandlers: Array<(e: Error) => void> = [];
  constructor(
    private readonly o: AlsaBindingOptions,
    private readonly cmd: string,
    private readonly argv: string[],
    private readonly attach: (c: ChildProcess) => void,
    private readonly onLaunch?: () => void,
  ) {
    this.launch();
  }
  private launch(): void {
    if (this.closed) return;
    this.onLaunch?.();
    const c = spawn(this.cmd, this.argv, { stdio: ['pipe', 'pipe', 'pipe'], env: this.o.env ?? process.env });
    this.child = c;
    let err = '';
    c.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-1000)));
    c.stdin?.on('error', () => undefined);
    c.on('error', (e) => this.errorHandlers.forEach((h) => h(e)));
    c.on('exit', (code, signal) => {
      this.child = null;
      if (this.closed) return;
      const e = Object.assign(
        new Error(`${this.cmd} exited (${code ?? signal}): ${err.trim().slice(-200)}`),
        {
          code: 'AUDIO_ERR_DEVICE',
        },
      );
      this.errorHandlers.forEach((h) => h(e));
      if (this.o.maxRestarts !== undefined && this.restarts >= this.o.maxRestarts) return;
      this.restarts++;
      const delay = Math.min(30000, (this.o.restartMs ?? 500) * 2 ** Math.min(6, this.restarts - 1));
      this.o.logger.warn('alsa_tool_restart', { cmd: this.cmd, code, signal, inMs: delay });
      setTimeout(() => this.launch(), delay).unref();
    });
    this.attach(c);
  }
  /** Stop the tool. `drainMs` > 0 (playback): end its input and let it play out first. */
  async close(drainMs = 0): Promise<void> {
    this.closed = true;
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((r) => {
      c.once('exit', () => r());
      c.stdin?.end();
      const term = (): void => {
        c.kill('SIGTERM');
        setTimeout(() => c.kill('SIGKILL'), 2000).unref();
      };
      if (drainMs > 0) setTimeout(term, drainMs).unref();
      else term();
    });
  }
}

export class AlsaAudioBinding implements AudioBinding {
  constructor(private readonly o: AlsaBindingOptions) {}

  openCapture(c: CaptureOptions): CaptureStream {
    const handlers: Array<(s: Float32Array, f: number) => void> = [];
    const frameBytes = BYTES[this.o.format] * c.channels;
    const block = new Float32Array(c.periodFrames * c.channels);
    const blockBytes = frameBytes * c.periodFrames;
    let pending: Buffer = Buffer.alloc(0);
    const sup = new Supervised(this.o, this.o.arecordPath ?? 'arecord', args(this.o, c), (child) => {
      pending = Buffer.alloc(0);
      child.stdout?.on('data', (d: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, d]) : d;
        let off = 0;
        while (pending.length - off >= blockBytes) {
          alsaToFloat(this.o.format, pending.subarray(off, off + blockBytes), block.length, block);
          off += blockBytes;
          for (const h of handlers) h(block, c.periodFrames);
        }
        pending = pending.subarray(off);
      });
    });
    return {
      onData: (h) => void handlers.push(h),
      onError: (h) => void sup.errorHandlers.push(h),
      get restarts() {
        return sup.restarts;
      },
      close: () => sup.close(),
    };
  }

  openPlayback(
    c: CaptureOptions,
  ): PlaybackStream & { readonly startTrimmedFrames: number; readonly toolPid: number | null } {
    const now = this.o.now ?? (() => performance.now());
    const est = new AlsaQueueEstimator();
    const procRoot = this.o.procRoot ?? '/proc';
    const statusMs = this.o.statusMs ?? 20;
    const searchMs = this.o.statusSearchMs ?? 5000;
    let statusPath: string | null = null;
    let launchedAt = now();
    let lastSearch = -Infinity;
    let lastRead = -Infinity;
    let gaveUp = false;
    let startTrimmed = 0;
    let foundAt: number | null = null;
    const sup = new Supervised(
      this.o,
      this.o.aplayPath ?? 'aplay',
      args(this.o, c, true),
      () => undefined,
      () => {
        est.reset();
        startTrimmed = 0;
        foundAt = null;
        statusPath = null;
        gaveUp = false;
        launchedAt = now();
      },
    );
    const periodFrames = Math.round((this.o.periodTimeUs * 48) / 1000);
    const minQueue = 3 * periodFrames;
    return {
      write: (s, frames) => {
        const stdin = sup.child?.stdin;
        if (!stdin) return;
        // Start-up only: what piled up in the pipe while aplay was starting and we could not yet
        // read its queue would stay as latency for the life of the stream (the drift loop bends
        // the rate by at most 0.1 %). In the first second after the queue became readable,
        // blocks that find it over twice its target are dropped instead; never after that.
        if (statusPath && foundAt !== null && now() - foundAt < 1000) {
          const q = est.queued(now());
          if (q !== null && q > 2 * minQueue) {
            startTrimmed += frames;
            return;
          }
        }
        const n = frames * c.channels;
        const b = Buffer.alloc(n * BYTES[this.o.format]);
        floatToAlsa(this.o.format, s, n, b);
        stdin.write(b);
        est.wrote(frames);
      },
      queuedFrames: () => {
        const pid = sup.child?.pid;
        if (!pid) return null;
        const t = now();
        if (!statusPath) {
          if (gaveUp || t - lastSearch < 50) return null;
          lastSearch = t;
          statusPath = findPlaybackSubstream(procRoot, pid);
          if (!statusPath) {
            if (t - launchedAt > searchMs) {
              gaveUp = true;
              this.o.logger.warn('alsa_queue_unknown', {
                device: c.device,
                reason: `no substream owned by aplay (pid ${pid}) under ${procRoot}/asound`,
              });
            }
            return null;
          }
          foundAt ??= t;
          this.o.logger.info('alsa_queue_found', {
            device: c.device,
            status: statusPath,
            afterMs: Math.round(t - launchedAt),
          });
        }
        if (t - lastRead >= statusMs) {
          lastRead = t;
          try {
            est.onStatus(parsePcmStatus(readFileSync(statusPath, 'utf8')), t);
          } catch (e) {
            this.o.logger.warn('alsa_status_error', { status: statusPath, error: e });
            statusPath = null;
            return null;
          }
        }
        return est.queued(t);
      },
      minQueueFrames: minQueue,
      // Underruns the kernel showed (a running substream found stopped); restarts of the tool
      // count too, since a new aplay starts an empty card.
      slips: () => ({ underruns: est.xruns + sup.restarts, overruns: 0 }),
      get startTrimmedFrames() {
        return startTrimmed;
      },
      get toolPid() {
        return sup.child?.pid ?? null;
      },
      onError: (h) => void sup.errorHandlers.push(h),
      get restarts() {
        return sup.restarts;
      },
      close: () => sup.close(Math.max(2000, (this.o.bufferTimeUs / 1000) * 4)),
    };
  }
}

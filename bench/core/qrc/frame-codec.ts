/**
 * QRC framing over TCP: UTF-8 JSON, each message ended by one NUL byte, both directions.
 * Pure. The byte-level state machine is the control link's `FrameDecoder` (same framing); this
 * file turns its events into what the QRC session needs:
 *   - `message`: one frame's text (JSON not yet parsed: the JSON-RPC layer answers -32700).
 *   - `error` with `fatal: false`: the frame was not UTF-8 -> answer -32700, keep the connection.
 *   - `error` with `fatal: true`: the frame passed `maxFrameBytes` -> answer, then close.
 * Empty frames (two NULs in a row) are skipped silently: some clients end with "\0\0".
 */
import { FrameDecoder } from '../../../firmware/control/frame-codec.js';

/** Default largest frame (bytes, NUL excluded). */
export const QRC_MAX_FRAME_BYTES = 1024 * 1024;

export type QrcFrameEvent =
  | { kind: 'message'; text: string; offset: number; bytes: number }
  | { kind: 'error'; fatal: boolean; reason: string; offset: number };

export class QrcFrameDecoder {
  private readonly inner: FrameDecoder;
  private dead = false;

  constructor(options: { maxFrameBytes?: number } = {}) {
    this.inner = new FrameDecoder({ maxMessageBytes: options.maxFrameBytes ?? QRC_MAX_FRAME_BYTES });
  }

  get maxFrameBytes(): number {
    return this.inner.maxMessageBytes;
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.inner.buffered;
  }

  /** Feed one chunk (any split). After a fatal error every later chunk yields nothing. */
  push(chunk: Uint8Array): QrcFrameEvent[] {
    if (this.dead) return [];
    const out: QrcFrameEvent[] = [];
    for (const ev of this.inner.push(chunk)) {
      if (ev.kind === 'frame') {
        out.push({ kind: 'message', text: ev.text, offset: ev.offset, bytes: ev.bytes });
        continue;
      }
      const e = ev.error;
      if (e.code === 'CONTROL_ERR_EMPTY') continue;
      const fatal = e.code === 'CONTROL_ERR_TOO_LARGE';
      out.push({ kind: 'error', fatal, reason: e.reason, offset: e.offset });
      if (fatal) {
        this.dead = true;
        break;
      }
    }
    return out;
  }
}

/** One message as a frame: compact JSON (never holds a raw NUL) plus the NUL. */
export { encodeFrame as encodeQrcFrame } from '../../../firmware/control/frame-codec.js';

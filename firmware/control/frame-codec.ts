/**
 * Control-link framing: every message is UTF-8 JSON followed by exactly one NUL byte (0x00),
 * in both directions (the framing of the vendor's public QRC protocol).
 *
 * `FrameDecoder` is a pure streaming state machine: feed it chunks as they arrive (any split,
 * one byte at a time included) and it returns the frames completed so far, in order. It never
 * throws on bad input; problems come back as `ControlFrameError` events with the stream offset
 * where the offending frame started:
 *   - CONTROL_ERR_TOO_LARGE: the frame passed `maxMessageBytes` before its NUL. The decoder then
 *     discards bytes up to the next NUL (the server closes the connection instead, see docs).
 *   - CONTROL_ERR_ENCODING: the frame is not valid UTF-8 (the frame is dropped, the stream goes on).
 *   - CONTROL_ERR_EMPTY: two NULs in a row (an empty frame; reported, harmless).
 */
import { QperiphError } from '../errors.js';

/** Default largest message (bytes, NUL excluded). */
export const CONTROL_MAX_MESSAGE_BYTES = 256 * 1024;

export type ControlFrameErrorCode = 'CONTROL_ERR_TOO_LARGE' | 'CONTROL_ERR_ENCODING' | 'CONTROL_ERR_EMPTY';

export class ControlFrameError extends QperiphError {
  declare readonly code: ControlFrameErrorCode;
  /** Stream offset (bytes since the connection opened) of the frame's first byte. */
  readonly offset: number;
  readonly reason: string;
  constructor(code: ControlFrameErrorCode, reason: string, offset: number) {
    super(code, `${reason} (frame at byte ${offset})`);
    this.reason = reason;
    this.offset = offset;
  }
}

export type FrameEvent =
  | { kind: 'frame'; text: string; offset: number; bytes: number }
  | { kind: 'error'; error: ControlFrameError };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class FrameDecoder {
  readonly maxMessageBytes: number;
  private parts: Uint8Array[] = [];
  private partBytes = 0;
  /** Stream offset of the first byte of the frame being collected. */
  private frameStart = 0;
  /** Bytes consumed so far. */
  private consumed = 0;
  /** True after an oversize frame, until its NUL. */
  private discarding = false;

  constructor(options: { maxMessageBytes?: number } = {}) {
    this.maxMessageBytes = options.maxMessageBytes ?? CONTROL_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(this.maxMessageBytes) || this.maxMessageBytes < 1) {
      throw new RangeError('maxMessageBytes must be a positive integer');
    }
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.partBytes;
  }

  /** Feed one chunk; returns the events it completed. */
  push(chunk: Uint8Array): FrameEvent[] {
    const out: FrameEvent[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      const nul = chunk.indexOf(0, pos);
      const end = nul < 0 ? chunk.length : nul;
      const piece = chunk.subarray(pos, end);
      if (!this.discarding && piece.length > 0) {
        if (this.partBytes + piece.length > this.maxMessageBytes) {
          out.push({
            kind: 'error',
            error: new ControlFrameError(
              'CONTROL_ERR_TOO_LARGE',
              `message longer than ${this.maxMessageBytes} bytes`,
              this.frameStart,
            ),
          });
          this.parts = [];
          this.partBytes = 0;
          this.discarding = true;
        } else {
          // Copy: the caller may reuse its buffer.
          this.parts.push(Uint8Array.prototype.slice.call(piece));
          this.partBytes += piece.length;
        }
      }
      this.consumed += end - pos;
      if (nul < 0) break;
      // A NUL ends the frame.
      this.consumed += 1;
      if (this.discarding) {
        this.discarding = false;
      } else {
        out.push(this.finishFrame());
      }
      this.parts = [];
      this.partBytes = 0;
      this.frameStart = this.consumed;
      pos = nul + 1;
    }
    return out;
  }

  private finishFrame(): FrameEvent {
    const offset = this.frameStart;
    if (this.partBytes === 0) {
      return { kind: 'error', error: new ControlFrameError('CONTROL_ERR_EMPTY', 'empty frame', offset) };
    }
    const bytes = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partBytes);
    try {
      return { kind: 'frame', text: utf8.decode(bytes), offset, bytes: this.partBytes };
    } catch {
      return {
        kind: 'error',
        error: new ControlFrameError(
          'CONTROL_ERR_ENCODING',
          `invalid UTF-8 at byte ${offset + firstInvalidUtf8(bytes)}`,
          offset,
        ),
      };
    }
  }
}

/** Index of the first byte that makes `bytes` invalid UTF-8 (bytes.length when valid). */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let need: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i;
    }
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return i;
}

/** One value as a frame: compact JSON (which never contains a raw NUL) plus the NUL. */
export function encodeFrame(value: unknown): Buffer {
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError('value cannot be written as JSON');
  const body = Buffer.from(json, 'utf8');
  const out = Buffer.allocUnsafe(body.length + 1);
  body.copy(out, 0);
  out[body.length] = 0;
  return out;
}

/**
 * The services the control link drives but does not own, as interfaces injected into
 * ControlService: the audio stream API (built by the audio engine), the serial bridge
 * (firmware/io), and the firmware updater's status. When one is not wired, its methods answer
 * the typed error NOT_AVAILABLE (22).
 */

export type StreamDirection = 'send' | 'receive';

/** What Stream.Open asks for (validated by the control link before the API sees it). */
export interface StreamOpenRequest {
  direction: StreamDirection;
  /** 'qlan' (our Q-LAN-style RTP) or 'aes67'. */
  format: 'qlan' | 'aes67';
  /** Peer (send) or group/source (receive) IPv4 address. */
  address: string;
  /** UDP port, 1024..65535. */
  port: number;
  /** Peripheral channel numbers carried, 1-based, 1..16 of them. */
  channels: number[];
  /** Which Core asked (certificate fingerprint or 'plain:<ip>'). */
  core: string;
}

export interface StreamInfo {
  streamId: string;
  direction: StreamDirection;
  format: 'qlan' | 'aes67';
  address: string;
  port: number;
  channels: number[];
  /** Anything else the engine reports (ssrc, packets, errors). */
  [extra: string]: unknown;
}

/**
 * The audio engine's side. `open` resolves with the stream's description or rejects with an
 * Error (a `code` property is passed to the Core in error.data).
 */
export interface StreamApi {
  open(request: StreamOpenRequest): Promise<StreamInfo>;
  close(streamId: string): Promise<void>;
  list(): StreamInfo[];
}

export type SerialParity = 'none' | 'even' | 'odd' | 'mark' | 'space';

export interface SerialSettings {
  baudRate: number;
  dataBits: 5 | 6 | 7 | 8;
  parity: SerialParity;
  stopBits: 1 | 1.5 | 2;
}

export interface SerialPortInfo extends SerialSettings {
  name: string;
  path: string;
  open: boolean;
}

export type SerialEvent =
  | { kind: 'data'; name: string; data: Buffer }
  | { kind: 'error'; name: string; code: string; message: string }
  | { kind: 'closed'; name: string; reason: string };

/**
 * The serial bridge (firmware/io/serial-bridge.ts). Errors carry `code`:
 * SERIAL_ERR_UNKNOWN_PORT, SERIAL_ERR_BAD_SETTINGS, SERIAL_ERR_NOT_OPEN, SERIAL_ERR_IO.
 */
export interface SerialApi {
  list(): SerialPortInfo[];
  open(name: string, settings?: Partial<SerialSettings>): Promise<SerialPortInfo>;
  configure(name: string, settings: Partial<SerialSettings>): Promise<SerialPortInfo>;
  write(name: string, data: Buffer): Promise<void>;
  close(name: string): Promise<void>;
  onEvent(listener: (event: SerialEvent) => void): () => void;
}

/** What the updater reports; pushed to every session as `Firmware.Event`. */
export interface FirmwareEvent {
  State: string;
  Version?: string;
  Progress?: number;
  Message?: string;
}

/** An in-memory StreamApi for tests and benches: records requests, refuses bad ports. */
export class FakeStreamApi implements StreamApi {
  readonly opened: StreamOpenRequest[] = [];
  readonly closed: string[] = [];
  private readonly streams = new Map<string, StreamInfo>();
  private next = 1;

  open(request: StreamOpenRequest): Promise<StreamInfo> {
    if (request.port % 2 === 1) {
      return Promise.reject(
        Object.assign(new Error('RTP port must be even'), { code: 'AUDIO_ERR_BAD_PORT' }),
      );
    }
    this.opened.push(request);
    const info: StreamInfo = {
      streamId: `s${this.next++}`,
      direction: request.direction,
      format: request.format,
      address: request.address,
      port: request.port,
      channels: [...request.channels],
    };
    this.streams.set(info.streamId, info);
    return Promise.resolve(info);
  }

  close(streamId: string): Promise<void> {
    if (!this.streams.delete(streamId)) {
      return Promise.reject(
        Object.assign(new Error(`no stream ${streamId}`), { code: 'AUDIO_ERR_UNKNOWN_STREAM' }),
      );
    }
    this.closed.push(streamId);
    return Promise.resolve();
  }

  list(): StreamInfo[] {
    return [...this.streams.values()];
  }
}

/**
 * The serial bridge: the board's configured ports, offered to the control link (SerialApi).
 * Ports open on request (Serial.Open) with the board's default baud rate, 8N1 unless told
 * otherwise; bytes from the port become `data` events (the link sends them base64 in
 * `Serial.Data` notifications); errors become `error` events; a port that goes away becomes a
 * `closed` event. Names match ignoring case.
 */
import type { SerialPortConfig } from '../config/board-types.js';
import type { SerialApi, SerialEvent, SerialPortInfo, SerialSettings } from '../control/apis.js';
import type { Logger } from '../log/logger.js';
import { checkSettings, SerialError, type SerialBinding, type SerialPortHandle } from './serial-binding.js';

interface PortState {
  config: Readonly<SerialPortConfig>;
  settings: SerialSettings;
  handle: SerialPortHandle | null;
  opening: Promise<SerialPortInfo> | null;
  writeChain: Promise<void>;
}

export interface SerialBridgeOptions {
  ports: readonly Readonly<SerialPortConfig>[];
  binding: SerialBinding;
  logger: Logger;
  /** Map a configured path to a device path (virtual boards: 'virtual:<name>'). */
  resolvePath?: (path: string) => string;
}

export class SerialBridge implements SerialApi {
  private readonly ports = new Map<string, PortState>();
  private readonly listeners = new Set<(e: SerialEvent) => void>();
  private readonly log: Logger;
  readonly counters = { bytesIn: 0, bytesOut: 0, errors: 0 };

  constructor(private readonly o: SerialBridgeOptions) {
    this.log = o.logger.child({ module: 'serial' });
    for (const config of o.ports) {
      this.ports.set(config.name.toLowerCase(), {
        config,
        settings: { baudRate: config.defaultBaudRate, dataBits: 8, parity: 'none', stopBits: 1 },
        handle: null,
        opening: null,
        writeChain: Promise.resolve(),
      });
    }
  }

  list(): SerialPortInfo[] {
    return [...this.ports.values()].map((p) => this.info(p));
  }

  async open(name: string, settings: Partial<SerialSettings> = {}): Promise<SerialPortInfo> {
    const p = this.port(name);
    const next = checkSettings({ ...p.settings, ...settings });
    if (p.opening) await p.opening.catch(() => undefined);
    if (p.handle) return this.configure(name, settings);
    const path = this.o.resolvePath ? this.o.resolvePath(p.config.path) : p.config.path;
    p.opening = (async () => {
      const handle = await this.o.binding.open(path, next);
      p.settings = next;
      p.handle = handle;
      handle.onData((d) => {
        this.counters.bytesIn += d.length;
        this.emit({ kind: 'data', name: p.config.name, data: d });
      });
      handle.onError((e) => {
        this.counters.errors++;
        this.log.warn('serial_error', { port: p.config.name, err: e });
        this.emit({ kind: 'error', name: p.config.name, code: 'SERIAL_ERR_IO', message: e.message });
      });
      handle.onClose((reason) => {
        if (p.handle !== handle) return;
        p.handle = null;
        this.log.info('serial_closed', { port: p.config.name, reason });
        this.emit({ kind: 'closed', name: p.config.name, reason });
      });
      this.log.info('serial_opened', { port: p.config.name, path, ...next });
      return this.info(p);
    })();
    try {
      return await p.opening;
    } finally {
      p.opening = null;
    }
  }

  async configure(name: string, settings: Partial<SerialSettings>): Promise<SerialPortInfo> {
    const p = this.port(name);
    const next = checkSettings({ ...p.settings, ...settings });
    if (p.handle) await p.handle.update(next);
    p.settings = next;
    return this.info(p);
  }

  write(name: string, data: Buffer): Promise<void> {
    const p = this.port(name);
    const handle = p.handle;
    if (!handle)
      return Promise.reject(
        new SerialError('SERIAL_ERR_NOT_OPEN', `serial port ${p.config.name} is not open`),
      );
    const result = p.writeChain.then(() => handle.write(data));
    p.writeChain = result.catch(() => undefined);
    return result.then(() => {
      this.counters.bytesOut += data.length;
    });
  }

  async close(name: string): Promise<void> {
    const p = this.port(name);
    const h = p.handle;
    if (!h) return;
    p.handle = null;
    await h.close();
    this.emit({ kind: 'closed', name: p.config.name, reason: 'closed' });
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.ports.values()].map((p) => this.close(p.config.name).catch(() => undefined)));
  }

  onEvent(listener: (event: SerialEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: SerialEvent): void {
    for (const l of this.listeners) l(e);
  }

  private port(name: string): PortState {
    const p = typeof name === 'string' ? this.ports.get(name.toLowerCase()) : undefined;
    if (!p) throw new SerialError('SERIAL_ERR_UNKNOWN_PORT', `no serial port named ${JSON.stringify(name)}`);
    return p;
  }

  private info(p: PortState): SerialPortInfo {
    return { name: p.config.name, path: p.config.path, open: p.handle !== null, ...p.settings };
  }
}

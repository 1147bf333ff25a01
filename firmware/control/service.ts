/**
 * The control-link shell: a TCP server (default port 1700) speaking NUL-framed JSON-RPC 2.0,
 * plaintext or TLS 1.3 with mutual authentication on the same port (the first byte tells:
 * 0x16 starts a TLS handshake). It enforces Core trust (trust.ts), one owning Core, a client
 * limit and an idle timeout, and serves the methods in methods.ts against the named-controls
 * registry.
 *
 * Connection rules for bad input (docs/control-link.md): a frame that is not JSON, not UTF-8,
 * empty, or not a valid request gets a JSON-RPC error and the connection goes on; a frame longer
 * than `maxMessageBytes` gets error 32 and the connection is closed. Nothing a client sends can
 * throw out of a socket handler.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { BoardConfig } from '../config/board-types.js';
import type { StateStore } from '../config/state-store.js';
import type { Logger } from '../log/logger.js';
import type { FirmwareEvent, SerialApi, SerialEvent, StreamApi } from './apis.js';
import { ChangeGroup } from './change-groups.js';
import { encodeFrame, FrameDecoder, CONTROL_MAX_MESSAGE_BYTES } from './frame-codec.js';
import { parseRpc, rpcError, rpcNotification, rpcResult, RpcError, RPC_ERR, type RpcId } from './jsonrpc.js';
import { METHODS, type MethodContext } from './methods.js';
import { ControlRegistry, type ControlHandle } from './registry.js';
import { decideConnection, recordPending, secureMode, trustCore, type Transport } from './trust.js';

export const CONTROL_PORT = 1700;

export interface ControlHooks {
  /** After Design.Assign / Design.Release changed state.design (main calls qdp.announceNow()). */
  onDesignChanged?: (design: Readonly<import('../config/state-store.js').DesignInfo> | null) => void;
  /** Peripheral.Identify: blink for `seconds` (0 = stop). */
  onIdentify?: (seconds: number) => void;
  /** Firmware.Status: what the updater reports now. */
  firmwareStatus?: () => unknown;
  /** After the trust lists changed because of the link (auto-trust, pending recorded). */
  onTrustChanged?: () => void;
  /** Clock.Status: the media clock's state (PTP lock, offset, grandmaster). */
  clockStatus?: () => unknown;
  /**
   * The owning Core came (Design.Assign, or the owner reconnected) or went (its connection
   * closed). main.ts mutes the outputs of a design-assigned peripheral while no Core is present.
   */
  onCorePresence?: (event: CorePresenceEvent) => void;
}

/** `core-connected` / `core-lost` as a fact about the owning Core's connection. */
export interface CorePresenceEvent {
  event: 'core-connected' | 'core-lost';
  core: string | null;
  cause: string;
}

export interface ControlServiceOptions {
  board: Readonly<BoardConfig>;
  state: StateStore;
  logger: Logger;
  clock: ClockSource;
  /** Listening port (production 1700; 0 = any free port). */
  port?: number;
  host?: string;
  /** The device's TLS key and certificate (PEM). Without it only plaintext is served. */
  identity?: () => { key: string; cert: string };
  registry?: ControlRegistry;
  stream?: StreamApi | null;
  serial?: SerialApi | null;
  hooks?: ControlHooks;
  /** Device name for Status.Get. */
  deviceName?: () => string;
  firmwareVersion?: string;
  maxClients?: number;
  idleTimeoutMs?: number;
  maxMessageBytes?: number;
  /** How long an owner that disconnected keeps the peripheral before another Core may claim it. */
  ownerGraceMs?: number;
  /** Change groups per connection. */
  maxChangeGroups?: number;
  /** Output bytes queued for one client before it is dropped as too slow. */
  maxQueuedBytes?: number;
}

export interface ControlCounters {
  accepted: number;
  refused: Record<string, number>;
  requests: number;
  errors: Record<string, number>;
  notificationsSent: number;
  closedIdle: number;
  closedSlow: number;
}

export interface Owner {
  key: string;
  coreName: string;
  sessionId: number | null;
  lostAtMs: number | null;
}

export class Session {
  readonly id: number;
  readonly transport: Transport;
  readonly key: string;
  readonly fingerprint: string | null;
  readonly remote: string;
  trusted: boolean;
  readonly groups = new Map<string, { group: ChangeGroup; timer: TimerHandle | null; anchorMs: number }>();
  readonly serialPorts = new Set<string>();
  readonly streams = new Set<string>();
  closed = false;
  idleTimer: TimerHandle | null = null;
  readonly decoder: FrameDecoder;
  constructor(
    id: number,
    readonly socket: net.Socket,
    info: { transport: Transport; fingerprint: string | null; trusted: boolean; maxMessageBytes: number },
  ) {
    this.id = id;
    this.transport = info.transport;
    this.fingerprint = info.fingerprint;
    this.trusted = info.trusted;
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.key = info.fingerprint ? `cert:${info.fingerprint}` : `plain:${socket.remoteAddress ?? '?'}`;
    this.decoder = new FrameDecoder({ maxMessageBytes: info.maxMessageBytes });
  }
}

const REFUSAL_TEXT: Record<string, string> = {
  declined: 'This Core is declined by the peripheral',
  pending: 'This Core is not trusted yet (pending approval on the peripheral)',
  'plaintext-in-secure-mode': 'Secure communication is on: use TLS with a trusted Core certificate',
  'no-certificate': 'A client certificate is required',
  'too-many-clients': 'Too many control connections',
  'no-tls': 'TLS is not available on this peripheral',
};

export class ControlService {
  readonly registry: ControlRegistry;
  readonly counters: ControlCounters = {
    accepted: 0,
    refused: {},
    requests: 0,
    errors: {},
    notificationsSent: 0,
    closedIdle: 0,
    closedSlow: 0,
  };
  owner: Owner | null = null;

  private readonly o: Required<
    Omit<ControlServiceOptions, 'identity' | 'registry' | 'stream' | 'serial' | 'hooks' | 'deviceName'>
  > &
    Pick<ControlServiceOptions, 'identity' | 'deviceName'>;
  private readonly log: Logger;
  readonly hooks: ControlHooks;
  readonly stream: StreamApi | null;
  readonly serial: SerialApi | null;
  private server: net.Server | null = null;
  private tlsServer: tls.Server | null = null;
  readonly sessions = new Map<number, Session>();
  private readonly sockets = new Set<net.Socket>();
  private nextId = 1;
  private unidentified = 0;
  private readonly startedAtMs: number;
  private readonly statusControls: ControlHandle[] = [];
  private unsubSerial: (() => void) | null = null;
  private pendingWrites: Promise<unknown> = Promise.resolve();
  private corePresent = false;

  constructor(options: ControlServiceOptions) {
    this.o = {
      port: CONTROL_PORT,
      host: '0.0.0.0',
      maxClients: 16,
      idleTimeoutMs: 60_000,
      maxMessageBytes: CONTROL_MAX_MESSAGE_BYTES,
      ownerGraceMs: 60_000,
      maxChangeGroups: 64,
      maxQueuedBytes: 8 * 1024 * 1024,
      firmwareVersion: '0.0.0',
      ...options,
    };
    this.log = options.logger.child({ module: 'control' });
    this.registry = options.registry ?? new ControlRegistry({ clock: options.clock });
    this.hooks = options.hooks ?? {};
    this.stream = options.stream ?? null;
    this.serial = options.serial ?? null;
    this.startedAtMs = options.clock.monotonicMs();
  }

  get options(): Readonly<typeof this.o> {
    return this.o;
  }

  /** Take a new device certificate (installed or renewed) for connections from now on. */
  reloadIdentity(): void {
    if (!this.tlsServer || !this.o.identity) return;
    const id = this.o.identity();
    this.tlsServer.setSecureContext({
      key: id.key,
      cert: id.cert,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
    });
    this.log.info('identity_reloaded', {});
  }

  /** Listen; resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.server) return this.address()!;
    this.registerStatusControls();
    if (this.o.identity) {
      const id = this.o.identity();
      this.tlsServer = tls.createServer({
        key: id.key,
        cert: id.cert,
        minVersion: 'TLSv1.3',
        maxVersion: 'TLSv1.3',
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: 10_000,
      });
      this.tlsServer.on('secureConnection', (s) => this.guard(() => this.onSecure(s)));
      this.tlsServer.on('tlsClientError', (err, s) => {
        this.count(this.counters.refused, 'tls-handshake');
        this.log.debug('tls_handshake_failed', { err });
        s.destroy();
      });
    }
    if (this.serial) this.unsubSerial = this.serial.onEvent((ev) => this.guard(() => this.onSerialEvent(ev)));
    const server = net.createServer((socket) => this.guard(() => this.onConnection(socket)));
    server.on('error', (err) => this.log.error('server_error', { err }));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.port, this.o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = this.address()!;
    this.log.info('control_listening', { ...addr, tls: this.tlsServer !== null, secure: this.secure() });
    return addr;
  }

  address(): { host: string; port: number } | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    for (const s of [...this.sessions.values()]) this.closeSession(s, 'service stopping');
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.unsubSerial?.();
    this.unsubSerial = null;
    this.registry.stop();
    for (const h of this.statusControls) h.unregister();
    this.statusControls.length = 0;
    await new Promise<void>((r) => server.close(() => r()));
    await this.pendingWrites.catch(() => undefined);
    this.log.info('control_stopped', {});
  }

  secure(): boolean {
    return secureMode(this.o.state.get());
  }

  /** Is the owning Core connected right now? */
  coreConnected(): boolean {
    return this.owner !== null && this.owner.sessionId !== null;
  }

  /** Fire `onCorePresence` when the owner's presence changed (called where ownership moves). */
  notePresence(cause: string): void {
    const now = this.coreConnected();
    if (now === this.corePresent) return;
    this.corePresent = now;
    const event: CorePresenceEvent = {
      event: now ? 'core-connected' : 'core-lost',
      core: this.owner?.coreName ?? null,
      cause,
    };
    this.log.info(now ? 'core_connected' : 'core_lost', { core: event.core, cause });
    try {
      this.hooks.onCorePresence?.(event);
    } catch (err) {
      this.log.error('core_presence_hook_failed', { err });
    }
  }

  /** Push a firmware event to every connection as `Firmware.Event`. */
  notifyFirmware(event: FirmwareEvent): void {
    for (const s of this.sessions.values()) this.notify(s, 'Firmware.Event', event);
  }

  /**
   * Re-check every connection against the trust lists (call after an admin changed them):
   * sessions that would now be refused are closed.
   */
  applyTrust(): void {
    const state = this.o.state.get();
    for (const s of [...this.sessions.values()]) {
      const v = decideConnection(state, s.transport, s.fingerprint);
      if (!v.allow) {
        this.refuse(s.socket, v.reason);
        this.closeSession(s, `trust changed: ${v.reason}`, false);
      } else {
        s.trusted = v.trusted;
      }
    }
    this.updateStatus();
  }

  health(): { ok: boolean; reason?: string } {
    return this.server !== null ? { ok: true } : { ok: false, reason: 'control link not listening' };
  }

  // ---------------------------------------------------------------------------------------------
  // Connections

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.count(this.counters.errors, 'internal');
      this.log.error('control_internal_error', { err });
    }
  }

  private onConnection(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', (err) => this.log.debug('socket_error', { err }));
    socket.setNoDelay(true);
    // Connections not yet identified (no first byte, TLS handshake running) are capped too, so
    // silent peers cannot hold descriptors beyond the limit.
    if (this.sessions.size >= this.o.maxClients || this.unidentified >= this.o.maxClients) {
      this.refuse(socket, 'too-many-clients');
      return;
    }
    this.unidentified++;
    let identified = false;
    const identify = (): void => {
      if (identified) return;
      identified = true;
      this.unidentified--;
    };
    socket.once('close', identify);
    // Until the first byte arrives the idle timer covers the connection.
    const timer = this.o.clock.setTimeout(() => socket.destroy(), this.o.idleTimeoutMs);
    socket.once('data', (first: Buffer) =>
      this.guard(() => {
        this.o.clock.clearTimeout(timer);
        if (first[0] === 0x16) {
          if (!this.tlsServer) {
            this.count(this.counters.refused, 'no-tls');
            socket.destroy();
            return;
          }
          // From here the TLS handshake timeout (10 s) bounds the connection.
          identify();
          socket.pause();
          socket.unshift(first);
          this.tlsServer.emit('connection', socket);
          return;
        }
        const v = decideConnection(this.o.state.get(), 'plain', null);
        if (!v.allow) {
          this.refuse(socket, v.reason);
          return;
        }
        identify();
        const session = this.openSession(socket, 'plain', null, false);
        this.onData(session, first);
      }),
    );
    socket.once('close', () => this.o.clock.clearTimeout(timer));
  }

  private onSecure(socket: tls.TLSSocket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', (err) => this.log.debug('socket_error', { err }));
    const cert = socket.getPeerX509Certificate();
    const fingerprint = cert?.fingerprint256 ?? null;
    const state = this.o.state.get();
    const v = decideConnection(state, 'tls', fingerprint);
    if (v.recordPending && fingerprint) {
      const name = (cert?.subject.match(/CN=([^\n,]+)/)?.[1] ?? 'core').slice(0, 64);
      const saved = this.persist(
        () => recordPending(this.o.state, { name, fingerprint256: fingerprint }, this.nowIso()),
        true,
      );
      if (!v.allow) {
        // Refuse once the record is saved, so the Core's refusal and the admin's list agree.
        const reason = v.reason;
        void saved.catch(() => undefined).then(() => this.refuse(socket, reason));
        return;
      }
    }
    if (!v.allow) {
      this.refuse(socket, v.reason);
      return;
    }
    if (this.sessions.size >= this.o.maxClients) {
      this.refuse(socket, 'too-many-clients');
      return;
    }
    this.openSession(socket, 'tls', fingerprint, v.trusted);
  }

  private refuse(socket: net.Socket, reason: string): void {
    this.count(this.counters.refused, reason);
    this.log.info('control_refused', { reason, remote: socket.remoteAddress });
    if (!socket.destroyed && socket.writable) {
      socket.end(
        encodeFrame(rpcError(null, RPC_ERR.REFUSED, REFUSAL_TEXT[reason] ?? reason, { Reason: reason })),
      );
    }
    const t = this.o.clock.setTimeout(() => socket.destroy(), 2000);
    socket.once('close', () => this.o.clock.clearTimeout(t));
  }

  private openSession(
    socket: net.Socket,
    transport: Transport,
    fingerprint: string | null,
    trusted: boolean,
  ): Session {
    const s = new Session(this.nextId++, socket, {
      transport,
      fingerprint,
      trusted,
      maxMessageBytes: this.o.maxMessageBytes,
    });
    this.sessions.set(s.id, s);
    this.counters.accepted++;
    this.log.info('control_connected', { session: s.id, transport, remote: s.remote, fingerprint, trusted });
    socket.on('data', (chunk: Buffer) => this.guard(() => this.onData(s, chunk)));
    socket.on('close', () => this.guard(() => this.closeSession(s, 'peer closed')));
    socket.resume();
    this.armIdle(s);
    // Owner reconnecting within the grace period gets the peripheral back.
    if (this.owner && this.owner.sessionId === null && this.owner.key === s.key) {
      this.owner.sessionId = s.id;
      this.owner.lostAtMs = null;
      this.notePresence('owner reconnected');
    }
    this.updateStatus();
    return s;
  }

  closeSession(s: Session, reason: string, destroy = true): void {
    if (s.closed) return;
    s.closed = true;
    this.sessions.delete(s.id);
    if (s.idleTimer) this.o.clock.clearTimeout(s.idleTimer);
    for (const g of s.groups.values()) if (g.timer) this.o.clock.clearTimeout(g.timer);
    s.groups.clear();
    if (this.serial) for (const name of s.serialPorts) void this.serial.close(name).catch(() => undefined);
    if (this.stream) for (const id of s.streams) void this.stream.close(id).catch(() => undefined);
    if (this.owner?.sessionId === s.id) {
      this.owner.sessionId = null;
      this.owner.lostAtMs = this.o.clock.monotonicMs();
      this.notePresence(`owner connection closed: ${reason}`);
    }
    if (destroy) {
      if (reason === 'peer closed') {
        s.socket.destroy();
      } else {
        // Let queued replies go out, but do not wait on a peer that never closes its side.
        s.socket.end();
        const t = this.o.clock.setTimeout(() => s.socket.destroy(), 2000);
        s.socket.once('close', () => this.o.clock.clearTimeout(t));
      }
    }
    this.log.info('control_disconnected', { session: s.id, reason });
    this.updateStatus();
  }

  private armIdle(s: Session): void {
    if (s.idleTimer) this.o.clock.clearTimeout(s.idleTimer);
    s.idleTimer = this.o.clock.setTimeout(() => {
      s.idleTimer = null;
      this.counters.closedIdle++;
      this.notify(s, 'Connection.Closing', { Reason: 'idle' });
      this.closeSession(s, 'idle timeout');
    }, this.o.idleTimeoutMs);
  }

  private onData(s: Session, chunk: Buffer): void {
    if (s.closed) return;
    this.armIdle(s);
    for (const ev of s.decoder.push(chunk)) {
      if (s.closed) return;
      if (ev.kind === 'error') {
        const e = ev.error;
        this.count(this.counters.errors, e.code);
        this.log.debug('control_bad_frame', { session: s.id, code: e.code, offset: e.offset });
        if (e.code === 'CONTROL_ERR_TOO_LARGE') {
          this.send(s, rpcError(null, RPC_ERR.TOO_LARGE, e.message, { Code: e.code, Offset: e.offset }));
          this.closeSession(s, 'oversize frame');
          return;
        }
        this.send(s, rpcError(null, RPC_ERR.BAD_FRAME, e.message, { Code: e.code, Offset: e.offset }));
        continue;
      }
      this.onFrame(s, ev.text);
    }
  }

  private onFrame(s: Session, text: string): void {
    const msg = parseRpc(text);
    if (msg.kind === 'invalid') {
      this.count(this.counters.errors, String(msg.code));
      this.send(s, rpcError(msg.id, msg.code, msg.message));
      return;
    }
    if (msg.kind === 'response') return; // we send no requests; ignore stray replies
    this.counters.requests++;
    const id: RpcId | null = msg.kind === 'request' ? msg.id : null;
    const method = Object.hasOwn(METHODS, msg.method) ? METHODS[msg.method] : undefined;
    if (!method) {
      this.count(this.counters.errors, String(RPC_ERR.METHOD_NOT_FOUND));
      if (id !== null)
        this.send(s, rpcError(id, RPC_ERR.METHOD_NOT_FOUND, `Method not found: ${msg.method}`));
      return;
    }
    const reply = (result: unknown): void => {
      if (id !== null) this.send(s, rpcResult(id, result));
    };
    const fail = (err: unknown): void => {
      const { code, message, data } = toRpcError(err);
      this.count(this.counters.errors, String(code));
      if (code === RPC_ERR.INTERNAL) this.log.warn('control_method_failed', { method: msg.method, err });
      if (id !== null) this.send(s, rpcError(id, code, message, data));
    };
    try {
      if (method.write && !this.canWrite(s)) {
        throw new RpcError(RPC_ERR.NOT_OWNER, `Another Core (${this.owner!.coreName}) owns this peripheral`);
      }
      const out = method.run(this.context(s), msg.params);
      if (out instanceof Promise) out.then(reply, fail);
      else reply(out);
    } catch (err) {
      fail(err);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Used by the method handlers

  canWrite(s: Session): boolean {
    const o = this.owner;
    if (!o) return true;
    if (o.key === s.key) return true;
    if (
      o.sessionId === null &&
      o.lostAtMs !== null &&
      this.o.clock.monotonicMs() - o.lostAtMs >= this.o.ownerGraceMs
    ) {
      this.owner = null;
      return true;
    }
    return false;
  }

  private context(s: Session): MethodContext {
    return { service: this, session: s, state: this.o.state, clock: this.o.clock, board: this.o.board };
  }

  send(s: Session, message: unknown): void {
    if (s.closed || s.socket.destroyed) return;
    if (s.socket.writableLength > this.o.maxQueuedBytes) {
      this.counters.closedSlow++;
      this.log.warn('control_client_too_slow', { session: s.id, queued: s.socket.writableLength });
      this.closeSession(s, 'client too slow');
      s.socket.destroy();
      return;
    }
    s.socket.write(encodeFrame(message));
  }

  notify(s: Session, method: string, params: unknown): void {
    this.counters.notificationsSent++;
    this.send(s, rpcNotification(method, params));
  }

  broadcast(method: string, params: unknown): void {
    for (const s of this.sessions.values()) this.notify(s, method, params);
  }

  nowIso(): string {
    return new Date(this.o.clock.wallMs()).toISOString();
  }

  uptimeS(): number {
    return Math.round((this.o.clock.monotonicMs() - this.startedAtMs) / 1000);
  }

  /** Queue a state write; failures are logged, never thrown into a socket handler. */
  persist(fn: () => Promise<unknown>, trustChanged = false): Promise<void> {
    const p = this.pendingWrites.then(fn).then(
      () => {
        if (trustChanged) this.hooks.onTrustChanged?.();
      },
      (err: unknown) => {
        this.log.error('control_state_write_failed', { err });
        throw err;
      },
    );
    this.pendingWrites = p.catch(() => undefined);
    return p;
  }

  /** Design.Assign over TLS while no Core is trusted: trust this one (secure communication on). */
  autoTrust(s: Session, coreName: string): Promise<void> {
    if (s.transport !== 'tls' || !s.fingerprint || this.secure()) return Promise.resolve();
    const fp = s.fingerprint;
    return this.persist(
      () => trustCore(this.o.state, { name: coreName, fingerprint256: fp }, this.nowIso()),
      true,
    ).then(() => {
      s.trusted = true;
      this.log.info('core_trusted', { core: coreName, fingerprint: fp, how: 'first claim over TLS' });
      // Plaintext connections are no longer allowed.
      this.applyTrust();
    });
  }

  startAutoPoll(s: Session, id: string, rateS: number): void {
    const g = s.groups.get(id);
    if (!g) return;
    if (g.timer) this.o.clock.clearTimeout(g.timer);
    const periodMs = rateS * 1000;
    g.group.autoPollMs = periodMs;
    g.anchorMs = this.o.clock.monotonicMs();
    const schedule = (): void => {
      const now = this.o.clock.monotonicMs();
      const k = Math.floor((now - g.anchorMs) / periodMs) + 1;
      g.timer = this.o.clock.setTimeout(tick, g.anchorMs + k * periodMs - now);
    };
    const tick = (): void => {
      g.timer = null;
      if (s.closed || s.groups.get(id) !== g) return;
      this.guard(() => {
        const changes = g.group.poll(this.registry);
        if (changes.length > 0) this.notify(s, 'ChangeGroup.Poll', { Id: id, Changes: changes });
      });
      schedule();
    };
    schedule();
  }

  private onSerialEvent(ev: SerialEvent): void {
    for (const s of this.sessions.values()) {
      if (!s.serialPorts.has(ev.name)) continue;
      if (ev.kind === 'data')
        this.notify(s, 'Serial.Data', { Name: ev.name, Data: ev.data.toString('base64') });
      else if (ev.kind === 'error')
        this.notify(s, 'Serial.Error', { Name: ev.name, Code: ev.code, Message: ev.message });
      else {
        s.serialPorts.delete(ev.name);
        this.notify(s, 'Serial.Closed', { Name: ev.name, Reason: ev.reason });
      }
    }
  }

  private registerStatusControls(): void {
    if (this.statusControls.length > 0) return;
    const reg = (spec: Parameters<ControlRegistry['register']>[0]): void => {
      if (!this.registry.has(spec.name)) this.statusControls.push(this.registry.register(spec));
    };
    reg({
      name: 'status.state',
      type: 'string',
      writable: false,
      description: 'Idle or Active (design assigned)',
    });
    reg({
      name: 'status.owned',
      type: 'boolean',
      writable: false,
      description: 'A Core owns the peripheral',
    });
    reg({ name: 'status.clients', type: 'integer', min: 0, max: 1024, writable: false });
    reg({ name: 'status.secure', type: 'boolean', writable: false, description: 'Secure communication on' });
    this.updateStatus();
  }

  updateStatus(): void {
    const [state, owned, clients, secure] = this.statusControls;
    state?.update(this.o.state.get().design ? 'Active' : 'Idle');
    owned?.update(this.owner !== null);
    clients?.update(this.sessions.size);
    secure?.update(this.secure());
  }

  private count(map: Record<string, number>, key: string): void {
    map[key] = (map[key] ?? 0) + 1;
  }
}

const REGISTRY_CODES: Record<string, number> = {
  CONTROL_ERR_UNKNOWN_CONTROL: RPC_ERR.UNKNOWN_CONTROL,
  CONTROL_ERR_READ_ONLY: RPC_ERR.READ_ONLY_CONTROL,
  CONTROL_ERR_BAD_VALUE: RPC_ERR.INVALID_PARAMS,
  SERIAL_ERR_UNKNOWN_PORT: RPC_ERR.UNKNOWN_SERIAL_PORT,
  SERIAL_ERR_BAD_SETTINGS: RPC_ERR.INVALID_PARAMS,
  SERIAL_ERR_NOT_OPEN: RPC_ERR.SERIAL_FAILED,
  SERIAL_ERR_IO: RPC_ERR.SERIAL_FAILED,
};

function toRpcError(err: unknown): { code: number; message: string; data?: unknown } {
  if (err instanceof RpcError) return { code: err.rpcCode, message: err.message, data: err.data };
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && REGISTRY_CODES[code] !== undefined) {
    return { code: REGISTRY_CODES[code], message: (err as Error).message, data: { Code: code } };
  }
  return { code: RPC_ERR.INTERNAL, message: err instanceof Error ? err.message : String(err) };
}

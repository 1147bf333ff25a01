/**
 * The Peripheral Manager service: the device web app on HTTP (80) and HTTPS (443) with the JSON
 * API under /api/v1, the legacy /cgi-bin endpoints, the static UI and live WebSocket updates.
 * Two fastify instances (one per port) share one context: credentials, sessions, the device
 * identity, the event log and the network configuration. `create()` builds everything without
 * listening (tests use `inject()`); `start()` listens; `stop()` closes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { SecureContextOptions } from 'node:tls';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { BoardConfig } from '../config/board-types.js';
import type { StateStore } from '../config/state-store.js';
import { QperiphError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { resolveLanAddress, systemInterfaceLister, type InterfaceLister } from '../net/interfaces.js';
import { createFsNetBinding } from '../netconfig/binding.js';
import { NetconfigService } from '../netconfig/service.js';
import type { NetworkSettings } from '../netconfig/types.js';
import { packageVersion } from '../paths.js';
import { DeviceIdentity, type IdentityMaterial } from '../pki/identity.js';
import { CredentialStore, LoginLimiter, SessionTable } from './auth.js';
import { createDemoMeters } from './demo-meters.js';
import { EventLog } from './event-log.js';
import { LiveHub } from './live.js';
import { registerRoutes } from './routes.js';

/** While stopping: how often idle kept-alive connections are closed, and when busy ones are cut. */
const STOP_SWEEP_MS = 50;
const STOP_GRACE_MS = 2000;
import { loadUiFiles, type UiFiles } from './static-files.js';

/** The running firmware and its A/B slots (UpdateService.slotStatus()). */
export interface FirmwareSlotStatus {
  /** Package version of the running runtime. */
  version: string;
  /** Slot the running system booted from; null when unknown (no boot selector). */
  bootedSlot: 'a' | 'b' | null;
  /** Slot a normal boot picks. */
  primarySlot: 'a' | 'b' | null;
  /** Update job phase ('idle' when none). */
  phase: string;
  /** Slot on trial (booted once, not yet committed), else null. */
  trialSlot: 'a' | 'b' | null;
}

export interface StatusExtra {
  firmware?: FirmwareSlotStatus;
  ptp: { state: 'locked' | 'unlocked' | 'free-running'; offsetNs: number | null; grandmaster: string | null };
  streams: Array<{ name: string; direction: 'tx' | 'rx'; channels: number; state: string }>;
}

export interface ManagerHooks {
  /** Blink the identify LED: on for `seconds`, or off. */
  identify?: (on: boolean, seconds: number) => void | Promise<void>;
  reboot?: () => void | Promise<void>;
  factoryReset?: () => void | Promise<void>;
  /** A node:http handler for POST /api/v1/firmware/bundle (auth and CSRF already checked). */
  bundleUpload?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Live meter levels in dBFS, one per channel. */
  meters?: () => number[];
  /** Extra status from other services (firmware slots, PTP, streams). */
  status?: () => Partial<StatusExtra>;
  /**
   * The device-side Core API: a node:http handler for every path under /api/v1/core/ on the
   * HTTPS port (firmware/update/core-api.ts). It bypasses the admin session and CSRF checks:
   * it authorizes by the client certificate's pin itself. The HTTP port answers 403.
   */
  coreApi?: (req: IncomingMessage, res: ServerResponse) => void;
}

const CORE_API_PREFIX = '/api/v1/core/';
const isCoreApiPath = (url: string | undefined): boolean =>
  url !== undefined && (url.startsWith(CORE_API_PREFIX) || url.split('?')[0] === '/api/v1/core');

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/**
 * Route /api/v1/core/* to `core` before fastify sees it (the body is streamed by the handler,
 * and no session or CSRF applies). Everything else goes to fastify's own request handler.
 */
function mountCoreApi(
  server: FastifyInstance['server'],
  core: (req: IncomingMessage, res: ServerResponse) => void,
): void {
  const previous = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  if (previous.length !== 1) throw new QperiphError('MANAGER_ERR_OPTIONS', 'unexpected request listeners');
  const app = previous[0]!;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) =>
    isCoreApiPath(req.url) ? core(req, res) : app(req, res),
  );
}

export interface PeripheralManagerOptions {
  httpPort: number;
  httpsPort: number;
  host: string;
  board: Readonly<BoardConfig>;
  state: StateStore;
  stateDir: string;
  logger: Logger;
  clock: ClockSource;
  hooks?: ManagerHooks;
  /** Device name shown and used for the certificate; default: state name or 'qperiph'. */
  name?: string;
  interfaces?: InterfaceLister;
  /** Default: opened from `<stateDir>/pki`. */
  identity?: DeviceIdentity;
  /** Default: files written under `<stateDir>/os-network` (a dry run; main.ts passes the real one). */
  netconfig?: NetconfigService;
  /** TLS 1.3 suites; default ['TLS_AES_128_GCM_SHA256']. */
  tlsCiphers?: string[];
  /** Live update period (default 100 ms = 10 Hz). */
  liveIntervalMs?: number;
  /** Where the UI files are; default <project root>/firmware/peripheral-manager/ui. */
  uiDir?: string;
  version?: string;
  /** Whole-request body limit in bytes (default 256 KiB). */
  bodyLimit?: number;
  /**
   * Listening sockets passed by systemd socket activation (fd numbers, see
   * systemd/listen-fds.ts); a server with a socket here does not bind its port.
   */
  listenFds?: { http?: number; https?: number };
}

/** Everything the routes share. */
export interface ManagerContext {
  readonly o: Readonly<PeripheralManagerOptions>;
  readonly log: Logger;
  readonly credentials: CredentialStore;
  readonly sessions: SessionTable;
  readonly limiter: LoginLimiter;
  readonly identity: DeviceIdentity;
  readonly events: EventLog;
  readonly netconfig: NetconfigService;
  readonly ui: UiFiles;
  readonly meters: () => number[];
  readonly startedWallMs: number;
  readonly startedMonoMs: number;
  identifyUntilMs: number | null;
  identifyTimer: TimerHandle | null;
  deviceName(): string;
  addresses(): string[];
  status(): Record<string, unknown>;
  setIdentify(on: boolean, seconds: number): Promise<void>;
}

/** Check the options once and freeze a copy (MANAGER_ERR_OPTIONS names every problem). */
function checkOptions(o: PeripheralManagerOptions): Readonly<PeripheralManagerOptions> {
  const problems: string[] = [];
  const port = (k: 'httpPort' | 'httpsPort') => {
    if (!Number.isInteger(o[k]) || o[k] < 0 || o[k] > 65535)
      problems.push(`${k} must be an integer 0..65535`);
  };
  port('httpPort');
  port('httpsPort');
  if (o.httpPort !== 0 && o.httpPort === o.httpsPort) problems.push('httpPort and httpsPort must differ');
  if (typeof o.host !== 'string' || o.host === '') problems.push('host must be an address');
  const live = o.liveIntervalMs ?? 100;
  if (!(live >= 20 && live <= 100))
    problems.push('liveIntervalMs must be 20..100 (at least 10 updates per second)');
  const ciphers = o.tlsCiphers ?? ['TLS_AES_128_GCM_SHA256'];
  const known = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];
  if (ciphers.length === 0 || ciphers.some((c) => !known.includes(c))) {
    problems.push(`tlsCiphers must be a non-empty list of TLS 1.3 suites (${known.join(', ')})`);
  }
  if (
    o.bodyLimit !== undefined &&
    !(Number.isInteger(o.bodyLimit) && o.bodyLimit >= 1024 && o.bodyLimit <= 16 * 1024 * 1024)
  ) {
    problems.push('bodyLimit must be 1 KiB..16 MiB');
  }
  for (const [k, fd] of Object.entries(o.listenFds ?? {})) {
    if (fd !== undefined && !(Number.isInteger(fd) && fd >= 3))
      problems.push(`listenFds.${k} must be an fd >= 3`);
  }
  if (problems.length > 0)
    throw new QperiphError(
      'MANAGER_ERR_OPTIONS',
      `Invalid Peripheral Manager options: ${problems.join('; ')}`,
    );
  return Object.freeze({ ...o, hooks: Object.freeze({ ...(o.hooks ?? {}) }) });
}

export class PeripheralManager {
  readonly http: FastifyInstance;
  readonly https: FastifyInstance;
  readonly ctx: ManagerContext;
  private readonly live: LiveHub;
  private unsubscribe: (() => void) | null = null;
  private offNet: (() => void) | null = null;
  private listening = false;

  private constructor(ctx: ManagerContext, http: FastifyInstance, https: FastifyInstance, live: LiveHub) {
    this.ctx = ctx;
    this.http = http;
    this.https = https;
    this.live = live;
  }

  static async create(options: PeripheralManagerOptions): Promise<PeripheralManager> {
    const o = checkOptions(options);
    const log = o.logger.child({ module: 'manager' });
    const interfaces = o.interfaces ?? systemInterfaceLister;
    const name = (): string => o.name ?? o.state.get().name ?? o.board.hostnamePrefix;
    const addresses = (): string[] => {
      const out: string[] = [];
      for (const lan of [o.board.network.lanA, o.board.network.lanB]) {
        if (!lan) continue;
        const a = resolveLanAddress(lan, interfaces);
        if (a && !out.includes(a.address)) out.push(a.address);
      }
      if (o.host !== '0.0.0.0' && o.host !== '::' && !out.includes(o.host)) out.push(o.host);
      return out;
    };
    const identity =
      o.identity ??
      (await DeviceIdentity.open({
        dir: join(o.stateDir, 'pki'),
        hostname: name(),
        addresses: addresses(),
        clock: o.clock,
        logger: o.logger,
      }));
    const credentials = await CredentialStore.open(o.stateDir, o.clock);
    const events = await EventLog.open(o.stateDir, o.clock);
    const defaults: NetworkSettings = {
      hostname: name(),
      dns: [],
      lanA: { mode: 'dhcp' },
      lanB: o.board.network.lanB ? { mode: 'dhcp' } : null,
    };
    const netconfig =
      o.netconfig ??
      (await NetconfigService.open({
        binding: createFsNetBinding(),
        clock: o.clock,
        logger: o.logger,
        stateDir: o.stateDir,
        root: join(o.stateDir, 'os-network'),
        backend: 'ifupdown',
        interfaces: { lanA: o.board.network.lanA.interface, lanB: o.board.network.lanB?.interface ?? null },
        defaults,
      }));
    const offNet = netconfig.onEvent(
      (event, detail) => void events.add(event === 'netconfig_reverted' ? 'warn' : 'info', event, detail),
    );
    const ui = await loadUiFiles(o.uiDir);
    const channels = Math.max(o.board.audio.capture?.channels ?? 0, o.board.audio.playback?.channels ?? 0, 2);
    const meters =
      o.hooks?.meters ?? (o.board.isVirtual ? createDemoMeters(channels, () => o.clock.wallMs()) : () => []);
    const version = o.version ?? packageVersion();

    const ctx: ManagerContext = {
      o,
      log,
      credentials,
      sessions: new SessionTable(o.clock),
      limiter: new LoginLimiter(o.clock),
      identity,
      events,
      netconfig,
      ui,
      meters,
      startedWallMs: o.clock.wallMs(),
      startedMonoMs: o.clock.monotonicMs(),
      identifyUntilMs: null,
      identifyTimer: null,
      deviceName: name,
      addresses,
      status() {
        const s = o.state.get();
        const extra = o.hooks?.status?.() ?? {};
        const lan = (cfg: BoardConfig['network']['lanA'] | null) => {
          if (!cfg) return null;
          const a = resolveLanAddress(cfg, interfaces);
          return {
            interface: cfg.interface,
            mac: a?.mac ?? null,
            address: a?.address ?? null,
            netmask: a?.netmask ?? null,
          };
        };
        return {
          name: name(),
          model: o.board.model,
          partNumber: o.board.partNumber,
          platform: o.board.platform,
          isVirtual: o.board.isVirtual,
          firmware: extra.firmware ?? {
            version,
            bootedSlot: null,
            primarySlot: null,
            phase: 'idle',
            trialSlot: null,
          },
          network: { lanA: lan(o.board.network.lanA), lanB: lan(o.board.network.lanB) },
          uptimeS: Math.floor((o.clock.monotonicMs() - ctx.startedMonoMs) / 1000),
          ptp: extra.ptp ?? { state: 'unlocked', offsetNs: null, grandmaster: null },
          streams: extra.streams ?? [],
          identify: ctx.identifyUntilMs !== null,
          secureComm: s.trustedCores.length > 0 ? 'enabled' : 'disabled',
          design: s.design,
        };
      },
      async setIdentify(on, seconds) {
        if (ctx.identifyTimer) o.clock.clearTimeout(ctx.identifyTimer);
        ctx.identifyTimer = null;
        ctx.identifyUntilMs = on ? o.clock.wallMs() + seconds * 1000 : null;
        if (on) {
          ctx.identifyTimer = o.clock.setTimeout(() => {
            ctx.identifyTimer = null;
            ctx.identifyUntilMs = null;
            void Promise.resolve(o.hooks?.identify?.(false, 0)).catch((err) =>
              log.warn('identify_hook_failed', { err }),
            );
          }, seconds * 1000);
        }
        await o.hooks?.identify?.(on, seconds);
        log.info('identify', { on, seconds });
      },
    };

    const ciphers = (o.tlsCiphers ?? ['TLS_AES_128_GCM_SHA256']).join(':');
    const tlsOptions = (
      m: IdentityMaterial,
    ): SecureContextOptions & { minVersion: 'TLSv1.3'; maxVersion: 'TLSv1.3' } => ({
      key: m.key,
      cert: m.cert,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ciphers,
      ecdhCurve: 'X25519:P-256',
    });
    const common = {
      bodyLimit: o.bodyLimit ?? 256 * 1024,
      logger: false,
      trustProxy: false,
      ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array' as const, allErrors: false } },
      return503OnClosing: true,
      connectionTimeout: 30_000,
      requestTimeout: 60_000,
    };
    const http = Fastify({ ...common });
    // The Core API identifies a Core by its client certificate's pin: ask for one, never
    // require it, and do not check its chain (browsers send none; the admin UI is unaffected).
    const https = Fastify({
      ...common,
      https: { ...tlsOptions(identity.identity()), requestCert: true, rejectUnauthorized: false },
    });
    const coreApi = o.hooks?.coreApi;
    mountCoreApi(https.server, (req, res) => {
      if (coreApi) return coreApi(req, res);
      req.resume();
      sendJson(res, 404, { code: 'CORE_ERR_NOT_AVAILABLE', message: 'the Core API is not available' });
    });
    mountCoreApi(http.server, (req, res) => {
      req.resume();
      sendJson(res, 403, { code: 'CORE_ERR_TLS_REQUIRED', message: 'the Core API is HTTPS only' });
    });
    const live = new LiveHub(ctx);
    await registerRoutes(http, ctx, false);
    await registerRoutes(https, ctx, true);
    await http.ready();
    await https.ready();
    live.attach(http.server, false);
    live.attach(https.server, true);
    const mgr = new PeripheralManager(ctx, http, https, live);
    mgr.offNet = offNet;
    mgr.unsubscribe = identity.onChange((m) => {
      (https.server as unknown as { setSecureContext(o: SecureContextOptions): void }).setSecureContext(
        tlsOptions(m),
      );
      log.info('tls_reloaded', { fingerprint256: identity.info().leaf.fingerprint256 });
    });
    return mgr;
  }

  /** Listen on both ports, or on the sockets systemd passed (`listenFds`). */
  async start(): Promise<{ httpPort: number; httpsPort: number }> {
    const { host, httpPort, httpsPort, listenFds } = this.ctx.o;
    // With `fd` node ignores host and port; host is given so fastify does not add 'localhost' binds.
    const on = (port: number, fd: number | undefined): { host: string; port?: number } =>
      fd === undefined ? { host, port } : { host: '0.0.0.0', ...{ fd } };
    await this.http.listen(on(httpPort, listenFds?.http));
    await this.https.listen(on(httpsPort, listenFds?.https));
    this.listening = true;
    const ports = { httpPort: this.port(this.http), httpsPort: this.port(this.https) };
    this.ctx.log.info('manager_listening', {
      host,
      ...ports,
      socketActivated: { http: listenFds?.http !== undefined, https: listenFds?.https !== undefined },
      fingerprint256: this.ctx.identity.info().leaf.fingerprint256,
    });
    void this.ctx.events.add(
      'info',
      'manager_started',
      `Peripheral Manager listening on ${host} (HTTP ${ports.httpPort}, HTTPS ${ports.httpsPort})`,
    );
    return ports;
  }

  private port(app: FastifyInstance): number {
    const a = app.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /** The key + certificate the device presents; other services (control link) use this. */
  identity(): IdentityMaterial {
    return this.ctx.identity.identity();
  }

  get liveClients(): number {
    return this.live.size;
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.offNet?.();
    this.live.close();
    this.ctx.netconfig.stop();
    if (this.ctx.identifyTimer) this.ctx.o.clock.clearTimeout(this.ctx.identifyTimer);
    // close() waits for every open connection. A client polling on a kept-alive connection
    // (a Core watching an update) would hold a rebooting device for as long as it polls:
    // sweep idle connections until the servers are closed, and cut the rest after a grace.
    const servers = [this.http.server, this.https.server];
    const sweep = setInterval(() => {
      for (const s of servers) s.closeIdleConnections();
    }, STOP_SWEEP_MS);
    const force = setTimeout(() => {
      for (const s of servers) s.closeAllConnections();
    }, STOP_GRACE_MS);
    try {
      await Promise.all([this.http.close(), this.https.close()]);
    } finally {
      clearInterval(sweep);
      clearTimeout(force);
    }
    if (this.listening) this.ctx.log.info('manager_stopped', {});
    this.listening = false;
  }
}

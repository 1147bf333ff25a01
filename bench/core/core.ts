/**
 * The emulated Core, composed: QDP as a Core (announce, query, hear peripherals and its peer),
 * the redundancy state machine, one PeripheralLink per design peripheral while active, the
 * inventory, the QRC server on 1710 over CoreQrcBackend, the web dashboard, and firmware
 * rollouts (rollout.ts) with the Core's identity as the client certificate.
 */
import { createFreeRunningClock } from '../../firmware/audio/media-clock.js';
import { LinkAudio } from './link-audio.js';
import { join } from 'node:path';
import { createSystemClock, type ClockSource, type TimerHandle } from '../../firmware/clock/clock.js';
import type { Logger } from '../../firmware/log/logger.js';
import { createNodeDatagramBinding, type DatagramBinding } from '../../firmware/net/datagram-binding.js';
import { PeripheralLink } from './claim.js';
import { openCoreIdentity, PinStore, type CoreIdentity } from './core-identity.js';
import { Dashboard } from './dashboard/server.js';
import type { Design } from './design.js';
import { Inventory } from './inventory.js';
import { PtpGrandmaster } from './ptp-gm.js';
import { QdpCore } from './qdp-core.js';
import { CoreQrcBackend } from './qrc-backend.js';
import { QrcServer } from './qrc/server.js';
import { RedundancyFsm, type RedundancyRole, type RedundancyState } from './redundancy.js';
import { Rollout, type DeviceResult, type RolloutPolicy } from './rollout.js';

export interface CoreOptions {
  design: Readonly<Design>;
  /** The Core's address (loopback on the bench, e.g. 127.0.0.1). */
  address: string;
  stateDir: string;
  /** Key, certificate and pins; a redundant pair shares one (default `<stateDir>/identity`). */
  identityDir?: string;
  /** QDP device name (default `qcore-<role>`). */
  name?: string;
  role?: RedundancyRole;
  /** The other Core of a redundant pair (its address). */
  peer?: string | null;
  /** Mutual TLS on the control link, pinned peripheral certificates. */
  secure?: boolean;
  /** null = no QRC server. Default 1710. */
  qrcPort?: number | null;
  /** null = no dashboard. Default 8090. */
  dashboardPort?: number | null;
  /** First RTP port of the audio peers (each design peripheral with `audioPeer` takes 10). Default 26000. */
  audioBasePort?: number;
  logger: Logger;
  clock?: ClockSource;
  datagrams?: DatagramBinding;
  /** Run ptp4l as the Core's PTP grandmaster on this interface (e.g. `lo`); off by default. */
  ptpInterface?: string | null;
  /** Peer silence before a backup takes over (default 3000 ms). */
  silenceMs?: number;
  qdpPeriodMs?: number;
}

export interface RolloutRequest {
  bundle: string;
  expectVersion: string;
  policy: RolloutPolicy;
  /** Peripheral names (default: every connected design peripheral). */
  targets?: string[];
  timeoutMs?: number;
}

export interface RolloutProgress {
  expectVersion: string;
  state: 'running' | 'done' | 'failed';
  devices: DeviceResult[];
}

export class Core {
  readonly name: string;
  readonly inventory: Inventory;
  readonly links = new Map<string, PeripheralLink>();
  /** The Core's audio peers, by design peripheral name. */
  readonly audio = new Map<string, LinkAudio>();
  readonly backend: CoreQrcBackend;
  readonly fsm: RedundancyFsm;
  readonly qdp: QdpCore;
  qrc: QrcServer | null = null;
  dashboard: Dashboard | null = null;
  rollout: RolloutProgress | null = null;
  ptp: PtpGrandmaster | null = null;
  private readonly log: Logger;
  private readonly clock: ClockSource;
  private tickTimer: TimerHandle | null = null;
  private stopped = false;
  private readonly transitions: Array<{
    from: RedundancyState;
    to: RedundancyState;
    cause: string;
    atMs: number;
  }> = [];

  private constructor(
    private readonly o: CoreOptions,
    readonly identity: CoreIdentity,
    readonly pins: PinStore,
  ) {
    this.clock = o.clock ?? createSystemClock();
    this.name = o.name ?? `qcore-${o.role ?? 'primary'}`;
    this.log = o.logger.child({ module: 'core', core: this.name });
    this.inventory = new Inventory(o.design, this.clock.monotonicMs());
    this.fsm = new RedundancyFsm({
      role: o.role ?? 'primary',
      hasPeer: !!o.peer,
      startMs: this.clock.monotonicMs(),
      ...(o.silenceMs !== undefined ? { silenceMs: o.silenceMs } : {}),
    });
    this.backend = new CoreQrcBackend({
      design: o.design,
      inventory: this.inventory,
      links: () => this.links,
      engine: () => ({ active: this.fsm.state === 'active', redundant: !!o.peer }),
    });
    const mediaClock = createFreeRunningClock();
    o.design.peripherals.forEach((p, i) => {
      const audio = p.audioPeer
        ? new LinkAudio({
            peripheral: p.name,
            plan: p.audioPeer,
            localAddress: o.address,
            basePort: (o.audioBasePort ?? 26000) + 10 * i,
            mediaClock,
            logger: o.logger,
            onUpdate: () => this.dashboard?.changed(),
          })
        : null;
      if (audio) this.audio.set(p.name, audio);
      this.links.set(
        p.name.toLowerCase(),
        new PeripheralLink({
          peripheral: p,
          address: () => p.address ?? this.qdp.peripherals.get(p.name)?.address ?? null,
          localAddress: o.address,
          identity,
          pins,
          secure: o.secure === true,
          design: () => ({
            name: o.design.name,
            code: o.design.code,
            primary: o.role !== 'backup',
            redundant: !!o.peer,
          }),
          coreName: this.name,
          inventory: this.inventory,
          clock: this.clock,
          logger: o.logger,
          onControlChange: (peripheral, control) => this.backend.controlChanged(peripheral, control),
          ...(audio ? { audio } : {}),
        }),
      );
    });
    this.qdp = new QdpCore({
      binding: o.datagrams ?? createNodeDatagramBinding(),
      clock: this.clock,
      logger: o.logger,
      address: o.address,
      ...(o.qdpPeriodMs ? { periodMs: o.qdpPeriodMs } : {}),
      describe: () => ({
        name: this.name,
        designName: o.design.name,
        designCode: o.design.code,
        active: this.fsm.state === 'active',
        redundant: !!o.peer,
        secure: o.secure === true,
        webUrl: this.dashboard?.address() ? `http://${o.address}:${this.dashboard.address()!.port}/` : '',
      }),
      onPeripheral: (ev) => {
        const now = this.clock.monotonicMs();
        if (ev.event === 'peripheral_lost') this.inventory.lost(ev.peripheral.name, now);
        else this.inventory.heard(ev.peripheral, now);
      },
      onCorePacket: (core, active) => {
        if (!o.peer || core.address !== o.peer) return;
        this.onTransition(
          this.fsm.handle({ kind: 'peer', nowMs: this.clock.monotonicMs(), peerActive: active }),
        );
      },
    });
    this.inventory.onChange(() => this.dashboard?.changed());
  }

  static async start(o: CoreOptions): Promise<Core> {
    const name = o.name ?? `qcore-${o.role ?? 'primary'}`;
    const idDir = o.identityDir ?? join(o.stateDir, 'identity');
    const identity = await openCoreIdentity(idDir, name);
    const pins = await PinStore.open(idDir);
    const core = new Core(o, identity, pins);
    await core.startServices();
    return core;
  }

  get state(): RedundancyState {
    return this.fsm.state;
  }

  get history(): ReadonlyArray<{ from: RedundancyState; to: RedundancyState; cause: string; atMs: number }> {
    return this.transitions;
  }

  private async startServices(): Promise<void> {
    const o = this.o;
    this.log.info('core_starting', {
      address: o.address,
      role: o.role ?? 'primary',
      peer: o.peer ?? null,
      secure: o.secure === true,
      design: o.design.code,
      fingerprint: this.identity.fingerprint256,
    });
    if (o.dashboardPort !== null) {
      this.dashboard = new Dashboard({
        host: o.address,
        port: o.dashboardPort ?? 8090,
        logger: o.logger,
        snapshot: () => this.snapshot(),
      });
      await this.dashboard.start();
    }
    if (o.qrcPort !== null) {
      this.qrc = new QrcServer({
        backend: this.backend,
        host: o.address,
        port: o.qrcPort ?? 1710,
        logger: o.logger,
      });
      await this.qrc.start();
    }
    if (o.ptpInterface) {
      this.ptp = new PtpGrandmaster({
        interface: o.ptpInterface,
        dir: join(o.stateDir, 'ptp'),
        logger: o.logger,
      });
      await this.ptp.start();
    }
    await this.qdp.start();
    this.tick();
  }

  private tick(): void {
    if (this.stopped) return;
    this.onTransition(this.fsm.handle({ kind: 'tick', nowMs: this.clock.monotonicMs() }));
    this.tickTimer = this.clock.setTimeout(() => this.tick(), 100);
  }

  private onTransition(t: ReturnType<RedundancyFsm['handle']>): void {
    if (!t) return;
    this.transitions.push(t);
    this.log.info('state', { from: t.from, to: t.to, cause: t.cause });
    if (t.to === 'active') for (const l of this.links.values()) l.start();
    else for (const l of this.links.values()) void l.stop();
    this.qdp.announceNow();
    this.backend.statusChanged();
    this.dashboard?.changed();
  }

  /** Everything the dashboard shows. */
  snapshot(): unknown {
    return {
      core: {
        name: this.name,
        address: this.o.address,
        role: this.o.role ?? 'primary',
        redundant: !!this.o.peer,
        state: this.fsm.state,
        designName: this.o.design.name,
        designCode: this.o.design.code,
        secure: this.o.secure === true,
        fingerprint: this.identity.fingerprint256,
      },
      inventory: this.inventory.list(),
      audio: [...this.audio].map(([name, a]) => ({ peripheral: name, ...a.status() })),
      ptp: this.ptp?.status() ?? null,
      rollout: this.rollout,
    };
  }

  /** Sign-and-push is the signer's job; this pushes a signed bundle to the peripherals. */
  async startRollout(r: RolloutRequest): Promise<DeviceResult[]> {
    const names = r.targets ?? this.o.design.peripherals.map((p) => p.name);
    const targets = names.map((n) => {
      const p = this.o.design.peripherals.find((x) => x.name.toLowerCase() === n.toLowerCase());
      const addr = this.inventory.get(n)?.address;
      if (!p || !addr) throw new Error(`rollout target ${n} is unknown or not heard`);
      return { id: p.name, httpsUrl: `https://${addr}:${p.httpsPort}` };
    });
    const rollout = new Rollout({
      bundle: r.bundle,
      expectVersion: r.expectVersion,
      targets,
      policy: r.policy,
      clientTls: { key: this.identity.key, cert: this.identity.cert },
      journalFile: join(this.o.stateDir, 'rollout-journal.jsonl'),
      timeoutMs: r.timeoutMs ?? 120_000,
      logger: this.o.logger,
    });
    const progress: RolloutProgress = {
      expectVersion: r.expectVersion,
      state: 'running',
      devices: rollout.snapshot,
    };
    this.rollout = progress;
    rollout.on('progress', () => {
      progress.devices = rollout.snapshot;
      this.dashboard?.changed();
    });
    try {
      const out = await rollout.run();
      progress.devices = out;
      progress.state = 'done';
      return out;
    } catch (err) {
      progress.state = 'failed';
      throw err;
    } finally {
      this.dashboard?.changed();
    }
  }

  /** Die abruptly (tests of failover): no goodbye on QDP, links dropped, servers closed. */
  async kill(): Promise<void> {
    this.stopped = true;
    if (this.tickTimer) this.clock.clearTimeout(this.tickTimer);
    for (const l of this.links.values()) l.kill();
    await Promise.allSettled([this.qdp.stop(), this.qrc?.stop(), this.dashboard?.stop(), this.ptp?.close()]);
    this.log.warn('core_killed', {});
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer) this.clock.clearTimeout(this.tickTimer);
    await Promise.allSettled([...this.links.values()].map((l) => l.stop()));
    await Promise.allSettled([this.qdp.stop(), this.qrc?.stop(), this.dashboard?.stop(), this.ptp?.close()]);
    this.log.info('core_stopped', {});
  }
}

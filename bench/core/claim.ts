/**
 * One peripheral driven by the Core (`PeripheralLink`): connect over the 1700 control link (mutual
 * TLS when secure), check the peripheral's certificate against its pin (a changed certificate is
 * refused, never driven), check the part number, claim it with Design.Assign (the peripheral then
 * trusts this Core: secure communication on), pin its certificate, push the design's control
 * values (HTTPS, contract A; the control link if the device lacks that API), open the design's
 * streams, and keep a change group on its controls and meters. Reconnects while the Core is
 * active; a peripheral that presents another certificate is retried only slowly and never driven.
 */
import type { LinkAudio } from './link-audio.js';
import type { TLSSocket } from 'node:tls';
import type { ClockSource, TimerHandle } from '../../firmware/clock/clock.js';
import { ControlCallError, ControlClient, type Notification } from '../../firmware/control/client.js';
import type { Logger } from '../../firmware/log/logger.js';
import { pushCoreConfig } from './config-push.js';
import type { CoreIdentity, PinStore } from './core-identity.js';
import type { DesignPeripheral } from './design.js';
import { CoreError } from './errors.js';
import type { Inventory, LinkState } from './inventory.js';

/** A control as the peripheral lists it (Controls.List) and as it last changed. */
export interface LinkControl {
  Name: string;
  Type: string;
  Value: number | string | boolean;
  String: string;
  Position: number;
  ValueMin?: number;
  ValueMax?: number;
  Unit?: string;
  Writable: boolean;
}

export interface DesignRef {
  name: string;
  code: string;
  primary: boolean;
  redundant: boolean;
}

export interface PeripheralLinkOptions {
  peripheral: Readonly<DesignPeripheral>;
  /** Where to reach it (design address, else what QDP reports). */
  address: () => string | null;
  localAddress: string;
  identity: CoreIdentity;
  pins: PinStore;
  secure: boolean;
  design: () => DesignRef;
  coreName: string;
  inventory: Inventory;
  clock: ClockSource;
  logger: Logger;
  /** A control's value changed (QRC change groups, the dashboard). */
  onControlChange?: (peripheral: string, control: string) => void;
  /** The Core's audio peer for this peripheral, run while the link is up. */
  audio?: LinkAudio;
  retryMs?: number;
  /** After a pin mismatch or a wrong part number. */
  slowRetryMs?: number;
  statusPollMs?: number;
  /** Change-group push rate on the link, seconds. */
  pollRateS?: number;
}

const METER_RE = /\.(peak|rms)$/i;
const GROUP = 'core';

export class PeripheralLink {
  readonly name: string;
  private client: ControlClient | null = null;
  private readonly controls = new Map<string, LinkControl>();
  private running = false;
  private retryTimer: TimerHandle | null = null;
  private pollTimer: TimerHandle | null = null;
  private readonly log: Logger;
  private readonly o: Required<Omit<PeripheralLinkOptions, 'onControlChange' | 'audio'>> &
    Pick<PeripheralLinkOptions, 'onControlChange' | 'audio'>;
  state: LinkState = 'idle';

  constructor(options: PeripheralLinkOptions) {
    this.o = { retryMs: 1000, slowRetryMs: 10_000, statusPollMs: 2000, pollRateS: 0.1, ...options };
    this.name = options.peripheral.name;
    this.log = options.logger.child({ module: 'core-link', peripheral: this.name });
  }

  /** Start (or keep) driving the peripheral. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt();
  }

  /** Stop driving it: close the link (a standby Core, or shutdown). */
  async stop(): Promise<void> {
    this.running = false;
    this.clearTimers();
    await this.o.audio?.detach();
    const c = this.client;
    this.client = null;
    if (c) await c.close().catch(() => undefined);
    this.setState('idle', null);
  }

  /** Drop the link abruptly (a dying Core: no goodbye). */
  kill(): void {
    this.running = false;
    this.clearTimers();
    this.client?.socket.destroy();
    this.client = null;
    void this.o.audio?.detach();
  }

  /** Drop the connection; a running link reconnects (and checks the pin again). */
  drop(): void {
    this.client?.socket.destroy();
  }

  connected(): boolean {
    return this.state === 'connected' && this.client !== null && !this.client.closed;
  }

  /** The exposed controls (design list, else all), in the peripheral's order. */
  listControls(): LinkControl[] {
    const wanted = this.o.peripheral.controls;
    const all = [...this.controls.values()];
    if (!wanted) return all.map((c) => ({ ...c }));
    const out: LinkControl[] = [];
    for (const w of wanted) {
      const c = this.controls.get(w.name.toLowerCase());
      if (c) out.push({ ...c });
    }
    return out;
  }

  getControl(name: string): LinkControl | null {
    const c = this.controls.get(name.toLowerCase());
    if (!c) return null;
    const wanted = this.o.peripheral.controls;
    if (wanted && !wanted.some((w) => w.name.toLowerCase() === name.toLowerCase())) return null;
    return { ...c };
  }

  /** Controls.Set over the link; rejects with the peripheral's ControlCallError or NOT_CONNECTED. */
  async set(name: string, value: number | string | boolean, ramp?: number): Promise<void> {
    const c = this.client;
    if (!c || !this.connected())
      throw new CoreError('CORE_ERR_NOT_CONNECTED', `${this.name} is not connected`);
    const result = await c.call<unknown>('Controls.Set', {
      Name: name,
      Value: value,
      ...(ramp ? { Ramp: ramp } : {}),
    });
    const list = Array.isArray(result) ? result : [result];
    for (const v of list) this.applyValue(v);
  }

  /** Any control-link call (the audio peer, the rollout's notices). */
  call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const c = this.client;
    if (!c || !this.connected())
      return Promise.reject(new CoreError('CORE_ERR_NOT_CONNECTED', `${this.name} is not connected`));
    return c.call<T>(method, params);
  }

  // ---------------------------------------------------------------------------------------------

  private clearTimers(): void {
    if (this.retryTimer) this.o.clock.clearTimeout(this.retryTimer);
    if (this.pollTimer) this.o.clock.clearTimeout(this.pollTimer);
    this.retryTimer = this.pollTimer = null;
  }

  private now(): number {
    return this.o.clock.monotonicMs();
  }

  private setState(state: LinkState, detail: string | null): void {
    if (state !== this.state) this.log.info('link_state', { from: this.state, to: state, detail });
    this.state = state;
    this.o.inventory.link(this.name, state, detail, this.now());
  }

  private retry(slow = false): void {
    if (!this.running) return;
    if (this.retryTimer) this.o.clock.clearTimeout(this.retryTimer);
    this.retryTimer = this.o.clock.setTimeout(
      () => {
        this.retryTimer = null;
        this.attempt();
      },
      slow ? this.o.slowRetryMs : this.o.retryMs,
    );
  }

  private attempt(): void {
    if (!this.running) return;
    const address = this.o.address();
    if (!address) {
      this.setState('idle', 'not heard on QDP yet');
      this.retry();
      return;
    }
    this.setState('connecting', address);
    this.connect(address).then(
      () => undefined,
      (err: unknown) => this.failed(err),
    );
  }

  private failed(err: unknown): void {
    const c = this.client;
    this.client = null;
    if (c) c.socket.destroy();
    if (!this.running) return;
    const code = (err as { code?: unknown }).code;
    const refusal = c?.unsolicitedErrors.find((e) => e.code === 30);
    if (code === 'CORE_ERR_PIN_MISMATCH') {
      this.log.error('peripheral_pin_mismatch', { ...(err as CoreError).detail });
      this.setState('pin-mismatch', (err as Error).message);
      this.retry(true);
    } else if (code === 'CORE_ERR_WRONG_PART') {
      this.setState('wrong-part', (err as Error).message);
      this.retry(true);
    } else if (refusal || (err instanceof ControlCallError && err.rpcCode === 20)) {
      const reason = refusal
        ? String((refusal.data as { Reason?: unknown } | undefined)?.Reason ?? refusal.message)
        : err instanceof Error
          ? err.message
          : String(err);
      this.setState('refused', reason);
      this.retry();
    } else {
      this.setState('error', err instanceof Error ? err.message : String(err));
      this.retry();
    }
  }

  private async connect(address: string): Promise<void> {
    const p = this.o.peripheral;
    const inv = this.o.inventory;
    const client = await ControlClient.connect({
      host: address,
      port: p.controlPort,
      localAddress: this.o.localAddress,
      ...(this.o.secure ? { tls: { key: this.o.identity.key, cert: this.o.identity.cert } } : {}),
      timeoutMs: 5000,
      onNotification: (n) => this.onNotification(n),
    });
    this.client = client;
    let fingerprint: string | null = null;
    if (this.o.secure) {
      fingerprint = (client.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? null;
      if (!fingerprint) throw new CoreError('CORE_ERR_NO_CERT', `${this.name} presented no certificate`);
      this.o.pins.check(this.name, fingerprint);
    }
    const status = await client.call<Record<string, unknown>>('Status.Get');
    if (typeof status['PartNumber'] === 'string' && status['PartNumber'] !== p.partNumber) {
      throw new CoreError(
        'CORE_ERR_WRONG_PART',
        `${this.name} is a ${status['PartNumber']}, the design wants a ${p.partNumber}`,
      );
    }
    const d = this.o.design();
    const assigned = await client.call<{ SecureComm?: boolean }>('Design.Assign', {
      Name: d.name,
      Code: d.code,
      Role: this.name,
      Primary: d.primary,
      Redundant: d.redundant,
      Core: this.o.coreName,
    });
    if (fingerprint && this.o.pins.get(this.name) === null) {
      await this.o.pins.pin(this.name, fingerprint);
      this.log.info('peripheral_pinned', { fingerprint });
    }
    inv.update(
      this.name,
      { fingerprint, owned: true, secure: assigned.SecureComm ?? null, version: str(status['Firmware']) },
      this.now(),
    );

    const listed = await client.call<LinkControl[]>('Controls.List');
    this.controls.clear();
    for (const c of listed) this.controls.set(c.Name.toLowerCase(), { ...c });

    await this.pushConfig(client, address, fingerprint);

    const watch = new Set<string>(this.listControls().map((c) => c.Name));
    for (const c of listed) if (METER_RE.test(c.Name)) watch.add(c.Name);
    if (watch.size > 0) {
      await client.call('ChangeGroup.AddControl', { Id: GROUP, Controls: [...watch] });
      await client.call('ChangeGroup.AutoPoll', { Id: GROUP, Rate: this.o.pollRateS });
    }

    let streams = 0;
    for (const s of p.streams) {
      try {
        await client.call('Stream.Open', {
          Direction: s.direction,
          Format: s.format,
          Address: s.address,
          Port: s.port,
          Channels: s.channels,
        });
        streams++;
      } catch (err) {
        this.log.warn('stream_open_failed', { stream: s, err });
      }
    }
    inv.update(this.name, { streams }, this.now());
    this.setState('connected', address);
    if (this.o.audio) void this.o.audio.attach(address, (m, params) => client.call(m, params));
    void client.closedPromise.then(() => {
      void this.o.audio?.detach();
      if (this.client !== client) return;
      this.client = null;
      if (this.pollTimer) this.o.clock.clearTimeout(this.pollTimer);
      if (!this.running) return;
      this.setState('connecting', 'link closed');
      this.retry();
    });
    this.pollStatus(client);
  }

  /** Contract A first; the control link when the device has no Core API (404) or refuses it. */
  private async pushConfig(
    client: ControlClient,
    address: string,
    fingerprint: string | null,
  ): Promise<void> {
    const values: Record<string, number | string | boolean> = {};
    for (const c of this.o.peripheral.controls ?? []) if (c.value !== undefined) values[c.name] = c.value;
    const d = this.o.design();
    try {
      await pushCoreConfig(
        {
          host: address,
          port: this.o.peripheral.httpsPort,
          localAddress: this.o.localAddress,
          clientTls: { key: this.o.identity.key, cert: this.o.identity.cert },
          pinned: fingerprint ?? this.o.pins.get(this.name),
          timeoutMs: 5000,
        },
        {
          design: { name: d.name, code: d.code, role: this.name, primary: d.primary, redundant: d.redundant },
          ...(Object.keys(values).length > 0 ? { controls: values } : {}),
        },
      );
      // The push went around the link: read the pushed controls back into the cache.
      const names = Object.keys(values);
      if (names.length > 0) {
        const now = await client.call<unknown[]>('Controls.Get', { Names: names });
        for (const v of Array.isArray(now) ? now : []) this.applyValue(v);
      }
      this.o.inventory.update(this.name, { configPushed: 'https' }, this.now());
      this.log.info('config_pushed', { via: 'https', controls: names.length });
      return;
    } catch (err) {
      if ((err as { code?: unknown }).code === 'CORE_ERR_PIN_MISMATCH') throw err;
      this.log.info('config_push_https_failed', { err, fallback: 'control link' });
    }
    const items = Object.entries(values).map(([Name, Value]) => ({ Name, Value }));
    if (items.length > 0) {
      const result = await client.call<unknown[]>('Controls.Set', { Controls: items });
      for (const v of Array.isArray(result) ? result : []) this.applyValue(v);
    }
    this.o.inventory.update(this.name, { configPushed: 'control-link' }, this.now());
    this.log.info('config_pushed', { via: 'control-link', controls: items.length });
  }

  private pollStatus(client: ControlClient): void {
    const tick = async (): Promise<void> => {
      if (this.client !== client || client.closed) return;
      try {
        const s = await client.call<Record<string, unknown>>('Status.Get');
        let ptp = null;
        try {
          const c = await client.call<Record<string, unknown>>('Clock.Status');
          ptp = {
            state: str(c['state']) ?? 'unknown',
            offsetNs: typeof c['offsetNs'] === 'number' ? c['offsetNs'] : null,
            grandmaster: str(c['grandmaster']),
          };
        } catch {
          // Clock.Status not wired on this peripheral
        }
        this.o.inventory.update(
          this.name,
          {
            version: str(s['Firmware']),
            secure: s['SecureComm'] === true,
            owned: s['IsOwner'] === true,
            ptp,
          },
          this.now(),
        );
      } catch {
        return; // the close handler reconnects
      }
      if (this.client === client)
        this.pollTimer = this.o.clock.setTimeout(() => void tick(), this.o.statusPollMs);
    };
    void tick();
  }

  private onNotification(n: Notification): void {
    if (n.method !== 'ChangeGroup.Poll') return;
    const changes = (n.params as { Changes?: unknown } | null)?.Changes;
    if (!Array.isArray(changes)) return;
    for (const v of changes) this.applyValue(v);
  }

  private applyValue(v: unknown): void {
    if (!v || typeof v !== 'object') return;
    const x = v as Partial<LinkControl>;
    if (typeof x.Name !== 'string') return;
    const cur = this.controls.get(x.Name.toLowerCase());
    if (!cur) return;
    if (x.Value !== undefined) cur.Value = x.Value;
    if (typeof x.String === 'string') cur.String = x.String;
    if (typeof x.Position === 'number') cur.Position = x.Position;
    if (METER_RE.test(cur.Name) && typeof cur.Value === 'number') {
      this.o.inventory.meters(this.name, { [cur.Name]: cur.Value }, this.now());
    }
    this.o.onControlChange?.(this.name, cur.Name);
  }
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

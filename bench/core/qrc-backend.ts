/**
 * Contract D against the real peripherals: each design peripheral is a QRC component named by its
 * design name, whose controls are the peripheral's (the design's list, else all of them). Reads
 * come from the link's cache (kept fresh by the link's change group); sets go over the 1700
 * link. Named controls are the Core's own status: `<peripheral>.online` (read only).
 */
import { ControlCallError } from '../../firmware/control/client.js';
import { RPC_ERR } from '../../firmware/control/jsonrpc.js';
import type { LinkControl, PeripheralLink } from './claim.js';
import type { Design } from './design.js';
import type { Inventory } from './inventory.js';
import {
  QrcBackendError,
  type QrcBackend,
  type QrcComponentInfo,
  type QrcControlState,
  type QrcEngineStatus,
  type QrcValue,
} from './qrc/backend.js';

export interface CoreQrcBackendOptions {
  design: Readonly<Design>;
  inventory: Inventory;
  links: () => ReadonlyMap<string, PeripheralLink>;
  engine: () => { active: boolean; redundant: boolean };
}

const TYPES: Record<string, string> = {
  float: 'Float',
  integer: 'Integer',
  boolean: 'Boolean',
  string: 'Text',
  trigger: 'Trigger',
};

export function qrcState(c: LinkControl): QrcControlState {
  return {
    Name: c.Name,
    Value: c.Value,
    String: c.String,
    Position: c.Position,
    Type: TYPES[c.Type] ?? c.Type,
    Direction: c.Writable ? 'Read/Write' : 'Read Only',
    ...(c.ValueMin !== undefined ? { ValueMin: c.ValueMin } : {}),
    ...(c.ValueMax !== undefined ? { ValueMax: c.ValueMax } : {}),
  };
}

export class CoreQrcBackend implements QrcBackend {
  private readonly changeListeners = new Set<(c: { component?: string; name: string }) => void>();
  private readonly statusListeners = new Set<(s: QrcEngineStatus) => void>();
  private lastStatus = '';

  constructor(private readonly o: CoreQrcBackendOptions) {
    o.inventory.onChange((s) => {
      this.emitChange({ name: `${s.name}.online` });
      this.statusChanged();
    });
  }

  status(): QrcEngineStatus {
    const e = this.o.engine();
    const missing = this.o.inventory.list().filter((p) => p.inDesign && p.link !== 'connected').length;
    return {
      Platform: 'qperiph Core (emulated)',
      State: e.active ? 'Active' : 'Standby',
      DesignName: this.o.design.name,
      DesignCode: this.o.design.code,
      IsRedundant: e.redundant,
      IsEmulator: true,
      Status:
        !e.active || missing === 0
          ? { Code: 0, String: 'OK' }
          : { Code: 2, String: `Fault - ${missing} peripheral${missing === 1 ? '' : 's'} not connected` },
    };
  }

  /** Call when the engine's role changed (active/standby). */
  statusChanged(): void {
    const s = this.status();
    const key = JSON.stringify(s);
    if (key === this.lastStatus) return;
    this.lastStatus = key;
    for (const fn of this.statusListeners) fn(s);
  }

  namedControls(): QrcControlState[] {
    return this.o.design.peripherals.map((p) => {
      const online = this.o.links().get(p.name.toLowerCase())?.connected() ?? false;
      return {
        Name: `${p.name}.online`,
        Value: online,
        String: online ? 'true' : 'false',
        Position: online ? 1 : 0,
        Type: 'Boolean',
        Direction: 'Read Only' as const,
      };
    });
  }

  components(): QrcComponentInfo[] {
    return this.o.design.peripherals.map((p) => {
      const inv = this.o.inventory.get(p.name);
      return {
        Name: p.name,
        Type: 'qperiph_peripheral',
        Properties: [
          { Name: 'PartNumber', Value: p.partNumber },
          { Name: 'Address', Value: inv?.address ?? '' },
          { Name: 'Firmware', Value: inv?.version ?? '' },
        ],
      };
    });
  }

  componentControls(component: string): QrcControlState[] | null {
    const link = this.link(component);
    return link ? link.listControls().map(qrcState) : null;
  }

  setNamed(name: string): Promise<void> {
    const known = this.namedControls().some((c) => c.Name.toLowerCase() === name.toLowerCase());
    return Promise.reject(
      known
        ? new QrcBackendError('read-only', `${name} is read only`)
        : new QrcBackendError('unknown-control', `no named control ${name}`),
    );
  }

  async setComponent(component: string, name: string, value: QrcValue, ramp?: number): Promise<void> {
    const link = this.link(component);
    if (!link) throw new QrcBackendError('unknown-component', `no component ${component}`);
    const c = link.getControl(name);
    if (!c) throw new QrcBackendError('unknown-control', `${component} has no control ${name}`);
    if (!c.Writable) throw new QrcBackendError('read-only', `${component}.${name} is read only`);
    try {
      await link.set(c.Name, value, ramp);
    } catch (err) {
      if (err instanceof ControlCallError) {
        if (err.rpcCode === RPC_ERR.UNKNOWN_CONTROL)
          throw new QrcBackendError('unknown-control', err.message);
        if (err.rpcCode === RPC_ERR.READ_ONLY_CONTROL) throw new QrcBackendError('read-only', err.message);
        if (err.rpcCode === RPC_ERR.INVALID_PARAMS) throw new QrcBackendError('bad-value', err.message);
      }
      throw err;
    }
  }

  onChange(cb: (c: { component?: string; name: string }) => void): () => void {
    this.changeListeners.add(cb);
    return () => this.changeListeners.delete(cb);
  }

  onStatus(cb: (s: QrcEngineStatus) => void): () => void {
    this.statusListeners.add(cb);
    return () => this.statusListeners.delete(cb);
  }

  /** The link reports a changed control. */
  controlChanged(component: string, name: string): void {
    this.emitChange({ component, name });
  }

  private emitChange(c: { component?: string; name: string }): void {
    for (const fn of this.changeListeners) fn(c);
  }

  private link(component: string): PeripheralLink | null {
    const inDesign = this.o.design.peripherals.some((p) => p.name.toLowerCase() === component.toLowerCase());
    if (!inDesign) return null;
    return this.o.links().get(component.toLowerCase()) ?? null;
  }
}

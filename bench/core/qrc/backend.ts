/**
 * The seam between the QRC server and whatever holds the controls (contract D): the emulated
 * Core implements `QrcBackend` against its real peripherals; tests and a bare Core start from
 * `MemoryQrcBackend`, which keeps named controls and components in memory.
 *
 * Behaviour both implementations obey:
 *   - Reads (`namedControls`, `components`, `componentControls`) are synchronous snapshots.
 *   - `setNamed` / `setComponent` reject with `QrcBackendError` and change nothing when the
 *     control is unknown ('unknown-control'), the component is unknown ('unknown-component'),
 *     the control is 'Read Only' ('read-only') or the value does not fit ('bad-value').
 *   - After a successful set that changed a value, `onChange` listeners hear about it (the
 *     server's change groups compare values, so extra or missing events are harmless).
 *   - `onStatus` listeners hear every engine-status change (the server forwards EngineStatus).
 */
import { QperiphError } from '../../../firmware/errors.js';

export type QrcValue = number | string | boolean;

export interface QrcControlState {
  Name: string;
  Value: QrcValue;
  String: string;
  Position: number;
  Type?: string;
  Direction?: 'Read/Write' | 'Read Only';
  ValueMin?: number;
  ValueMax?: number;
}

export interface QrcComponentInfo {
  Name: string;
  Type: string;
  Properties: Array<{ Name: string; Value: string }>;
}

export interface QrcEngineStatus {
  Platform: string;
  State: 'Active' | 'Standby' | 'Idle';
  DesignName: string;
  DesignCode: string;
  IsRedundant: boolean;
  IsEmulator: boolean;
  Status: { Code: number; String: string };
}

export interface QrcBackend {
  status(): QrcEngineStatus;
  /** Control.Get/Set namespace. */
  namedControls(): QrcControlState[];
  components(): QrcComponentInfo[];
  /** null = unknown component. */
  componentControls(component: string): QrcControlState[] | null;
  setNamed(name: string, value: QrcValue, ramp?: number): Promise<void>;
  setComponent(component: string, name: string, value: QrcValue, ramp?: number): Promise<void>;
  /** throws QrcBackendError{code:'unknown-control'|'unknown-component'|'read-only'|'bad-value'} */
  onChange(cb: (c: { component?: string; name: string }) => void): () => void;
  onStatus(cb: (s: QrcEngineStatus) => void): () => void;
}

export type QrcBackendErrorCode = 'unknown-control' | 'unknown-component' | 'read-only' | 'bad-value';

export class QrcBackendError extends QperiphError {
  declare readonly code: QrcBackendErrorCode;
  constructor(code: QrcBackendErrorCode, message: string) {
    super(code, message);
  }
}

// ---------------------------------------------------------------------------------------------
// In-memory backend

/** How a memory control is declared: a value plus optional limits and type. */
export interface MemoryControlSpec {
  Name: string;
  Value: QrcValue;
  Type?: string;
  Direction?: 'Read/Write' | 'Read Only';
  ValueMin?: number;
  ValueMax?: number;
  /** Text for a value; default: numbers as written, booleans 'true'/'false', strings as is. */
  format?: (v: QrcValue) => string;
}

export interface MemoryComponentSpec {
  Name: string;
  Type: string;
  Properties?: Array<{ Name: string; Value: string }>;
  Controls: MemoryControlSpec[];
}

export interface MemoryQrcBackendOptions {
  status?: Partial<QrcEngineStatus>;
  named?: MemoryControlSpec[];
  components?: MemoryComponentSpec[];
}

export const DEFAULT_ENGINE_STATUS: Readonly<QrcEngineStatus> = Object.freeze({
  Platform: 'Emulated Core',
  State: 'Active',
  DesignName: 'bench',
  DesignCode: 'bench0000000',
  IsRedundant: false,
  IsEmulator: true,
  Status: Object.freeze({ Code: 0, String: 'OK' }) as { Code: number; String: string },
});

class MemoryControl {
  readonly spec: MemoryControlSpec;
  value: QrcValue;
  /** Ramp (seconds) given with the last set, for tests. */
  lastRamp: number | undefined;
  constructor(spec: MemoryControlSpec) {
    this.spec = { ...spec };
    this.value = spec.Value;
  }

  snapshot(): QrcControlState {
    const s = this.spec;
    const out: QrcControlState = {
      Name: s.Name,
      Value: this.value,
      String: s.format ? s.format(this.value) : String(this.value),
      Position: position(this.value, s.ValueMin, s.ValueMax),
      Type: s.Type ?? typeOf(s.Value),
      Direction: s.Direction ?? 'Read/Write',
    };
    if (s.ValueMin !== undefined) out.ValueMin = s.ValueMin;
    if (s.ValueMax !== undefined) out.ValueMax = s.ValueMax;
    return out;
  }

  /** Validate and coerce; throws QrcBackendError, changes nothing on failure. */
  check(value: QrcValue, where: string): QrcValue {
    const s = this.spec;
    if (s.Direction === 'Read Only') throw new QrcBackendError('read-only', `${where} is read-only`);
    const kind = typeof s.Value;
    if (kind === 'number') {
      const n =
        typeof value === 'boolean' ? (value ? 1 : 0) : typeof value === 'string' ? Number(value) : value;
      if (
        typeof n !== 'number' ||
        !Number.isFinite(n) ||
        (typeof value === 'string' && value.trim() === '')
      ) {
        throw new QrcBackendError('bad-value', `${where} needs a number`);
      }
      if ((s.ValueMin !== undefined && n < s.ValueMin) || (s.ValueMax !== undefined && n > s.ValueMax)) {
        throw new QrcBackendError('bad-value', `${where} must be within ${s.ValueMin}..${s.ValueMax}`);
      }
      return n;
    }
    if (kind === 'boolean') {
      if (typeof value === 'boolean') return value;
      if (value === 1 || value === 0) return value === 1;
      if (value === 'true' || value === 'false') return value === 'true';
      throw new QrcBackendError('bad-value', `${where} needs a boolean`);
    }
    if (typeof value !== 'string') throw new QrcBackendError('bad-value', `${where} needs a string`);
    return value;
  }
}

function typeOf(v: QrcValue): string {
  return typeof v === 'number' ? 'Float' : typeof v === 'boolean' ? 'Boolean' : 'String';
}

function position(v: QrcValue, min?: number, max?: number): number {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v !== 'number' || min === undefined || max === undefined || max <= min) return 0;
  return Math.min(1, Math.max(0, (v - min) / (max - min)));
}

interface MemoryComponent {
  info: QrcComponentInfo;
  controls: Map<string, MemoryControl>;
}

export class MemoryQrcBackend implements QrcBackend {
  private engine: QrcEngineStatus;
  private readonly named = new Map<string, MemoryControl>();
  private readonly comps = new Map<string, MemoryComponent>();
  private readonly changeListeners = new Set<(c: { component?: string; name: string }) => void>();
  private readonly statusListeners = new Set<(s: QrcEngineStatus) => void>();
  /** The last successful sets (at most 1000), in order (tests read it). */
  readonly sets: Array<{ component?: string; name: string; value: QrcValue; ramp?: number }> = [];

  constructor(options: MemoryQrcBackendOptions = {}) {
    this.engine = { ...DEFAULT_ENGINE_STATUS, ...options.status };
    for (const c of options.named ?? []) this.addNamed(c);
    for (const c of options.components ?? []) this.addComponent(c);
  }

  addNamed(spec: MemoryControlSpec): void {
    if (this.named.has(spec.Name)) throw new RangeError(`named control ${spec.Name} declared twice`);
    this.named.set(spec.Name, new MemoryControl(spec));
  }

  addComponent(spec: MemoryComponentSpec): void {
    if (this.comps.has(spec.Name)) throw new RangeError(`component ${spec.Name} declared twice`);
    const controls = new Map<string, MemoryControl>();
    for (const c of spec.Controls) {
      if (controls.has(c.Name)) throw new RangeError(`control ${spec.Name}.${c.Name} declared twice`);
      controls.set(c.Name, new MemoryControl(c));
    }
    this.comps.set(spec.Name, {
      info: { Name: spec.Name, Type: spec.Type, Properties: [...(spec.Properties ?? [])] },
      controls,
    });
  }

  status(): QrcEngineStatus {
    return { ...this.engine, Status: { ...this.engine.Status } };
  }

  /** Change the engine status (e.g. Active -> Standby); listeners hear it. */
  setStatus(patch: Partial<QrcEngineStatus>): void {
    this.engine = { ...this.engine, ...patch };
    const s = this.status();
    for (const cb of [...this.statusListeners]) cb(s);
  }

  namedControls(): QrcControlState[] {
    return [...this.named.values()].map((c) => c.snapshot());
  }

  components(): QrcComponentInfo[] {
    return [...this.comps.values()].map((c) => ({
      ...c.info,
      Properties: c.info.Properties.map((p) => ({ ...p })),
    }));
  }

  componentControls(component: string): QrcControlState[] | null {
    const c = this.comps.get(component);
    return c ? [...c.controls.values()].map((x) => x.snapshot()) : null;
  }

  setNamed(name: string, value: QrcValue, ramp?: number): Promise<void> {
    const c = this.named.get(name);
    if (!c) return Promise.reject(new QrcBackendError('unknown-control', `no named control ${name}`));
    return this.apply(c, undefined, name, value, ramp);
  }

  setComponent(component: string, name: string, value: QrcValue, ramp?: number): Promise<void> {
    const comp = this.comps.get(component);
    if (!comp) return Promise.reject(new QrcBackendError('unknown-component', `no component ${component}`));
    const c = comp.controls.get(name);
    if (!c) return Promise.reject(new QrcBackendError('unknown-control', `no control ${component}.${name}`));
    return this.apply(c, component, name, value, ramp);
  }

  /** Change a value from the "device" side (ignores Read Only): as a meter or a fader moving. */
  poke(component: string | undefined, name: string, value: QrcValue): void {
    const c = component === undefined ? this.named.get(name) : this.comps.get(component)?.controls.get(name);
    if (!c)
      throw new QrcBackendError(component === undefined ? 'unknown-control' : 'unknown-component', name);
    if (c.value === value) return;
    c.value = value;
    this.emitChange(component, name);
  }

  onChange(cb: (c: { component?: string; name: string }) => void): () => void {
    this.changeListeners.add(cb);
    return () => this.changeListeners.delete(cb);
  }

  onStatus(cb: (s: QrcEngineStatus) => void): () => void {
    this.statusListeners.add(cb);
    return () => this.statusListeners.delete(cb);
  }

  /** Number of listeners (tests check that closed sessions unsubscribe). */
  get listenerCount(): number {
    return this.changeListeners.size + this.statusListeners.size;
  }

  private apply(
    c: MemoryControl,
    component: string | undefined,
    name: string,
    value: QrcValue,
    ramp: number | undefined,
  ): Promise<void> {
    let v: QrcValue;
    try {
      v = c.check(value, component === undefined ? name : `${component}.${name}`);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const changed = c.value !== v;
    c.value = v;
    c.lastRamp = ramp;
    const rec: { component?: string; name: string; value: QrcValue; ramp?: number } = { name, value: v };
    if (component !== undefined) rec.component = component;
    if (ramp !== undefined) rec.ramp = ramp;
    this.sets.push(rec);
    if (this.sets.length > 1000) this.sets.shift();
    if (changed) this.emitChange(component, name);
    return Promise.resolve();
  }

  private emitChange(component: string | undefined, name: string): void {
    const ev: { component?: string; name: string } = { name };
    if (component !== undefined) ev.component = component;
    for (const cb of [...this.changeListeners]) cb(ev);
  }
}

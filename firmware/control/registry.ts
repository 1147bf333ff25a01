/**
 * The named-controls registry shared by audio (gain, mute, meters), I/O (GPIO, serial) and
 * status. A control has a type, a range and a unit; it changes either from inside the runtime
 * (`ControlHandle.update`, e.g. a GPIO input) or from the Core (`setFromLink`, validated, with
 * an optional linear ramp for floats). Every change bumps a per-control sequence number and
 * fires change listeners; change groups compare sequence numbers to know what to send.
 *
 * Names: 1..64 characters of letters, digits and `._-:/`, unique ignoring case.
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import { QperiphError } from '../errors.js';

export type ControlType = 'float' | 'integer' | 'boolean' | 'string' | 'trigger';
export type ControlValue = number | boolean | string;

export interface ControlSpec {
  name: string;
  type: ControlType;
  /** float/integer: range (both required for those types). */
  min?: number;
  max?: number;
  /** Unit shown with the value ('dB', 'Hz', '%', 's', …). */
  unit?: string;
  /** string: longest value in characters (default 1024). */
  maxLength?: number;
  /** Can the Core set it over the link? (Inputs, meters and status cannot.) */
  writable: boolean;
  description?: string;
  /** Initial value; default min (numbers), false, '' (string), false (trigger). */
  initial?: ControlValue;
  /** Called after a link set was accepted (and at each ramp step with the stepped value). */
  onSet?: (value: ControlValue) => void;
}

export interface ControlSnapshot {
  Name: string;
  Type: ControlType;
  Value: ControlValue;
  String: string;
  /** 0..1 position in the range (numbers), 0/1 (boolean). */
  Position: number;
  ValueMin?: number;
  ValueMax?: number;
  Unit?: string;
  Writable: boolean;
}

export interface ControlChange {
  name: string;
  value: ControlValue;
  seq: number;
  source: 'internal' | 'link';
}

export type RegistryErrorCode =
  | 'CONTROL_ERR_UNKNOWN_CONTROL'
  | 'CONTROL_ERR_READ_ONLY'
  | 'CONTROL_ERR_BAD_VALUE'
  | 'CONTROL_ERR_DUPLICATE'
  | 'CONTROL_ERR_BAD_SPEC';

export class ControlRegistryError extends QperiphError {
  declare readonly code: RegistryErrorCode;
  readonly control: string;
  constructor(code: RegistryErrorCode, control: string, message: string) {
    super(code, message);
    this.control = control;
  }
}

export interface ControlHandle {
  readonly name: string;
  get(): ControlValue;
  /** Change the value from inside the runtime (range-checked, clamped; fires change events). */
  update(value: ControlValue): void;
  unregister(): void;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/;
const RAMP_STEP_MS = 20;
/** Longest ramp accepted, in seconds. */
export const MAX_RAMP_SECONDS = 3600;

interface Entry {
  spec: Readonly<ControlSpec>;
  value: ControlValue;
  seq: number;
  ramp: { timer: TimerHandle | null; from: number; to: number; startMs: number; durMs: number } | null;
}

export class ControlRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(c: ControlChange) => void>();
  private seqCounter = 0;
  private readonly clock: ClockSource;

  constructor(options: { clock: ClockSource }) {
    this.clock = options.clock;
  }

  get size(): number {
    return this.entries.size;
  }

  register(spec: ControlSpec): ControlHandle {
    const key = spec.name.toLowerCase();
    if (!NAME_RE.test(spec.name)) {
      throw new ControlRegistryError(
        'CONTROL_ERR_BAD_SPEC',
        spec.name,
        `bad control name ${JSON.stringify(spec.name)}`,
      );
    }
    if (this.entries.has(key)) {
      throw new ControlRegistryError(
        'CONTROL_ERR_DUPLICATE',
        spec.name,
        `control ${spec.name} is already registered`,
      );
    }
    if (spec.type === 'float' || spec.type === 'integer') {
      const { min, max } = spec;
      if (typeof min !== 'number' || typeof max !== 'number' || !(min < max) || !Number.isFinite(max - min)) {
        throw new ControlRegistryError('CONTROL_ERR_BAD_SPEC', spec.name, `${spec.name}: min < max required`);
      }
    }
    const frozen = Object.freeze({ ...spec });
    const entry: Entry = { spec: frozen, value: defaultValue(frozen), seq: ++this.seqCounter, ramp: null };
    if (spec.initial !== undefined) entry.value = coerce(frozen, spec.initial);
    this.entries.set(key, entry);
    return {
      name: spec.name,
      get: () => entry.value,
      update: (value) => {
        if (this.entries.get(key) !== entry) return;
        this.cancelRamp(entry);
        this.apply(entry, coerce(frozen, value), 'internal', false);
      },
      unregister: () => {
        if (this.entries.get(key) !== entry) return;
        this.cancelRamp(entry);
        this.entries.delete(key);
      },
    };
  }

  has(name: string): boolean {
    return this.entries.has(name.toLowerCase());
  }

  names(): string[] {
    return [...this.entries.values()].map((e) => e.spec.name);
  }

  /** Current value and sequence number; throws CONTROL_ERR_UNKNOWN_CONTROL. */
  read(name: string): { snapshot: ControlSnapshot; seq: number } {
    const e = this.entry(name);
    return { snapshot: snapshot(e), seq: e.seq };
  }

  seqOf(name: string): number | undefined {
    return this.entries.get(name.toLowerCase())?.seq;
  }

  list(): ControlSnapshot[] {
    return [...this.entries.values()].map(snapshot);
  }

  /**
   * A set from the Core. Numbers are clamped to the range (as the vendor's controls do);
   * wrong types are refused. With `rampSeconds` > 0 a float moves linearly to the target.
   */
  setFromLink(name: string, value: unknown, rampSeconds = 0): ControlSnapshot {
    const e = this.entry(name);
    if (!e.spec.writable) {
      throw new ControlRegistryError('CONTROL_ERR_READ_ONLY', e.spec.name, `${e.spec.name} is read-only`);
    }
    const target = coerce(e.spec, value);
    this.cancelRamp(e);
    if (rampSeconds > 0 && e.spec.type === 'float' && typeof e.value === 'number') {
      const durMs = Math.min(rampSeconds, MAX_RAMP_SECONDS) * 1000;
      e.ramp = { timer: null, from: e.value, to: target as number, startMs: this.clock.monotonicMs(), durMs };
      this.rampStep(e);
    } else {
      this.apply(e, target, 'link', true);
    }
    return snapshot(e);
  }

  onChange(listener: (c: ControlChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stop all ramps (service shutdown). */
  stop(): void {
    for (const e of this.entries.values()) this.cancelRamp(e);
  }

  private entry(name: string): Entry {
    const e = typeof name === 'string' ? this.entries.get(name.toLowerCase()) : undefined;
    if (!e)
      throw new ControlRegistryError(
        'CONTROL_ERR_UNKNOWN_CONTROL',
        String(name),
        `no control named ${JSON.stringify(name)}`,
      );
    return e;
  }

  private rampStep(e: Entry): void {
    const r = e.ramp;
    if (!r) return;
    const t = Math.min(1, (this.clock.monotonicMs() - r.startMs) / r.durMs);
    const v = r.from + (r.to - r.from) * t;
    if (t >= 1) {
      e.ramp = null;
      this.apply(e, r.to, 'link', true);
      return;
    }
    this.apply(e, v, 'link', true);
    r.timer = this.clock.setTimeout(() => {
      r.timer = null;
      this.rampStep(e);
    }, RAMP_STEP_MS);
  }

  private cancelRamp(e: Entry): void {
    if (e.ramp?.timer) this.clock.clearTimeout(e.ramp.timer);
    e.ramp = null;
  }

  private apply(e: Entry, value: ControlValue, source: 'internal' | 'link', callOnSet: boolean): void {
    const isTrigger = e.spec.type === 'trigger';
    if (!isTrigger && value === e.value && source === 'internal') return;
    e.value = isTrigger ? false : value;
    e.seq = ++this.seqCounter;
    if (callOnSet && e.spec.onSet) e.spec.onSet(value);
    const change: ControlChange = { name: e.spec.name, value: isTrigger ? true : value, seq: e.seq, source };
    for (const l of this.listeners) l(change);
  }
}

function defaultValue(spec: ControlSpec): ControlValue {
  switch (spec.type) {
    case 'float':
    case 'integer':
      return Math.max(spec.min!, Math.min(spec.max!, 0));
    case 'string':
      return '';
    default:
      return false;
  }
}

/** Check a value against a spec; numbers are clamped into range. */
export function coerce(spec: ControlSpec, value: unknown): ControlValue {
  const bad = (what: string): never => {
    throw new ControlRegistryError('CONTROL_ERR_BAD_VALUE', spec.name, `${spec.name}: ${what}`);
  };
  switch (spec.type) {
    case 'float':
    case 'integer': {
      let v = value;
      if (typeof v === 'boolean') v = v ? spec.max! : spec.min!;
      if (typeof v !== 'number' || !Number.isFinite(v)) return bad('value must be a finite number');
      let n = Math.max(spec.min!, Math.min(spec.max!, v));
      if (spec.type === 'integer') n = Math.round(n);
      return n;
    }
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (value === 0 || value === 1) return value === 1;
      return bad('value must be a boolean (or 0/1)');
    case 'trigger':
      if (value === true || value === 1) return true;
      return bad('a trigger is set with true (or 1)');
    case 'string': {
      if (typeof value !== 'string') return bad('value must be a string');
      const max = spec.maxLength ?? 1024;
      if (value.length > max) return bad(`value longer than ${max} characters`);
      return value;
    }
  }
}

function formatValue(spec: ControlSpec, value: ControlValue): string {
  if (typeof value === 'number') {
    const text = spec.type === 'integer' ? String(value) : value.toFixed(Math.abs(value) >= 100 ? 1 : 2);
    return spec.unit ? `${text}${spec.unit}` : text;
  }
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return value;
}

function snapshot(e: Entry): ControlSnapshot {
  const { spec, value } = e;
  let position = 0;
  if (typeof value === 'number') position = (value - spec.min!) / (spec.max! - spec.min!);
  else if (typeof value === 'boolean') position = value ? 1 : 0;
  const s: ControlSnapshot = {
    Name: spec.name,
    Type: spec.type,
    Value: value,
    String: formatValue(spec, value),
    Position: position,
    Writable: spec.writable,
  };
  if (spec.min !== undefined) s.ValueMin = spec.min;
  if (spec.max !== undefined) s.ValueMax = spec.max;
  if (spec.unit !== undefined) s.Unit = spec.unit;
  return s;
}

/**
 * The Core's inventory: one entry per peripheral in the design (and any other peripheral heard),
 * with its live status: online (heard on QDP), the control link's state, firmware version,
 * secure communication, PTP, meters. Pure: callers pass facts and "now"; listeners hear each
 * change. The dashboard and QRC read `list()`.
 */
import type { Design } from './design.js';

export type LinkState =
  | 'idle' // not connecting (standby Core, or not heard yet)
  | 'connecting'
  | 'connected'
  | 'refused' // the peripheral refused the link (pending / declined / not owner)
  | 'pin-mismatch' // its certificate is not the pinned one: never driven
  | 'wrong-part' // QDP part number differs from the design
  | 'error';

export interface PtpSummary {
  state: string;
  offsetNs: number | null;
  grandmaster: string | null;
}

export interface PeripheralStatus {
  name: string;
  partNumber: string;
  inDesign: boolean;
  address: string | null;
  online: boolean;
  lastHeardMs: number | null;
  link: LinkState;
  linkDetail: string | null;
  version: string | null;
  secure: boolean | null;
  owned: boolean | null;
  fingerprint: string | null;
  configPushed: 'https' | 'control-link' | null;
  ptp: PtpSummary | null;
  meters: Record<string, number>;
  streams: number;
  changedAtMs: number;
}

export type InventoryListener = (s: Readonly<PeripheralStatus>) => void;

export class Inventory {
  private readonly items = new Map<string, PeripheralStatus>();
  private readonly listeners = new Set<InventoryListener>();

  constructor(design: Readonly<Design>, nowMs = 0) {
    for (const p of design.peripherals)
      this.items.set(p.name.toLowerCase(), blank(p.name, p.partNumber, true, nowMs));
  }

  onChange(fn: InventoryListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get(name: string): Readonly<PeripheralStatus> | null {
    return this.items.get(name.toLowerCase()) ?? null;
  }

  list(): Array<Readonly<PeripheralStatus>> {
    return [...this.items.values()].sort(
      (a, b) => Number(b.inDesign) - Number(a.inDesign) || a.name.localeCompare(b.name),
    );
  }

  /** A QDP packet from the peripheral (discovered or changed). */
  heard(
    p: { name: string; partNumber: string | null; address: string; secureComm: string | null },
    nowMs: number,
  ): void {
    const cur = this.items.get(p.name.toLowerCase());
    const next = cur ?? blank(p.name, p.partNumber ?? '?', false, nowMs);
    this.apply(next, nowMs, {
      online: true,
      lastHeardMs: nowMs,
      address: p.address,
      secure: p.secureComm === null ? next.secure : p.secureComm === 'enabled',
      ...(cur ? {} : { partNumber: p.partNumber ?? '?' }),
    });
    if (!cur) this.items.set(p.name.toLowerCase(), next);
  }

  /** QDP silence: the peripheral is offline (its link may still be open for a moment). */
  lost(name: string, nowMs: number): void {
    const cur = this.items.get(name.toLowerCase());
    if (cur) this.apply(cur, nowMs, { online: false });
  }

  link(name: string, state: LinkState, detail: string | null, nowMs: number): void {
    const cur = this.items.get(name.toLowerCase());
    if (!cur) return;
    this.apply(cur, nowMs, {
      link: state,
      linkDetail: detail,
      ...(state === 'connected' ? {} : { owned: state === 'connecting' ? cur.owned : false }),
    });
  }

  update(
    name: string,
    patch: Partial<
      Pick<
        PeripheralStatus,
        'version' | 'secure' | 'owned' | 'fingerprint' | 'configPushed' | 'ptp' | 'streams'
      >
    >,
    nowMs: number,
  ): void {
    const cur = this.items.get(name.toLowerCase());
    if (cur) this.apply(cur, nowMs, patch);
  }

  /** Meter readings (dBFS by control name); a change only when a value moved. */
  meters(name: string, values: Record<string, number>, nowMs: number): void {
    const cur = this.items.get(name.toLowerCase());
    if (!cur) return;
    const merged = { ...cur.meters, ...values };
    this.apply(cur, nowMs, { meters: merged });
  }

  private apply(cur: PeripheralStatus, nowMs: number, patch: Partial<PeripheralStatus>): void {
    let changed = false;
    for (const [k, v] of Object.entries(patch) as Array<[keyof PeripheralStatus, unknown]>) {
      if (!same(cur[k], v)) {
        (cur as unknown as Record<string, unknown>)[k] = v;
        changed = true;
      }
    }
    if (!changed) return;
    cur.changedAtMs = nowMs;
    const snapshot = { ...cur, meters: { ...cur.meters } };
    for (const fn of this.listeners) fn(snapshot);
  }
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a && b && typeof a === 'object' && typeof b === 'object')
    return JSON.stringify(a) === JSON.stringify(b);
  return false;
}

function blank(name: string, partNumber: string, inDesign: boolean, nowMs: number): PeripheralStatus {
  return {
    name,
    partNumber,
    inDesign,
    address: null,
    online: false,
    lastHeardMs: null,
    link: 'idle',
    linkDetail: null,
    version: null,
    secure: null,
    owned: null,
    fingerprint: null,
    configPushed: null,
    ptp: null,
    meters: {},
    streams: 0,
    changedAtMs: nowMs,
  };
}

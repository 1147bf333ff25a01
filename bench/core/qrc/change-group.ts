/**
 * One QRC change group: a set of controls (named controls and component controls) and, per
 * control, what was last reported. `poll` reports the controls whose Value, String or Position
 * differ from that; a newly added or invalidated control counts as changed. Pure: the caller
 * passes a reader that looks controls up.
 */
import type { QrcControlState, QrcValue } from './backend.js';
import type { QrcId } from './rpc.js';

/** A control in a group: `component` absent = a named control. */
export interface ControlRef {
  component?: string;
  name: string;
}

export interface QrcChange {
  Component?: string;
  Name: string;
  Value: QrcValue;
  String: string;
  Position: number;
}

/** Look a control up; undefined = it no longer exists. */
export type ControlReader = (ref: ControlRef) => QrcControlState | undefined;

interface Entry {
  ref: ControlRef;
  /** What was last reported (null: never, or invalidated). */
  last: { Value: QrcValue; String: string; Position: number } | null;
}

const keyOf = (r: ControlRef): string =>
  r.component === undefined ? `n:${r.name}` : `c:${r.component}\0${r.name}`;

export class QrcChangeGroup {
  readonly id: QrcId;
  private readonly entries = new Map<string, Entry>();

  constructor(id: QrcId) {
    this.id = id;
  }

  get size(): number {
    return this.entries.size;
  }

  has(ref: ControlRef): boolean {
    return this.entries.has(keyOf(ref));
  }

  /** Add controls (already present ones keep their state); returns how many were new. */
  add(refs: ControlRef[]): number {
    let added = 0;
    for (const r of refs) {
      const k = keyOf(r);
      if (this.entries.has(k)) continue;
      const ref: ControlRef =
        r.component === undefined ? { name: r.name } : { component: r.component, name: r.name };
      this.entries.set(k, { ref, last: null });
      added++;
    }
    return added;
  }

  remove(refs: ControlRef[]): void {
    for (const r of refs) this.entries.delete(keyOf(r));
  }

  clear(): void {
    this.entries.clear();
  }

  /** Everything counts as changed at the next poll. */
  invalidate(): void {
    for (const e of this.entries.values()) e.last = null;
  }

  /** Changes since the last poll, in the order controls were added. Vanished controls drop out. */
  poll(read: ControlReader): QrcChange[] {
    const out: QrcChange[] = [];
    for (const [k, e] of this.entries) {
      const s = read(e.ref);
      if (!s) {
        this.entries.delete(k);
        continue;
      }
      const l = e.last;
      if (l && sameValue(l.Value, s.Value) && l.String === s.String && l.Position === s.Position) continue;
      e.last = { Value: s.Value, String: s.String, Position: s.Position };
      const c: QrcChange = { Name: e.ref.name, Value: s.Value, String: s.String, Position: s.Position };
      out.push(e.ref.component === undefined ? c : { Component: e.ref.component, ...c });
    }
    return out;
  }
}

function sameValue(a: QrcValue, b: QrcValue): boolean {
  return a === b || (typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b));
}

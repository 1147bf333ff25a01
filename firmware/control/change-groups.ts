/**
 * Change groups (per connection, as in QRC): a set of control names and, per name, the
 * sequence number last sent. `poll` returns what changed since; a newly added control counts as
 * changed. Pure apart from reading the registry.
 */
import type { ControlRegistry, ControlValue } from './registry.js';

export interface ChangeEntry {
  Name: string;
  Value: ControlValue;
  String: string;
  Position: number;
}

export class ChangeGroup {
  readonly id: string;
  /** name (as registered) -> sequence number last sent (-1: never). */
  private readonly sent = new Map<string, number>();
  autoPollMs: number | null = null;

  constructor(id: string) {
    this.id = id;
  }

  get size(): number {
    return this.sent.size;
  }

  add(names: string[]): void {
    for (const n of names) if (!this.sent.has(n)) this.sent.set(n, -1);
  }

  remove(names: string[]): void {
    for (const n of names) this.sent.delete(n);
  }

  clear(): void {
    this.sent.clear();
  }

  /** Mark everything as changed: the next poll sends every control. */
  invalidate(): void {
    for (const n of this.sent.keys()) this.sent.set(n, -1);
  }

  /** Changes since the last poll; controls that vanished from the registry are dropped. */
  poll(registry: ControlRegistry): ChangeEntry[] {
    const out: ChangeEntry[] = [];
    for (const [name, last] of this.sent) {
      const seq = registry.seqOf(name);
      if (seq === undefined) {
        this.sent.delete(name);
        continue;
      }
      if (seq === last) continue;
      const { snapshot } = registry.read(name);
      out.push({
        Name: snapshot.Name,
        Value: snapshot.Value,
        String: snapshot.String,
        Position: snapshot.Position,
      });
      this.sent.set(name, seq);
    }
    return out;
  }
}

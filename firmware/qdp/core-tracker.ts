/**
 * Keeps the Cores this peripheral hears (QDP packets with a core `<device>`),
 * their design and primary/redundant role, and forgets them after a silence.
 * Pure: callers pass "now" and receive the events to log or act on.
 */
import type { QdpPacket } from './qdp-types.js';

export interface HeardCore {
  name: string;
  address: string;
  partNumber: string | null;
  designCode: string | null;
  designPretty: string | null;
  primary: boolean | null;
  redundant: boolean | null;
  secureComm: string | null;
  firstSeenMs: number;
  lastSeenMs: number;
}

export type CoreEvent =
  | { event: 'core_discovered'; core: HeardCore }
  | { event: 'core_changed'; core: HeardCore; changed: string[] }
  | { event: 'core_lost'; core: HeardCore };

export class CoreTracker {
  private readonly cores = new Map<string, HeardCore>();

  constructor(private readonly silenceMs = 10_000) {}

  /** Record a packet; returns events (empty when nothing new). Non-core packets are ignored. */
  observe(packet: QdpPacket, fromAddress: string, nowMs: number): CoreEvent[] {
    const d = packet.device;
    if (!d || d.type !== 'core') return [];
    const next: HeardCore = {
      name: d.name,
      address: d.lanAIp || fromAddress,
      partNumber: d.partNumber ?? null,
      designCode: packet.control?.designCode ?? null,
      designPretty: packet.control?.designPretty ?? null,
      primary: packet.control ? packet.control.primary : null,
      redundant: packet.control ? packet.control.redundant : null,
      secureComm: d.secureComm ?? null,
      firstSeenMs: nowMs,
      lastSeenMs: nowMs,
    };
    const prev = this.cores.get(d.name);
    if (!prev) {
      this.cores.set(d.name, next);
      return [{ event: 'core_discovered', core: { ...next } }];
    }
    next.firstSeenMs = prev.firstSeenMs;
    const fields: Array<keyof HeardCore> = [
      'address',
      'partNumber',
      'designCode',
      'designPretty',
      'primary',
      'redundant',
      'secureComm',
    ];
    const changed = fields.filter((f) => prev[f] !== next[f]);
    this.cores.set(d.name, next);
    return changed.length ? [{ event: 'core_changed', core: { ...next }, changed }] : [];
  }

  /** Forget Cores silent for longer than the window. */
  expire(nowMs: number): CoreEvent[] {
    const out: CoreEvent[] = [];
    for (const [name, c] of this.cores) {
      if (nowMs - c.lastSeenMs > this.silenceMs) {
        this.cores.delete(name);
        out.push({ event: 'core_lost', core: { ...c } });
      }
    }
    return out;
  }

  list(): HeardCore[] {
    return [...this.cores.values()].map((c) => ({ ...c })).sort((a, b) => a.name.localeCompare(b.name));
  }
}

/**
 * The redundant pair's state machine, pure: (state, event) -> state. A Core is `starting`,
 * `standby` or `active`. Each Core announces on QDP whether it is active; its peer's packets are
 * the heartbeat.
 *   - starting: an active peer heard -> standby. After the start window: a primary goes active
 *     (unless an active peer was heard); a backup goes active only if the peer stayed silent,
 *     else standby.
 *   - standby: peer silent for `silenceMs` (default 3 s) -> active ("takeover").
 *   - active: an active peer heard while we are the backup -> standby (split brain after both
 *     started at once: the primary keeps the design).
 * A Core without a peer is simply active after the start window (0 by default).
 */
export type RedundancyRole = 'primary' | 'backup';
export type RedundancyState = 'starting' | 'standby' | 'active';

export type RedundancyEvent =
  { kind: 'tick'; nowMs: number } | { kind: 'peer'; nowMs: number; peerActive: boolean };

export interface RedundancyTransition {
  from: RedundancyState;
  to: RedundancyState;
  cause: string;
  atMs: number;
}

export interface RedundancyOptions {
  role: RedundancyRole;
  hasPeer: boolean;
  startMs: number;
  silenceMs?: number;
  /**
   * How long a starting Core listens for its peer first. Default with a peer: half of silenceMs
   * for a primary (it hears an active backup's 1 s announcements in that time), silenceMs for a
   * backup; 0 without a peer.
   */
  startWindowMs?: number;
}

export class RedundancyFsm {
  state: RedundancyState = 'starting';
  readonly role: RedundancyRole;
  private readonly silenceMs: number;
  private readonly startWindowMs: number;
  private readonly startMs: number;
  private readonly hasPeer: boolean;
  private lastPeerMs: number | null = null;
  private peerActive = false;

  constructor(o: RedundancyOptions) {
    this.role = o.role;
    this.hasPeer = o.hasPeer;
    this.startMs = o.startMs;
    this.silenceMs = o.silenceMs ?? 3000;
    this.startWindowMs =
      o.startWindowMs ?? (o.hasPeer ? (o.role === 'primary' ? this.silenceMs / 2 : this.silenceMs) : 0);
  }

  get peerLastHeardMs(): number | null {
    return this.lastPeerMs;
  }

  /** Feed one event; returns the transition when the state changed. */
  handle(ev: RedundancyEvent): RedundancyTransition | null {
    if (ev.kind === 'peer') {
      this.lastPeerMs = ev.nowMs;
      this.peerActive = ev.peerActive;
    }
    const to = this.next(ev);
    if (!to || to.state === this.state) return null;
    const t = { from: this.state, to: to.state, cause: to.cause, atMs: ev.nowMs };
    this.state = to.state;
    return t;
  }

  private peerSilent(nowMs: number): boolean {
    return this.lastPeerMs === null || nowMs - this.lastPeerMs >= this.silenceMs;
  }

  private next(ev: RedundancyEvent): { state: RedundancyState; cause: string } | null {
    const now = ev.nowMs;
    switch (this.state) {
      case 'starting':
        if (ev.kind === 'peer' && ev.peerActive) return { state: 'standby', cause: 'peer is active' };
        if (now - this.startMs < this.startWindowMs) return null;
        if (!this.hasPeer) return { state: 'active', cause: 'no redundant peer' };
        if (this.peerSilent(now)) return { state: 'active', cause: 'peer silent at start' };
        if (this.peerActive) return { state: 'standby', cause: 'peer is active' };
        return this.role === 'primary'
          ? { state: 'active', cause: 'primary, peer not active' }
          : { state: 'standby', cause: 'backup, primary present' };
      case 'standby':
        if (ev.kind === 'peer') return null;
        return this.peerSilent(now)
          ? { state: 'active', cause: `peer silent for ${this.silenceMs} ms` }
          : null;
      case 'active':
        if (ev.kind === 'peer' && ev.peerActive && this.role === 'backup')
          return { state: 'standby', cause: 'primary is active too' };
        return null;
    }
  }
}

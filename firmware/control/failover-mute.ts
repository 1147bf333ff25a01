/**
 * "Muted during the switch": while a design-assigned peripheral has no Core connected (the
 * owning Core died and its backup has not taken over yet), its audio outputs are muted. When a
 * Core is present again each output returns to the mute its control says. Pure decisions; the
 * caller passes how to mute a channel and what the user's mute control holds.
 */
import type { CorePresenceEvent } from './service.js';

export interface FailoverMuteOptions {
  outputs: number;
  /** Mute (true) or unmute output channel `ch` (0-based) in the engine. */
  setMute: (ch: number, on: boolean) => void;
  /** The mute the Core asked for (the `audio.out.N.mute` control), restored afterwards. */
  userMute: (ch: number) => boolean;
  /** Is a design assigned (a peripheral without a design is not muted)? */
  hasDesign: () => boolean;
}

export class FailoverMute {
  private muted = false;

  constructor(private readonly o: FailoverMuteOptions) {}

  get active(): boolean {
    return this.muted;
  }

  /** At start: a peripheral with a design and no Core yet stays muted until one connects. */
  init(coreConnected: boolean): void {
    this.apply(!coreConnected && this.o.hasDesign());
  }

  onPresence(ev: CorePresenceEvent): void {
    this.apply(ev.event === 'core-lost' && this.o.hasDesign());
  }

  private apply(mute: boolean): void {
    if (mute === this.muted) return;
    this.muted = mute;
    for (let ch = 0; ch < this.o.outputs; ch++) this.o.setMute(ch, mute || this.o.userMute(ch));
  }
}

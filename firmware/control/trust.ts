/**
 * Core trust ("secure communication"): which Cores may use the control link.
 *
 * The lists live in DeviceState (trustedCores / pendingCores / declinedCores), keyed by the
 * SHA-256 fingerprint of the Core's TLS client certificate (node:crypto form 'AB:CD:…').
 *
 *   - Trusted list empty (secure communication off): plaintext and TLS are both served, as on
 *     the vendor's devices. A TLS Core that is not yet known is recorded as pending. The first
 *     Core that claims the peripheral (Design.Assign) over TLS while the trusted list is empty
 *     becomes trusted automatically: secure communication is then on.
 *   - Trusted list non-empty (secure mode): plaintext is refused; only trusted Cores are served;
 *     an unknown Core is recorded as pending and refused until an administrator trusts it.
 *   - Declined Cores are always refused.
 *
 * `decideConnection` is pure; the admin functions (`trustCore`, `declineCore`, `forgetCore`) go
 * through StateStore.update and are what the Peripheral Manager calls.
 */
import type { CoreCertRef, DeviceState, StateStore } from '../config/state-store.js';

export type Transport = 'plain' | 'tls';

export type TrustVerdict =
  | { allow: true; trusted: boolean; recordPending: boolean }
  | {
      allow: false;
      reason: 'declined' | 'pending' | 'plaintext-in-secure-mode' | 'no-certificate';
      recordPending: boolean;
    };

export function secureMode(state: Readonly<DeviceState>): boolean {
  return state.trustedCores.length > 0;
}

const has = (list: readonly CoreCertRef[], fp: string): boolean => list.some((c) => c.fingerprint256 === fp);

export function decideConnection(
  state: Readonly<DeviceState>,
  transport: Transport,
  fingerprint256: string | null,
): TrustVerdict {
  const secure = secureMode(state);
  if (transport === 'plain') {
    return secure
      ? { allow: false, reason: 'plaintext-in-secure-mode', recordPending: false }
      : { allow: true, trusted: false, recordPending: false };
  }
  if (!fingerprint256) {
    return secure
      ? { allow: false, reason: 'no-certificate', recordPending: false }
      : { allow: true, trusted: false, recordPending: false };
  }
  if (has(state.declinedCores, fingerprint256))
    return { allow: false, reason: 'declined', recordPending: false };
  if (has(state.trustedCores, fingerprint256)) return { allow: true, trusted: true, recordPending: false };
  const recordPending = !has(state.pendingCores, fingerprint256);
  return secure
    ? { allow: false, reason: 'pending', recordPending }
    : { allow: true, trusted: false, recordPending };
}

/** Normalise a fingerprint to node:crypto's form (upper-case hex pairs joined by ':'). */
export function normaliseFingerprint(fp: string): string {
  const hex = fp.replace(/[^0-9a-fA-F]/g, '').toUpperCase();
  if (hex.length !== 64) throw new RangeError('a SHA-256 fingerprint has 32 bytes');
  return hex.match(/../g)!.join(':');
}

function without(list: CoreCertRef[], fp: string): CoreCertRef[] {
  return list.filter((c) => c.fingerprint256 !== fp);
}

function entry(list: readonly CoreCertRef[][], fp: string): CoreCertRef | undefined {
  for (const l of list) {
    const e = l.find((c) => c.fingerprint256 === fp);
    if (e) return e;
  }
  return undefined;
}

/** Record a Core as pending (no change when it is already on any list). */
export function recordPending(
  store: StateStore,
  core: { name: string; fingerprint256: string },
  nowIso: string,
): Promise<Readonly<DeviceState>> {
  const fp = normaliseFingerprint(core.fingerprint256);
  return store.update((s) => {
    if (entry([s.trustedCores, s.pendingCores, s.declinedCores], fp)) return;
    s.pendingCores.push({ name: core.name, fingerprint256: fp, addedAt: nowIso });
  });
}

type CoreList = 'trustedCores' | 'pendingCores' | 'declinedCores';

/** Put a Core on `target` and off the other two lists (a no-op when it is already there). */
function moveCore(
  store: StateStore,
  core: { name?: string; fingerprint256: string },
  nowIso: string,
  target: 'trustedCores' | 'declinedCores',
): Promise<Readonly<DeviceState>> {
  const fp = normaliseFingerprint(core.fingerprint256);
  return store.update((s) => {
    const known = entry([s.trustedCores, s.pendingCores, s.declinedCores], fp);
    if (has(s[target], fp)) return;
    for (const list of ['trustedCores', 'pendingCores', 'declinedCores'] as CoreList[]) {
      if (list !== target) s[list] = without(s[list], fp);
    }
    s[target].push({ name: core.name ?? known?.name ?? 'core', fingerprint256: fp, addedAt: nowIso });
  });
}

/** Trust a Core (moves it out of pending/declined). */
export function trustCore(
  store: StateStore,
  core: { name?: string; fingerprint256: string },
  nowIso: string,
): Promise<Readonly<DeviceState>> {
  return moveCore(store, core, nowIso, 'trustedCores');
}

/** Decline a Core (moves it out of trusted/pending); its connections are then refused. */
export function declineCore(
  store: StateStore,
  core: { name?: string; fingerprint256: string },
  nowIso: string,
): Promise<Readonly<DeviceState>> {
  return moveCore(store, core, nowIso, 'declinedCores');
}

/** Remove a Core from every list. With all lists empty, secure communication is off again. */
export function forgetCore(store: StateStore, fingerprint256: string): Promise<Readonly<DeviceState>> {
  const fp = normaliseFingerprint(fingerprint256);
  return store.update((s) => {
    s.trustedCores = without(s.trustedCores, fp);
    s.pendingCores = without(s.pendingCores, fp);
    s.declinedCores = without(s.declinedCores, fp);
  });
}

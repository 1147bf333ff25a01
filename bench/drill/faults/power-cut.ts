/**
 * Power cut at a random point of the install: pick an installer phase (and a
 * small extra delay) from a seeded generator, watch the device's JSON log for
 * the installer's `state` transition into that phase, then SIGKILL the whole
 * process group. The supervisor powers it back on.
 */
import type { Supervisor } from '../supervisor.js';

export const CUT_PHASES = ['verified', 'writing', 'written', 'rebooting', 'trial'] as const;

/** Deterministic PRNG (mulberry32): same seed, same cut points. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface CutPlan {
  phase: (typeof CUT_PHASES)[number];
  delayMs: number;
}

export function planCut(rand: () => number): CutPlan {
  const phase = CUT_PHASES[Math.floor(rand() * CUT_PHASES.length)] ?? 'writing';
  return { phase, delayMs: Math.floor(rand() * 40) };
}

/**
 * Arm a cut on one device: resolves with what happened ('cut' with the phase,
 * or 'missed' if the install never reached the phase before `disarm`).
 */
export function armPowerCut(
  sup: Supervisor,
  plan: CutPlan,
  onCut: (detail: string) => void,
): { disarm: () => void } {
  let done = false;
  const onLog = (rec: Record<string, unknown>): void => {
    if (done) return;
    if (rec['event'] !== 'state' || rec['to'] !== plan.phase) return;
    done = true;
    sup.off('log', onLog);
    timer = setTimeout(() => {
      timer = null;
      if (sup.powerCut()) {
        onCut(`power cut in phase ${plan.phase} (+${plan.delayMs} ms)`);
        return;
      }
      // The device was between runs (it had just exited 75 to reboot into the new slot):
      // the power goes as the next run starts, i.e. during the reboot.
      onStart = (e: { state: string }): void => {
        if (e.state !== 'starting' || !onStart) return;
        sup.off('transition', onStart);
        onStart = null;
        if (sup.powerCut())
          onCut(`power cut in phase ${plan.phase} (+${plan.delayMs} ms, during the reboot)`);
      };
      sup.on('transition', onStart);
    }, plan.delayMs);
  };
  let timer: NodeJS.Timeout | null = null;
  let onStart: ((e: { state: string }) => void) | null = null;
  sup.on('log', onLog);
  return {
    disarm: () => {
      done = true;
      sup.off('log', onLog);
      if (timer) clearTimeout(timer);
      if (onStart) sup.off('transition', onStart);
      onStart = null;
    },
  };
}

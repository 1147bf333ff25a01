/**
 * A meter provider for the virtual board: per-channel levels in dBFS that wander like program
 * material, computed from "now" (no timers, no state besides the channel count).
 */
export function createDemoMeters(channels: number, nowMs: () => number): () => number[] {
  return () => {
    const t = nowMs() / 1000;
    const out: number[] = [];
    for (let ch = 0; ch < channels; ch++) {
      const slow = Math.sin(t * 0.7 + ch * 1.3);
      const fast = Math.sin(t * 5.3 + ch * 0.4) * Math.sin(t * 2.1 + ch);
      out.push(Math.round((-24 + slow * 10 + fast * 8) * 10) / 10);
    }
    return out;
  };
}

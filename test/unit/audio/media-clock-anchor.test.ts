/**
 * The free-running media clock agrees with the system clock to well under a millisecond: every
 * reading of hrtime + anchor - TAI lies in [Date.now(), Date.now() + 1 ms) (Date.now() truncates),
 * within 50 us. Also in fresh processes (the built module, no loaders): there the earlier anchor,
 * which read the monotonic clock first and then `performance` (loaded lazily, ~1 ms later), came
 * out 1..2 ms ahead, so two processes on one host disagreed by that much.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  anchorSkewNs,
  createFreeRunningClock,
  systemAnchorNs,
  TAI_UTC_OFFSET_S,
  type MediaClockStatus,
} from '../../../firmware/audio/media-clock.js';
import { withMappingCheck } from '../../../firmware/audio/ptp.js';

const TAI_NS = BigInt(TAI_UTC_OFFSET_S) * 1_000_000_000n;

/** min/max of (media clock - TAI) - Date.now() in ms over ~100 ms of readings. */
function probe(anchorNs: bigint): { min: number; max: number; kept: number } {
  let min = Infinity;
  let max = -Infinity;
  let kept = 0;
  const until = Date.now() + 100;
  while (Date.now() < until) {
    const before = process.hrtime.bigint();
    const wallMs = Date.now();
    const after = process.hrtime.bigint();
    if (after - before > 20_000n) continue; // preempted between the readings
    const utcNs = (before + after) / 2n + anchorNs - TAI_NS;
    const diffMs = Number(utcNs - BigInt(wallMs) * 1_000_000n) / 1e6;
    min = Math.min(min, diffMs);
    max = Math.max(max, diffMs);
    kept++;
  }
  return { min, max, kept };
}

t.test('anchor agrees with Date.now() to within 50 us', async (t) => {
  const { min, max, kept } = probe(createFreeRunningClock().anchorNs);
  t.ok(kept > 1000, `${kept} readings`);
  t.ok(min >= -0.05, `media clock never behind the wall clock's millisecond (min ${min.toFixed(4)} ms)`);
  t.ok(max <= 1.05, `never more than one millisecond ahead of it (max ${max.toFixed(4)} ms)`);
});

t.test('two anchors taken apart agree', async (t) => {
  const a = systemAnchorNs();
  await new Promise((r) => setTimeout(r, 20));
  const b = systemAnchorNs();
  const d = Number(a - b) / 1e3;
  t.ok(Math.abs(d) < 50, `anchors ${d.toFixed(1)} us apart`);
});

const BUILT = fileURLToPath(new URL('../../../dist/firmware/audio/media-clock.js', import.meta.url));
t.test(
  'in fresh processes too (the built module, as the runtime starts)',
  { skip: !existsSync(BUILT) && 'not built' },
  async (t) => {
    const code = `
    const { createFreeRunningClock, TAI_UTC_OFFSET_S } = await import(${JSON.stringify(BUILT)});
    const anchorNs = createFreeRunningClock().anchorNs;
    const TAI_NS = BigInt(TAI_UTC_OFFSET_S) * 1000000000n;
    let min = Infinity, max = -Infinity;
    const until = Date.now() + 50;
    while (Date.now() < until) {
      const b = process.hrtime.bigint(); const w = Date.now(); const a = process.hrtime.bigint();
      if (a - b > 20000n) continue;
      const d = Number((b + a) / 2n + anchorNs - TAI_NS - BigInt(w) * 1000000n) / 1e6;
      if (d < min) min = d; if (d > max) max = d;
    }
    console.log(JSON.stringify({ min, max }));`;
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
      t.equal(r.status, 0, r.stderr);
      const { min, max } = JSON.parse(r.stdout) as { min: number; max: number };
      t.ok(
        min >= -0.05 && max <= 1.05,
        `process ${i + 1}: wall clock offset ${min.toFixed(4)}..${max.toFixed(4)} ms`,
      );
    }
  },
);

t.test('anchorSkewNs: ~0 for a good anchor, the step for a stepped one', async (t) => {
  const a = systemAnchorNs();
  const skews = (anchor: bigint): number[] => {
    const out: number[] = [];
    for (let i = 0; i < 200; i++) {
      const k = anchorSkewNs(anchor);
      if (k !== null) out.push(Number(k) / 1e6);
    }
    return out;
  };
  const good = skews(a);
  t.ok(good.length > 100, `${good.length} readings kept`);
  t.ok(
    good.every((k) => Math.abs(k) <= 0.55),
    `good anchor within half a millisecond (${Math.min(...good).toFixed(3)}..${Math.max(...good).toFixed(3)} ms)`,
  );
  const stepped = skews(a + 5_000_000n);
  t.ok(
    stepped.every((k) => k >= 4.45 && k <= 5.55),
    `a 5 ms step shows as 5 +- 0.5 ms (${Math.min(...stepped).toFixed(3)}..${Math.max(...stepped).toFixed(3)} ms)`,
  );
});

t.test('withMappingCheck: a media clock off the system clock is never locked', async (t) => {
  const locked: MediaClockStatus = {
    state: 'locked',
    source: 'ptp4l',
    domain: 0,
    offsetNs: 120,
    pathDelayNs: 5000,
    grandmaster: '00-11-22-ff-fe-33-44-55:0',
    portState: 'SLAVE',
    detail: 'locked to the grandmaster',
  };
  t.same(withMappingCheck(locked, 300_000n), locked, '0.3 ms: as ptp4l says');
  t.same(withMappingCheck(locked, null), locked, 'not measured: unchanged');
  const off = withMappingCheck(locked, -37_000_000_000n);
  t.equal(off.state, 'unlocked', 'stepped by 37 s: unlocked');
  t.match(off.detail, /-37000\.0 ms off the system clock/);
  t.equal(off.grandmaster, locked.grandmaster, 'the rest of the status kept');
  t.equal(
    withMappingCheck({ ...locked, state: 'master' }, 9_000_000n).state,
    'master',
    'a grandmaster is the reference',
  );
  t.equal(withMappingCheck({ ...locked, state: 'locking' }, 2_000_000n).state, 'unlocked');
});

/**
 * PeriodTicker wakes the event loop per period through a worker's Atomics.wait, and the virtual
 * card uses it (`periodWakes`) to deliver one period per wake as a real card does. Counts only,
 * no timing assertions: a wake count is bounded by elapsed time, the delivery count by the card.
 */
import t from 'tap';
import { createSystemClock } from '../../../firmware/clock/clock.js';
import { MIN_TICK_PERIOD_US, startPeriodTicker } from '../../../firmware/clock/period-ticker.js';
import { VirtualAudioBinding } from '../../../firmware/audio/audio-binding.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('periods out of range are refused', async (t) => {
  for (const p of [0, -1, MIN_TICK_PERIOD_US - 1, Number.NaN, Infinity])
    t.throws(() => startPeriodTicker(p, () => undefined), RangeError, `periodUs ${p}`);
});

t.test('wakes while running, never after stop', async (t) => {
  let calls = 0;
  const tk = startPeriodTicker(500, () => calls++);
  await tk.ready;
  const t0 = performance.now();
  await sleep(200);
  const elapsedMs = performance.now() - t0;
  t.ok(calls > 20, `woke ${calls} times in ${elapsedMs.toFixed(0)} ms`);
  // Boundaries are absolute and wakes coalesce: never more than one per period.
  // Boundaries count from the worker's start, a little before `ready` resolved.
  t.ok(calls <= elapsedMs * 2 + 3, 'at most one wake per period');
  t.equal(tk.error, null, 'no worker error');
  t.equal(tk.wakes, calls, 'wakes counted');
  tk.stop();
  tk.stop();
  const atStop = calls;
  await sleep(30);
  t.equal(calls, atStop, 'no wake after stop');
});

t.test('virtual card with period wakes: every period delivered, in order, none after close', async (t) => {
  const card = new VirtualAudioBinding({
    clock: createSystemClock(),
    periodWakes: true,
    generator: (f) => f,
  });
  // Measured from before the card's own start, so `elapsed` bounds what it can have made.
  const t0 = performance.now();
  const cap = card.openCapture({ device: 'v', channels: 1, periodFrames: 16 });
  const firsts: number[] = [];
  let badSize = 0;
  let last = -1;
  cap.onData((s, n) => {
    if (n !== 16) badSize++;
    firsts.push(s[0]!);
    last = s[n - 1]!;
  });
  // The ticker's worker needs a moment to start (longer under a TypeScript loader).
  for (let i = 0; i < 500 && firsts.length < 150; i++) await sleep(10);
  await cap.close();
  const elapsed = performance.now() - t0;
  const got = firsts.length;
  t.ok(got >= 150, `${got} periods delivered`);
  t.ok(got <= (elapsed * 48) / 16 + 1, `no more than due: ${got} in ${elapsed.toFixed(0)} ms (3 per ms)`);
  t.equal(badSize, 0, 'every delivery is one 16-frame period');
  t.ok(
    firsts.every((f, i) => f === i * 16),
    'periods contiguous: each starts where the last ended',
  );
  t.equal(last, got * 16 - 1, 'last sample is the last frame delivered');
  await sleep(20);
  t.equal(firsts.length, got, 'nothing delivered after close');

  // Playback with period wakes plays what was queued and counts the underrun when it runs dry.
  const played: number[] = [];
  const card2 = new VirtualAudioBinding({
    clock: createSystemClock(),
    periodWakes: true,
    onPlay: (x, n) => {
      for (let i = 0; i < n; i++) played.push(x[i]!);
    },
  });
  const pb = card2.openPlayback({ device: 'v', channels: 1, periodFrames: 16 });
  const q = Float32Array.from({ length: 480 }, (_, i) => i);
  pb.write(q, 480);
  for (let i = 0; i < 500 && pb.slips().underruns === 0; i++) await sleep(10);
  await pb.close();
  t.same(played.slice(0, 480), [...q], 'queued frames played in order');
  t.equal(pb.slips().underruns, 1, 'the drained queue is one underrun');
});

/**
 * Worker side of period-ticker.ts: sleeps in Atomics.wait (fractional ms, so finer than any event
 * loop timer) to each period boundary, counts the period in the shared word and wakes the owner.
 * Boundaries are absolute (t0 + n * period), so a late wake does not shift the next one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { TICK_COUNT, TICK_STOP, type PeriodTickerData } from './period-ticker.js';

const d = workerData as PeriodTickerData;
const ctl = new Int32Array(d.control);
const periodNs = BigInt(Math.round(d.periodUs * 1000));
parentPort?.postMessage('ready');
let next = process.hrtime.bigint() + periodNs;
while (Atomics.load(ctl, TICK_STOP) === 0) {
  const waitNs = Number(next - process.hrtime.bigint());
  // The stop word doubles as the gate: stop() stores 1 and notifies it.
  if (waitNs > 0) Atomics.wait(ctl, TICK_STOP, 0, waitNs / 1e6);
  if (Atomics.load(ctl, TICK_STOP) !== 0) break;
  const now = process.hrtime.bigint();
  if (now < next) continue;
  // A wake that slept through several boundaries counts one tick and skips to the next boundary.
  while (next <= now) next += periodNs;
  Atomics.add(ctl, TICK_COUNT, 1);
  Atomics.notify(ctl, TICK_COUNT);
}

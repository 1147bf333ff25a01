/**
 * Power-cut arming against a stand-in supervisor (an event emitter with the
 * same `log`/`transition` events and `powerCut()`): cuts after the chosen
 * phase, not before; when the device is between runs at that moment (it just
 * exited to reboot), the cut lands as the next run starts; disarm cancels.
 */
import { EventEmitter } from 'node:events';
import t from 'tap';
import { armPowerCut, planCut, seededRandom } from '../../../bench/drill/faults/power-cut.js';
import type { Supervisor } from '../../../bench/drill/supervisor.js';

class FakeSup extends EventEmitter {
  alive = true;
  cuts = 0;
  powerCut(): boolean {
    if (!this.alive) return false;
    this.cuts++;
    return true;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('plans are deterministic per seed and within the phases', async (t) => {
  const a = seededRandom(11);
  const b = seededRandom(11);
  for (let i = 0; i < 20; i++) t.same(planCut(a), planCut(b));
  const p = planCut(seededRandom(3));
  t.ok(p.delayMs >= 0 && p.delayMs < 40);
});

t.test('cuts only after the chosen phase is logged', async (t) => {
  const sup = new FakeSup();
  const seen: string[] = [];
  armPowerCut(sup as unknown as Supervisor, { phase: 'writing', delayMs: 5 }, (d) => seen.push(d));
  sup.emit('log', { event: 'state', to: 'verified' });
  await sleep(20);
  t.equal(sup.cuts, 0);
  sup.emit('log', { event: 'state', to: 'writing' });
  sup.emit('log', { event: 'state', to: 'writing' });
  await sleep(20);
  t.equal(sup.cuts, 1, 'one cut');
  t.match(seen[0], /phase writing \(\+5 ms\)/);
});

t.test('a device between runs is cut as its next run starts', async (t) => {
  const sup = new FakeSup();
  const seen: string[] = [];
  armPowerCut(sup as unknown as Supervisor, { phase: 'rebooting', delayMs: 1 }, (d) => seen.push(d));
  sup.emit('log', { event: 'state', to: 'rebooting' });
  sup.alive = false; // exited 75
  await sleep(15);
  t.equal(sup.cuts, 0);
  sup.emit('transition', { state: 'restarting' });
  sup.alive = true;
  sup.emit('transition', { state: 'starting' });
  t.equal(sup.cuts, 1);
  t.match(seen[0], /during the reboot/);
  sup.emit('transition', { state: 'starting' });
  t.equal(sup.cuts, 1, 'only once');
});

t.test('disarm cancels a pending cut', async (t) => {
  const sup = new FakeSup();
  const arm = armPowerCut(sup as unknown as Supervisor, { phase: 'trial', delayMs: 10 }, () => undefined);
  sup.emit('log', { event: 'state', to: 'trial' });
  arm.disarm();
  await sleep(30);
  t.equal(sup.cuts, 0);
  t.equal(sup.listenerCount('log') + sup.listenerCount('transition'), 0, 'no listeners left');
});

import t from 'tap';
import { FailoverMute } from '../../../firmware/control/failover-mute.js';

function rig(hasDesign = true) {
  const engine = [false, false];
  const user = [false, true];
  let design = hasDesign;
  const m = new FailoverMute({
    outputs: 2,
    setMute: (ch, on) => {
      engine[ch] = on;
    },
    userMute: (ch) => user[ch]!,
    hasDesign: () => design,
  });
  return { m, engine, user, setDesign: (v: boolean) => (design = v) };
}

const lost = { event: 'core-lost' as const, core: 'qcore-a', cause: 'owner connection closed' };
const back = { event: 'core-connected' as const, core: 'qcore-b', cause: 'design assigned' };

t.test('outputs muted while the Core is gone, restored to the user mute after', async (t) => {
  const r = rig();
  r.m.init(true);
  t.same(r.engine, [false, false], 'a Core is connected: nothing muted');
  r.m.onPresence(lost);
  t.equal(r.m.active, true);
  t.same(r.engine, [true, true], 'all outputs muted during the switch');
  r.m.onPresence(back);
  t.same(r.engine, [false, true], 'each output back to its mute control');
});

t.test('no design: never muted; start without a Core: muted until one connects', async (t) => {
  const a = rig(false);
  a.m.init(false);
  a.m.onPresence(lost);
  t.same(a.engine, [false, false]);
  const b = rig(true);
  b.m.init(false);
  t.same(b.engine, [true, true]);
  b.m.onPresence(back);
  t.same(b.engine, [false, true]);
});

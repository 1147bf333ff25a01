import t from 'tap';
import { RedundancyFsm } from '../../../bench/core/redundancy.js';

const tick = (nowMs: number) => ({ kind: 'tick' as const, nowMs });
const peer = (nowMs: number, peerActive: boolean) => ({ kind: 'peer' as const, nowMs, peerActive });

t.test('a Core without a peer is active at once', async (t) => {
  const f = new RedundancyFsm({ role: 'primary', hasPeer: false, startMs: 0 });
  t.match(f.handle(tick(0)), { from: 'starting', to: 'active', cause: 'no redundant peer' });
  t.equal(f.handle(tick(10_000)), null, 'stays active');
});

t.test('primary and backup start together: primary active, backup standby', async (t) => {
  const p = new RedundancyFsm({ role: 'primary', hasPeer: true, startMs: 0 });
  const b = new RedundancyFsm({ role: 'backup', hasPeer: true, startMs: 0 });
  // Both hear each other (not active yet) every second.
  for (let ms = 0; ms < 1500; ms += 500) {
    p.handle(peer(ms, b.state === 'active'));
    b.handle(peer(ms, p.state === 'active'));
    t.equal(p.handle(tick(ms)), null, 'primary waits out its start window (half the silence)');
  }
  t.match(p.handle(tick(1500)), { to: 'active', cause: 'primary, peer not active' });
  t.match(b.handle(peer(1500, true)), { to: 'standby', cause: 'peer is active' });
});

t.test('backup takes over after silenceMs of peer silence, not before', async (t) => {
  const b = new RedundancyFsm({ role: 'backup', hasPeer: true, startMs: 0, silenceMs: 3000 });
  b.handle(peer(500, true));
  t.equal(b.state, 'standby');
  for (let ms = 1000; ms <= 10_000; ms += 1000) b.handle(peer(ms, true));
  t.equal(b.handle(tick(12_999)), null, 'silent 2.999 s: still standby');
  t.match(b.handle(tick(13_000)), {
    from: 'standby',
    to: 'active',
    cause: 'peer silent for 3000 ms',
    atMs: 13_000,
  });
});

t.test('a primary that restarts while the backup is active stands by', async (t) => {
  const p = new RedundancyFsm({ role: 'primary', hasPeer: true, startMs: 100_000 });
  t.match(p.handle(peer(100_500, true)), { to: 'standby' });
  t.equal(p.handle(tick(101_000)), null);
  // ... and takes over again when the backup dies.
  t.match(p.handle(tick(103_500)), { to: 'active' });
});

t.test('a backup alone at start (primary dead) goes active after its window', async (t) => {
  const b = new RedundancyFsm({ role: 'backup', hasPeer: true, startMs: 0, silenceMs: 3000 });
  t.equal(b.handle(tick(2999)), null);
  t.match(b.handle(tick(3000)), { to: 'active', cause: 'peer silent at start' });
});

t.test('split brain: an active backup hearing an active primary yields; the primary does not', async (t) => {
  const b = new RedundancyFsm({ role: 'backup', hasPeer: true, startMs: 0 });
  b.handle(tick(3000));
  t.equal(b.state, 'active');
  t.match(b.handle(peer(4000, true)), { to: 'standby', cause: 'primary is active too' });
  const p = new RedundancyFsm({ role: 'primary', hasPeer: true, startMs: 0 });
  p.handle(tick(3000));
  t.equal(p.handle(peer(4000, true)), null);
  t.equal(p.state, 'active');
});

t.test('a backup hearing a starting primary waits in standby', async (t) => {
  const b = new RedundancyFsm({ role: 'backup', hasPeer: true, startMs: 0 });
  b.handle(peer(1000, false));
  b.handle(peer(2000, false));
  t.match(b.handle(tick(3000)), { to: 'standby', cause: 'backup, primary present' });
});

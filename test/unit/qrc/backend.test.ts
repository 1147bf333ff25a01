/**
 * MemoryQrcBackend obeys contract D: typed errors that change nothing, change and status events,
 * snapshots that callers cannot mutate. Plus the pure change group.
 */
import t from 'tap';
import { MemoryQrcBackend, QrcBackendError } from '../../../bench/core/qrc/backend.js';
import { QrcChangeGroup } from '../../../bench/core/qrc/change-group.js';
import { sampleDesign } from '../../../bench/core/qrc/sample-design.js';

t.test('sets, typed errors, events', async (t) => {
  const b = sampleDesign();
  const changes: unknown[] = [];
  const off = b.onChange((c) => changes.push(c));
  await b.setNamed('MainGain', 3, 1);
  await b.setComponent('Gain1', 'mute', 'true');
  await b.setNamed('MainGain', 3); // same value: no event
  t.same(changes, [{ name: 'MainGain' }, { component: 'Gain1', name: 'mute' }]);
  t.match(b.sets, [
    { name: 'MainGain', value: 3, ramp: 1 },
    { component: 'Gain1', name: 'mute', value: true },
    { name: 'MainGain' },
  ]);

  const before = JSON.stringify([b.namedControls(), b.componentControls('Gain1')]);
  const expectCode = async (p: Promise<void>, code: string, what: string): Promise<void> => {
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(err instanceof QrcBackendError, `${what}: a QrcBackendError`);
    t.equal((err as QrcBackendError).code, code, what);
  };
  await expectCode(b.setNamed('Nope', 1), 'unknown-control', 'unknown named');
  await expectCode(b.setComponent('Nope', 'gain', 1), 'unknown-component', 'unknown component');
  await expectCode(b.setComponent('Gain1', 'nope', 1), 'unknown-control', 'unknown component control');
  await expectCode(b.setNamed('Meter', 1), 'read-only', 'read-only');
  await expectCode(b.setNamed('MainGain', 21), 'bad-value', 'above max');
  await expectCode(b.setNamed('MainGain', ''), 'bad-value', 'empty string is not a number');
  await expectCode(b.setNamed('MainMute', 'yes'), 'bad-value', 'not a boolean');
  await expectCode(b.setNamed('Label', 5), 'bad-value', 'not a string');
  t.equal(
    JSON.stringify([b.namedControls(), b.componentControls('Gain1')]),
    before,
    'errors changed nothing',
  );
  off();
  await b.setNamed('MainGain', 4);
  t.equal(changes.length, 2, 'unsubscribed');

  const statuses: string[] = [];
  b.onStatus((s) => statuses.push(s.State));
  b.setStatus({ State: 'Standby' });
  t.same(statuses, ['Standby']);
  const s = b.status();
  s.Status.Code = 99;
  t.equal(b.status().Status.Code, 0, 'status() is a copy');
  const comps = b.components();
  comps[0]!.Properties.push({ Name: 'x', Value: 'y' });
  t.equal(b.components()[0]!.Properties.length, 1, 'components() is a copy');
  t.equal(b.componentControls('Nope'), null, 'unknown component: null');
  t.throws(
    () =>
      new MemoryQrcBackend({
        named: [
          { Name: 'a', Value: 1 },
          { Name: 'a', Value: 2 },
        ],
      }),
    RangeError,
  );
});

t.test('change group: new counts as changed, only differences after, vanished controls drop', async (t) => {
  const g = new QrcChangeGroup('x');
  const state = new Map<string, { Name: string; Value: number; String: string; Position: number }>([
    ['a', { Name: 'a', Value: 1, String: '1', Position: 0 }],
    ['b', { Name: 'b', Value: 2, String: '2', Position: 0 }],
  ]);
  const read = (r: { component?: string; name: string }) =>
    state.get(r.component ? `${r.component}.${r.name}` : r.name);
  t.equal(g.add([{ name: 'a' }, { name: 'b' }, { name: 'a' }]), 2, 'duplicates ignored');
  t.equal(g.poll(read).length, 2);
  t.same(g.poll(read), []);
  state.set('b', { Name: 'b', Value: 2, String: '2.0', Position: 0 });
  t.same(g.poll(read), [{ Name: 'b', Value: 2, String: '2.0', Position: 0 }], 'a String change counts');
  state.delete('a');
  t.same(g.poll(read), []);
  t.equal(g.size, 1, 'vanished control dropped');
  state.set('C.x', { Name: 'x', Value: 0, String: '0', Position: 0 });
  g.add([{ component: 'C', name: 'x' }]);
  t.same(g.poll(read), [{ Component: 'C', Name: 'x', Value: 0, String: '0', Position: 0 }]);
  g.invalidate();
  t.equal(g.poll(read).length, 2);
  g.remove([{ name: 'b' }]);
  g.clear();
  t.equal(g.size, 0);
});

/** Scenario parsing: shipped scenarios load, bad input gives typed errors with JSON Pointers, results are frozen. */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { findProjectRoot } from '../../../firmware/paths.js';
import {
  DrillError,
  FAULT_KINDS,
  loadScenario,
  parseScenario,
  selectDevices,
  stepGroups,
} from '../../../bench/drill/scenario.js';

const root = findProjectRoot(process.env);
const minimal = { name: 'x', peripherals: 3, steps: [{ fault: 'none', devices: 'all' }] };

function issuesOf(v: unknown): Array<{ path: string; message: string }> {
  try {
    parseScenario(v);
  } catch (err) {
    if (err instanceof DrillError && err.code === 'DRILL_ERR_SCENARIO') return err.issues;
    throw err;
  }
  throw new Error('parsed, expected a DrillError');
}

t.test('ci-small covers every fault kind on at least 5 peripherals', async (t) => {
  const sc = await loadScenario(join(root, 'bench/drill/scenarios/ci-small.json'));
  t.ok(sc.peripherals >= 5);
  const kinds = new Set(sc.steps.map((s) => s.fault));
  for (const k of FAULT_KINDS) if (k !== 'none') t.ok(kinds.has(k), `has ${k}`);
  t.ok(Object.isFrozen(sc) && Object.isFrozen(sc.steps[0]), 'deep-frozen');
  t.equal(sc.addressPrefix, '127.0.8');
  t.equal(
    sc.steps.find((s) => s.fault === 'network-cut')?.delivery,
    'fetch',
    'network cut delivers by fetch',
  );
});

t.test('bench scenarios load, --peripherals overrides the count', async (t) => {
  for (const n of [10, 50, 100]) {
    const sc = await loadScenario(join(root, `bench/drill/scenarios/bench-${n}.json`));
    t.equal(sc.peripherals, n);
  }
  const sc = await loadScenario(join(root, 'bench/drill/scenarios/bench-10.json'), { peripherals: 3 });
  t.equal(sc.peripherals, 3);
});

t.test('defaults', async (t) => {
  const sc = parseScenario(minimal);
  t.equal(sc.addressPrefix, '127.0.0');
  t.equal(sc.firstHost, 2);
  t.same(sc.steps[0]?.policy, { kind: 'all-at-once', maxInFlight: 16 });
  t.equal(sc.steps[0]?.delivery, 'push');
  t.equal(sc.steps[0]?.parallel, false);
  t.equal(sc.steps[0]?.name, '1: none');
});

t.test('schema errors carry JSON Pointers', async (t) => {
  t.same(
    issuesOf({ ...minimal, name: undefined }).map((i) => i.path),
    ['/name'],
  );
  t.ok(issuesOf({ ...minimal, extra: 1 }).some((i) => i.path === '/extra'));
  t.ok(issuesOf({ ...minimal, peripherals: 0 }).some((i) => i.path === '/peripherals'));
  t.ok(
    issuesOf({ ...minimal, steps: [{ fault: 'meteor', devices: 'all' }] }).some(
      (i) => i.path === '/steps/0/fault',
    ),
  );
  t.ok(
    issuesOf({ ...minimal, addressPrefix: '10.0.0' }).some((i) => i.path === '/addressPrefix'),
    'loopback only',
  );
  t.ok(
    issuesOf({
      ...minimal,
      steps: [{ fault: 'none', devices: 'all', policy: { kind: 'canary-waves' } }],
    }).some((i) => i.path.startsWith('/steps/0/policy')),
  );
  t.throws(() => parseScenario(null), { code: 'DRILL_ERR_SCENARIO' });
});

t.test('cross-step rules', async (t) => {
  t.ok(
    issuesOf({ ...minimal, steps: [{ fault: 'none', devices: [4] }] }).some(
      (i) => i.path === '/steps/0/devices',
    ),
  );
  t.ok(
    issuesOf({ ...minimal, steps: [{ fault: 'network-cut', devices: 'all', delivery: 'push' }] }).some(
      (i) => i.path === '/steps/0/delivery',
    ),
  );
  t.ok(
    issuesOf({ ...minimal, steps: [{ fault: 'none', devices: 'all', parallel: true }] }).some(
      (i) => i.path === '/steps/0/parallel',
    ),
  );
  t.ok(
    issuesOf({
      ...minimal,
      steps: [
        { fault: 'none', devices: [1, 2] },
        { fault: 'corrupt', devices: [2], parallel: true },
      ],
    }).some((i) => i.path === '/steps/1/devices' && /parallel step 0/.test(i.message)),
  );
  t.ok(issuesOf({ ...minimal, peripherals: 200, firstHost: 100 }).some((i) => i.path === '/firstHost'));
});

t.test('file errors are typed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drill-scenario-'));
  await writeFile(join(dir, 'bad.json'), '{ "name": ');
  await t.rejects(loadScenario(join(dir, 'bad.json')), { code: 'DRILL_ERR_SCENARIO', message: /not JSON/ });
  await t.rejects(loadScenario(join(dir, 'missing.json')), {
    code: 'DRILL_ERR_SCENARIO',
    message: /cannot read/,
  });
});

t.test('device selection and step groups', async (t) => {
  t.same(selectDevices('all', 3), [1, 2, 3]);
  t.same(selectDevices([3, 1, 3], 5), [1, 3]);
  t.same(
    selectDevices({ percent: 10 }, 100),
    Array.from({ length: 10 }, (_, i) => i + 1),
  );
  t.same(selectDevices({ percent: 10 }, 5), [1], 'at least one');
  const sc = parseScenario({
    ...minimal,
    steps: [
      { fault: 'none', devices: [1] },
      { fault: 'corrupt', devices: [2], parallel: true },
      { fault: 'none', devices: 'all' },
    ],
  });
  t.same(stepGroups(sc.steps), [[0, 1], [2]]);
});

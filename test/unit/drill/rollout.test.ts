/**
 * The rollout policy state machine (pure), status classification, and the
 * Rollout against fake devices: all at once, canary halt, refusal, lost
 * connections during a push, timeout, and resume from the journal after the
 * coordinator died.
 */
import { appendFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import {
  classifyStatus,
  planNext,
  planWaves,
  readJournal,
  Rollout,
  type ApiAnswer,
  type DeviceApi,
  type DeviceFirmwareStatus,
  type DeviceState,
  type RolloutPolicy,
  type RolloutTarget,
} from '../../../bench/core/rollout.js';
import { bundleDigest, createDevSigner, signAppBundle } from '../../../bench/core/signer.js';

const canary: RolloutPolicy = {
  kind: 'canary-waves',
  canary: 1,
  waveSize: 2,
  maxInFlight: 2,
  haltOnFailure: true,
};

t.test('waves', async (t) => {
  t.same(planWaves({ kind: 'all-at-once', maxInFlight: 3 }, 4), [[0, 1, 2, 3]]);
  t.same(planWaves(canary, 5), [[0], [1, 2], [3, 4]]);
  t.same(planWaves({ ...canary, canary: 0 }, 3), [[0, 1], [2]]);
  t.same(planWaves(canary, 0), []);
});

t.test('planNext: in-flight limit, waves in order, halt on failure', async (t) => {
  const all: RolloutPolicy = { kind: 'all-at-once', maxInFlight: 2 };
  t.same(planNext(all, ['pending', 'pending', 'pending']).start, [0, 1]);
  t.same(planNext(all, ['installing', 'pending', 'pending']).start, [1]);
  t.same(planNext(all, ['committed', 'committed', 'committed']), { start: [], halted: false, done: true });
  // Canary first; the next wave waits for it.
  t.same(planNext(canary, ['pending', 'pending', 'pending']).start, [0]);
  t.same(planNext(canary, ['installing', 'pending', 'pending']).start, []);
  t.same(planNext(canary, ['committed', 'pending', 'pending']).start, [1, 2]);
  // A failed canary halts the rest.
  const s: DeviceState[] = ['rolled-back', 'pending', 'pending'];
  t.same(planNext(canary, s), { start: [], halted: true, done: true });
  // Without haltOnFailure the rollout goes on.
  t.same(planNext({ ...canary, haltOnFailure: false }, s).start, [1, 2]);
  // A failure in a later wave halts the waves after it once it finished.
  t.same(planNext(canary, ['committed', 'refused', 'installing', 'pending']), {
    start: [],
    halted: false,
    done: false,
  });
  t.same(planNext(canary, ['committed', 'refused', 'committed', 'pending']).halted, true);
});

const st = (o: Partial<DeviceFirmwareStatus>): DeviceFirmwareStatus => ({
  version: '1.0.0',
  bootedSlot: 'a',
  primarySlot: 'a',
  phase: 'idle',
  securityVersion: 0,
  last: null,
  healthy: true,
  ...o,
});

t.test('classifyStatus', async (t) => {
  t.same(classifyStatus(st({ phase: 'writing' }), '2.0.0', 'd'), { kind: 'wait', detail: 'writing' });
  t.same(classifyStatus(st({}), '2.0.0', 'd'), { kind: 'idle' });
  t.same(classifyStatus(st({ version: '2.0.0', bootedSlot: 'b' }), '2.0.0', 'd'), {
    kind: 'wait',
    detail: 'trial',
  });
  t.same(classifyStatus(st({ version: '2.0.0', bootedSlot: 'b', primarySlot: 'b' }), '2.0.0', 'd'), {
    kind: 'final',
    state: 'committed',
    version: '2.0.0',
  });
  const rb = classifyStatus(
    st({
      last: { result: 'rolled-back', version: '2.0.0', manifestDigest: 'd', reason: 'unhealthy', atMs: 1 },
    }),
    '2.0.0',
    'd',
  );
  t.match(rb, { kind: 'final', state: 'rolled-back', version: '1.0.0', reason: 'unhealthy' });
  // An outcome of another bundle says nothing about this one.
  t.same(
    classifyStatus(
      st({ last: { result: 'rolled-back', version: '2.0.0', manifestDigest: 'other', atMs: 1 } }),
      '2.0.0',
      'd',
    ),
    { kind: 'idle' },
  );
  t.match(
    classifyStatus(
      st({ last: { result: 'committed', version: '2.0.0', manifestDigest: 'd', atMs: 1 } }),
      '2.0.0',
      'd',
    ),
    { kind: 'final', state: 'failed' },
    'committed but still on the old version',
  );
});

/** Fake devices: a push starts a job that commits (or rolls back / refuses) after a few status polls. */
class FakeFleet implements DeviceApi {
  readonly pushes = new Map<string, number>();
  readonly devices = new Map<
    string,
    { status: DeviceFirmwareStatus; polls: number; outcome: 'commit' | 'rollback' | null }
  >();
  constructor(
    ids: string[],
    private readonly digest: string,
    private readonly behaviour: (id: string) => 'commit' | 'rollback' | 'refuse' | 'drop' | 'dead' = () =>
      'commit',
  ) {
    for (const id of ids) this.devices.set(id, { status: st({}), polls: 0, outcome: null });
  }
  push(tg: RolloutTarget): Promise<ApiAnswer> {
    this.pushes.set(tg.id, (this.pushes.get(tg.id) ?? 0) + 1);
    const b = this.behaviour(tg.id);
    const d = this.devices.get(tg.id)!;
    if (b === 'refuse')
      return Promise.resolve({ status: 422, body: { code: 'UPDATE_ERR_SIGNATURE', message: 'bad' } });
    if (b === 'dead') return Promise.reject(new Error('ECONNREFUSED'));
    d.status = { ...d.status, phase: 'rebooting' };
    d.outcome = b === 'rollback' ? 'rollback' : 'commit';
    if (b === 'drop') return Promise.reject(new Error('socket hang up'));
    return Promise.resolve({ status: 202, body: { result: 'rebooting' } });
  }
  fetch(): Promise<ApiAnswer> {
    return Promise.reject(new Error('not used'));
  }
  status(tg: RolloutTarget): Promise<DeviceFirmwareStatus> {
    const d = this.devices.get(tg.id)!;
    if (this.behaviour(tg.id) === 'dead') return Promise.reject(new Error('ECONNREFUSED'));
    if (d.outcome && ++d.polls >= 3) {
      d.status =
        d.outcome === 'commit'
          ? st({
              version: '2.0.0',
              bootedSlot: 'b',
              primarySlot: 'b',
              last: { result: 'committed', version: '2.0.0', manifestDigest: this.digest, atMs: 1 },
            })
          : st({ last: { result: 'rolled-back', version: '2.0.0', manifestDigest: this.digest, atMs: 1 } });
      d.outcome = null;
    }
    return Promise.resolve(d.status);
  }
}

async function fixture(): Promise<{ dir: string; bundle: string; digest: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'drill-rollout-'));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'dist'), { recursive: true });
  await writeFile(join(tree, 'package.json'), JSON.stringify({ name: 'qperiph', version: '2.0.0' }));
  await writeFile(join(tree, 'dist', 'x.js'), 'export {};\n');
  const signer = await createDevSigner();
  const { path } = await signAppBundle({
    tree,
    out: join(dir, 'b.qpb'),
    version: '2.0.0',
    securityVersion: 1,
    signer,
  });
  return { dir, bundle: path, digest: await bundleDigest(path) };
}

const targets = (n: number): RolloutTarget[] =>
  Array.from({ length: n }, (_, i) => ({ id: `dev${i + 1}`, httpsUrl: `https://127.0.8.${i + 1}:8443` }));

function rollout(o: {
  bundle: string;
  api: DeviceApi;
  n: number;
  policy?: RolloutPolicy;
  journal?: string;
  timeoutMs?: number;
  clock?: { t: number };
}): Rollout {
  const clock = o.clock ?? { t: 0 };
  return new Rollout({
    bundle: o.bundle,
    expectVersion: '2.0.0',
    targets: targets(o.n),
    policy: o.policy ?? { kind: 'all-at-once', maxInFlight: 2 },
    clientTls: { cert: '', key: '' },
    timeoutMs: o.timeoutMs ?? 60_000,
    logger: createMemoryLogger(),
    api: o.api,
    now: () => clock.t,
    sleep: (ms) => {
      clock.t += ms;
      return Promise.resolve();
    },
    ...(o.journal ? { journalFile: o.journal } : {}),
  });
}

t.test('all at once: every device commits, progress is emitted', async (t) => {
  const f = await fixture();
  const api = new FakeFleet(['dev1', 'dev2', 'dev3'], f.digest);
  const r = rollout({ bundle: f.bundle, api, n: 3 });
  const seen: string[] = [];
  r.on('progress', (p: { id: string; state: string }) => seen.push(`${p.id}:${p.state}`));
  const res = await r.run();
  t.same(
    res.map((x) => x.state),
    ['committed', 'committed', 'committed'],
  );
  t.same(
    res.map((x) => x.version),
    ['2.0.0', '2.0.0', '2.0.0'],
  );
  t.ok(seen.includes('dev1:pushing') && seen.includes('dev1:installing') && seen.includes('dev1:committed'));
  t.same([...api.pushes.values()], [1, 1, 1], 'one push each');
});

t.test('canary rolls back: the rest are never pushed', async (t) => {
  const f = await fixture();
  const api = new FakeFleet(['dev1', 'dev2', 'dev3'], f.digest, (id) =>
    id === 'dev1' ? 'rollback' : 'commit',
  );
  const res = await rollout({ bundle: f.bundle, api, n: 3, policy: canary }).run();
  t.same(
    res.map((x) => x.state),
    ['rolled-back', 'pending', 'pending'],
  );
  t.match(res[1]?.reason, /halted/);
  t.equal(api.pushes.get('dev2'), undefined);
});

t.test('a refusal is final; a dropped push is watched; a dead device times out', async (t) => {
  const f = await fixture();
  const api = new FakeFleet(['dev1', 'dev2', 'dev3'], f.digest, (id) =>
    id === 'dev1' ? 'refuse' : id === 'dev2' ? 'drop' : 'dead',
  );
  const res = await rollout({
    bundle: f.bundle,
    api,
    n: 3,
    policy: { kind: 'all-at-once', maxInFlight: 3 },
    timeoutMs: 20_000,
  }).run();
  t.match(res[0], { state: 'refused', reason: /UPDATE_ERR_SIGNATURE/ });
  t.match(res[1], { state: 'committed' });
  t.match(res[2], { state: 'timeout' });
});

t.test('resume from the journal: finished devices are not pushed again', async (t) => {
  const f = await fixture();
  const journal = join(f.dir, 'journal.jsonl');
  const api = new FakeFleet(['dev1', 'dev2', 'dev3'], f.digest);
  const first = rollout({
    bundle: f.bundle,
    api,
    n: 3,
    policy: { kind: 'all-at-once', maxInFlight: 1 },
    journal,
  });
  first.on('progress', (p: { id: string; state: string }) => {
    if (p.id === 'dev2' && p.state === 'installing') first.stop();
  });
  const r1 = await first.run();
  t.equal(r1[0]?.state, 'committed');
  t.equal(r1[2]?.state, 'pending', 'dev3 not started before the stop');
  const j = await readJournal(journal, f.digest);
  t.equal(j.get('dev1')?.state, 'committed');
  t.equal(j.get('dev2')?.state, 'installing');
  t.same((await readJournal(journal, 'other')).size, 0, 'lines of another bundle are ignored');
  // A torn last line (the coordinator was killed mid-write) is ignored.
  await appendFile(journal, '{"id":"dev');
  const backup = rollout({
    bundle: f.bundle,
    api,
    n: 3,
    policy: { kind: 'all-at-once', maxInFlight: 1 },
    journal,
  });
  const r2 = await backup.run();
  t.same(
    r2.map((x) => x.state),
    ['committed', 'committed', 'committed'],
  );
  t.equal(api.pushes.get('dev1'), 1, 'dev1 was not pushed again');
  t.equal(api.pushes.get('dev2'), 1, 'dev2 was watched, not pushed again');
  t.equal(api.pushes.get('dev3'), 1);
});

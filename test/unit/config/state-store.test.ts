import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { readFileIfExists, writeFileAtomic } from '../../../firmware/config/atomic-file.js';
import {
  canonicalJson,
  defaultDeviceState,
  StateStore,
  StateStoreError,
  validateDeviceState,
  type CoreCertRef,
} from '../../../firmware/config/state-store.js';

const FP_A = Array.from({ length: 32 }, () => 'AB').join(':');
const FP_B = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0').toUpperCase()).join(':');
const core = (name: string, fingerprint256: string): CoreCertRef => ({
  name,
  fingerprint256,
  addedAt: '2026-01-01T00:00:00.000Z',
});

const readJson = (file: string): any => JSON.parse(readFileSync(file, 'utf8'));
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

async function openStore(dir: string) {
  const logger = createMemoryLogger();
  const clock = new FakeClock(0, Date.UTC(2026, 2, 4, 5, 6, 7, 890));
  const store = await StateStore.open({ dir, logger, clock });
  return { store, logger, clock };
}

/** A populated store in `dir` with two saves; state.json and its mirror state.prev.json are both good. */
async function populated(dir: string) {
  const { store } = await openStore(dir);
  await store.update((s) => {
    s.name = 'first-name';
  });
  await store.update((s) => {
    s.name = 'second-name';
    s.trustedCores.push(core('core-1', FP_A));
  });
  return store;
}

t.test('first start: defaults, state_initialised, directory 0700, file 0600', async (t) => {
  const dir = join(t.testdir(), 'nested', 'state');
  const { store, logger } = await openStore(dir);
  t.same(store.get(), defaultDeviceState());
  t.same(store.get().settings, { qdpTtl: 1, httpRedirectOnly: false, publicStatus: false });
  t.same(
    logger.records.map((r) => [r.level, r.event]),
    [['info', 'state_initialised']],
  );
  t.equal(statSync(dir).mode & 0o777, 0o700);
  t.equal(statSync(join(dir, 'state.json')).mode & 0o777, 0o600);
  t.same(readdirSync(dir).sort(), ['state.json', 'state.prev.json'], 'the state and its mirror');
  t.equal(readFileSync(join(dir, 'state.prev.json'), 'utf8'), readFileSync(join(dir, 'state.json'), 'utf8'));
  const env = readJson(join(dir, 'state.json'));
  t.match(env, { format: 'qperiph-state', version: 1, savedAt: '2026-03-04T05:06:07.890Z' });
  t.equal(env.sha256, sha(canonicalJson(env.data)));
});

t.test('round trip, previous copy, no temp files left', async (t) => {
  const dir = t.testdir();
  const store = await populated(dir);
  const design = { name: 'Bench', code: 'abc123', role: 'primary', primary: true, redundant: false };
  const after = await store.update((s) => ({ ...s, design, settings: { ...s.settings, qdpTtl: 4 } }));
  t.equal(after, store.get(), 'update resolves to the new current state');
  t.same(readdirSync(dir).sort(), ['state.json', 'state.prev.json'], 'only the two files, no temp files');

  const onDisk = readJson(join(dir, 'state.json'));
  t.equal(onDisk.sha256, sha(canonicalJson(onDisk.data)));
  t.equal(onDisk.data.settings.qdpTtl, 4);
  t.equal(
    readFileSync(join(dir, 'state.prev.json'), 'utf8'),
    readFileSync(join(dir, 'state.json'), 'utf8'),
    'state.prev.json mirrors the last good save',
  );

  const { store: again, logger } = await openStore(dir);
  t.same(again.get(), {
    version: 1,
    name: 'second-name',
    design,
    trustedCores: [core('core-1', FP_A)],
    pendingCores: [],
    declinedCores: [],
    settings: { qdpTtl: 4, httpRedirectOnly: false, publicStatus: false },
  });
  t.same(
    logger.records.filter((r) => r.level !== 'debug'),
    [],
    'a clean open logs nothing above debug',
  );

  const before = readFileSync(join(dir, 'state.json'), 'utf8');
  await again.update((s) => {
    s.name = 'second-name';
  });
  t.equal(readFileSync(join(dir, 'state.json'), 'utf8'), before, 'a no-op update writes nothing');
});

t.test('truncated state.json: previous copy used, damaged file kept, one warning', async (t) => {
  const dir = t.testdir();
  await populated(dir);
  const full = readFileSync(join(dir, 'state.json'), 'utf8');
  const truncated = full.slice(0, Math.floor(full.length / 2));
  writeFileSync(join(dir, 'state.json'), truncated);

  const { store, logger } = await openStore(dir);
  t.equal(store.get().name, 'second-name', 'the last good state, nothing lost');
  t.same(store.get().trustedCores, [core('core-1', FP_A)]);
  const warns = logger.records.filter((r) => r.level === 'warn');
  t.equal(warns.length, 1);
  t.match(warns[0], {
    event: 'state_recovered',
    module: 'state',
    file: join(dir, 'state.json'),
    reason: /^truncated JSON/,
    usedCopy: 'previous',
  });
  const moved = 'state.json.corrupt-2026-03-04T05-06-07-890Z';
  t.equal(warns[0]!['movedTo'], join(dir, moved));
  t.equal(readFileSync(join(dir, moved), 'utf8'), truncated, 'the damaged file is kept, byte for byte');
  t.same(readdirSync(dir).sort(), ['state.json', moved, 'state.prev.json']);
  t.equal(readJson(join(dir, 'state.json')).data.name, 'second-name', 'state.json restored from the copy');

  // A second corruption at the same (fake) time never overwrites the first moved-aside file.
  writeFileSync(join(dir, 'state.json'), '');
  const second = await openStore(dir);
  t.match(
    second.logger.records.find((r) => r.event === 'state_recovered'),
    {
      reason: 'empty file',
      usedCopy: 'previous',
      movedTo: join(dir, `${moved}-1`),
    },
  );
  t.equal(readFileSync(join(dir, moved), 'utf8'), truncated);
});

t.test('checksum mismatch and wrong shapes are detected', async (t) => {
  const dir = t.testdir();
  await populated(dir);
  const good = readJson(join(dir, 'state.json'));
  const variants: Array<[string, unknown, RegExp]> = [
    ['checksum', { ...good, data: { ...good.data, name: 'tampered' } }, /^checksum mismatch$/],
    ['format', { ...good, format: 'other' }, /^not a qperiph-state envelope$/],
    ['envelope version', { ...good, version: 2 }, /^unsupported envelope version 2$/],
    ['no checksum', { ...good, sha256: undefined }, /sha256/],
  ];
  const badData = { ...good.data, version: 2, trustedCores: 'none' };
  variants.push([
    'valid checksum, invalid data',
    { ...good, data: badData, sha256: sha(canonicalJson(badData)) },
    /^invalid data: \/version: must be 1; \/trustedCores: must be array$/,
  ]);
  for (const [label, envelope, reason] of variants) {
    writeFileSync(join(dir, 'state.json'), JSON.stringify(envelope));
    const { store, logger } = await openStore(dir);
    const rec = logger.records.find((r) => r.event === 'state_recovered');
    t.match(rec, { level: 'warn', reason, usedCopy: 'previous' }, label);
    t.equal(store.get().name, 'second-name', label);
  }
  const corrupt = readdirSync(dir).filter((f) => f.startsWith('state.json.corrupt-'));
  t.equal(corrupt.length, variants.length, 'every damaged file was kept');
});

t.test('both files damaged: defaults, both kept, one warning', async (t) => {
  const dir = t.testdir();
  await populated(dir);
  writeFileSync(join(dir, 'state.json'), '{"format":"qperiph-state","version":1,"sha2');
  writeFileSync(join(dir, 'state.prev.json'), Buffer.from([0xff, 0xfe, 0x00]));
  const { store, logger } = await openStore(dir);
  t.same(store.get(), defaultDeviceState());
  const warns = logger.records.filter((r) => r.level === 'warn');
  t.equal(warns.length, 1);
  t.match(warns[0], {
    event: 'state_recovered',
    reason: /^truncated JSON/,
    previousReason: 'not valid UTF-8',
    usedCopy: 'defaults',
  });
  t.same(readdirSync(dir).sort(), [
    'state.json',
    'state.json.corrupt-2026-03-04T05-06-07-890Z',
    'state.prev.json',
    'state.prev.json.corrupt-2026-03-04T05-06-07-890Z',
  ]);
  t.same(readJson(join(dir, 'state.json')).data, defaultDeviceState(), 'defaults written back');

  const missing = t.testdir();
  await populated(missing);
  rmSync(join(missing, 'state.json'));
  const reopened = await openStore(missing);
  t.equal(reopened.store.get().name, 'second-name', 'state.json deleted: the last good copy is used');
  t.match(reopened.logger.records, [
    { event: 'state_recovered', reason: 'file missing', usedCopy: 'previous' },
  ]);
});

t.test('missing settings keys get defaults, unknown keys are kept', async (t) => {
  const dir = t.testdir();
  const data = {
    ...defaultDeviceState(),
    name: 'older-firmware',
    settings: { qdpTtl: 3, fromTheFuture: { a: 1 } },
    futureTopLevel: [1, 2],
  };
  writeFileSync(
    join(dir, 'state.json'),
    JSON.stringify({
      format: 'qperiph-state',
      version: 1,
      sha256: sha(canonicalJson(data)),
      savedAt: 'x',
      data,
    }),
  );
  const { store, logger } = await openStore(dir);
  t.same(
    logger.records.filter((r) => r.level !== 'debug'),
    [],
  );
  t.same(store.get().settings, {
    qdpTtl: 3,
    fromTheFuture: { a: 1 },
    httpRedirectOnly: false,
    publicStatus: false,
  });
  await store.update((s) => {
    s.settings.publicStatus = true;
  });
  const saved = readJson(join(dir, 'state.json')).data;
  t.same(saved.settings.fromTheFuture, { a: 1 });
  t.same(saved.futureTopLevel, [1, 2]);
  t.equal(saved.settings.httpRedirectOnly, false, 'filled defaults are written');
});

t.test('a damaged or missing mirror is repaired from a good state.json', async (t) => {
  const dir = t.testdir();
  await populated(dir);
  const good = readFileSync(join(dir, 'state.json'), 'utf8');
  writeFileSync(join(dir, 'state.prev.json'), good.slice(0, 10));
  const { store, logger } = await openStore(dir);
  t.equal(store.get().name, 'second-name');
  t.match(
    logger.records.find((r) => r.event === 'state_mirror_repaired'),
    { level: 'warn', reason: /truncated/ },
  );
  t.equal(readFileSync(join(dir, 'state.prev.json'), 'utf8'), good, 'mirror rewritten');
  t.ok(
    readdirSync(dir).some((f) => f.startsWith('state.prev.json.corrupt-')),
    'the damaged mirror is kept',
  );
  rmSync(join(dir, 'state.prev.json'));
  await openStore(dir);
  t.equal(readFileSync(join(dir, 'state.prev.json'), 'utf8'), good, 'a missing mirror is written again');
});

t.test('updates: serialised in call order, validated, frozen results', async (t) => {
  const dir = t.testdir();
  const { store } = await openStore(dir);
  const seen: number[] = [];
  const results = await Promise.allSettled(
    Array.from({ length: 12 }, (_, i) =>
      store.update((s) => {
        seen.push(s.settings.qdpTtl);
        if (i === 5) throw new Error('mutator failed');
        s.settings.qdpTtl += 1;
      }),
    ),
  );
  t.same(seen, [1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 11], 'each update saw the previous result');
  t.equal(results[5]!.status, 'rejected');
  t.same(
    results.filter((_, i) => i !== 5).map((r) => (r.status === 'fulfilled' ? r.value.settings.qdpTtl : -1)),
    [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  );
  t.equal(readJson(join(dir, 'state.json')).data.settings.qdpTtl, 12);
  t.equal(readJson(join(dir, 'state.prev.json')).data.settings.qdpTtl, 12, 'the mirror follows');

  const current = store.get();
  t.ok(
    Object.isFrozen(current) && Object.isFrozen(current.settings) && Object.isFrozen(current.trustedCores),
  );
  t.throws(() => {
    (current as any).settings.qdpTtl = 99;
  }, TypeError);
  t.throws(() => {
    (current.trustedCores as CoreCertRef[]).push(core('x', FP_A));
  }, TypeError);

  const invalid = [
    [(s: any) => void (s.settings.qdpTtl = 0), '/settings/qdpTtl'],
    [(s: any) => void (s.name = 'not a hostname!'), '/name'],
    [
      (s: any) => void s.pendingCores.push({ ...core('c', FP_B), fingerprint256: 'ab:cd' }),
      '/pendingCores/0/fingerprint256',
    ],
    [
      (s: any) => {
        s.trustedCores.push(core('c', FP_B));
        s.declinedCores.push(core('c', FP_B));
      },
      '/declinedCores/0/fingerprint256',
    ],
    [
      (s: any) => void (s.design = { name: 'd', code: 'c', role: 'r', primary: 'yes', redundant: false }),
      '/design/primary',
    ],
  ] as const;
  for (const [mutate, path] of invalid) {
    await t.rejects(store.update(mutate), { code: 'STATE_ERR_INVALID', issues: [{ path }] }, path);
  }
  await t.rejects(
    store.update((async () => undefined) as any),
    { code: 'STATE_ERR_INVALID', message: /not a promise/ },
    'async mutators are refused',
  );
  t.equal(store.get(), current, 'failed updates change nothing');
  t.equal(readJson(join(dir, 'state.json')).data.settings.qdpTtl, 12);

  const trusted = await store.update((s) => {
    s.trustedCores.push(core('core-a', FP_A));
    s.pendingCores.push(core('core-b', FP_B));
  });
  t.equal(trusted.trustedCores[0]?.fingerprint256, FP_A);
});

t.test('I/O errors are typed STATE_ERR_IO', async (t) => {
  const dir = t.testdir({ 'a-file': 'x' });
  const err = await StateStore.open({ dir: join(dir, 'a-file'), logger: createMemoryLogger() }).catch(
    (e) => e,
  );
  t.type(err, StateStoreError, 'state dir path is a file');
  t.equal(err.code, 'STATE_ERR_IO');
  mkdirSync(join(dir, 'd', 'state.json'), { recursive: true });
  await t.rejects(StateStore.open({ dir: join(dir, 'd'), logger: createMemoryLogger() }), {
    code: 'STATE_ERR_IO',
    message: /EISDIR/,
  });
});

t.test('writeFileAtomic and readFileIfExists', async (t) => {
  const dir = t.testdir({ blocker: { inside: 'x' } });
  const target = join(dir, 'out.bin');
  t.equal(await readFileIfExists(target), null);
  await writeFileAtomic(target, 'hello');
  await writeFileAtomic(target, new Uint8Array([1, 2, 3]), { mode: 0o640 });
  t.same([...(await readFileIfExists(target))!], [1, 2, 3]);
  t.equal(statSync(target).mode & 0o777, 0o640);
  await t.rejects(
    writeFileAtomic(join(dir, 'blocker'), 'x'),
    { code: 'EISDIR' },
    'rename over a directory fails',
  );
  await t.rejects(writeFileAtomic(join(dir, 'no', 'such', 'dir'), 'x'), { code: 'ENOENT' });
  t.same(readdirSync(dir).sort(), ['blocker', 'out.bin'], 'the temp file was removed after the failure');
  await t.rejects(readFileIfExists(join(dir, 'blocker')), { code: 'EISDIR' });
});

t.test('validateDeviceState and canonicalJson', async (t) => {
  t.equal(
    canonicalJson({ b: [1, { d: 1, c: undefined, a: 'x' }], a: null }),
    '{"a":null,"b":[1,{"a":"x","d":1}]}',
  );
  t.same(validateDeviceState(null).issues, [{ path: '', message: 'must be object' }]);
  const { state, issues } = validateDeviceState({ ...defaultDeviceState(), settings: undefined });
  t.same(issues, []);
  t.same(state?.settings, defaultDeviceState().settings, 'a missing settings object is filled');
  t.same(
    validateDeviceState({ version: 1 }).issues.map((i) => i.path),
    ['/name', '/design', '/trustedCores', '/pendingCores', '/declinedCores'],
  );
});

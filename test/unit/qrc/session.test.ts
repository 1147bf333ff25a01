/**
 * The QRC session in virtual time (FakeClock): every method, the error codes, Logon, Standby,
 * change groups and AutoPoll, the idle close, reply order with a slow backend, and a fuzz run.
 */
import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { MemoryQrcBackend, QrcBackendError, type QrcBackend } from '../../../bench/core/qrc/backend.js';
import { QRC_ERR } from '../../../bench/core/qrc/errors.js';
import { sampleDesign } from '../../../bench/core/qrc/sample-design.js';
import { QrcSession, type QrcCloseReason, type QrcSessionOptions } from '../../../bench/core/qrc/session.js';
import { flush } from '../../helpers/flush.js';

type Msg = Record<string, unknown> & {
  id?: unknown;
  result?: unknown;
  error?: { code: number; message: string };
  method?: string;
  params?: unknown;
};

function harness(opts: Partial<QrcSessionOptions> & { backend?: QrcBackend } = {}) {
  const clock = new FakeClock();
  const backend = opts.backend ?? sampleDesign();
  const out: Msg[] = [];
  const closes: QrcCloseReason[] = [];
  const s = new QrcSession({
    clock,
    logger: createMemoryLogger(),
    send: (m) => out.push(JSON.parse(JSON.stringify(m)) as Msg),
    close: (r) => closes.push(r),
    ...opts,
    backend,
  });
  s.start();
  let id = 100;
  /** Send a request and return its reply (after microtasks). */
  const call = async (method: string, params?: unknown): Promise<Msg> => {
    const myId = id++;
    const req: Record<string, unknown> = { jsonrpc: '2.0', id: myId, method };
    if (params !== undefined) req['params'] = params;
    s.receive(JSON.stringify(req));
    await flush();
    const r = out.find((m) => m.id === myId);
    if (!r) throw new Error(`no reply to ${method}`);
    return r;
  };
  const notes = (method: string): Msg[] => out.filter((m) => m.method === method && m.id === undefined);
  return { clock, backend, out, closes, s, call, notes };
}

const code = (m: Msg): number | undefined => m.error?.code;

t.test('start: EngineStatus on connect and on every status change', async (t) => {
  const backend = sampleDesign();
  const h = harness({ backend });
  t.match(h.notes('EngineStatus'), [
    { params: { State: 'Active', DesignName: 'Lobby', DesignCode: 'abcDEF123456', IsEmulator: true } },
  ]);
  backend.setStatus({ State: 'Standby' });
  t.equal(h.notes('EngineStatus').length, 2);
  t.match(h.notes('EngineStatus')[1], { params: { State: 'Standby' } });
  h.s.close('peer');
  t.equal(backend.listenerCount, 0, 'a closed session unsubscribes');
  backend.setStatus({ State: 'Active' });
  t.equal(h.notes('EngineStatus').length, 2, 'nothing after close');
  t.same(h.closes, ['peer']);
});

t.test('NoOp, StatusGet, unknown method, invalid request', async (t) => {
  const h = harness();
  t.same((await h.call('NoOp', {})).result, true);
  t.match((await h.call('StatusGet', 0)).result, {
    Platform: 'Emulated Core',
    State: 'Active',
    DesignName: 'Lobby',
    IsRedundant: false,
    Status: { Code: 0 },
  });
  const nf = await h.call('Nope.Nothing');
  t.equal(code(nf), QRC_ERR.METHOD_NOT_FOUND);
  t.match(nf.error?.message, /Nope\.Nothing/);
  t.equal(code(await h.call('toString')), QRC_ERR.METHOD_NOT_FOUND, 'no prototype methods');
  h.s.receive('{"jsonrpc":"2.0","id":9,"method":');
  t.match(h.out.at(-1), { id: null, error: { code: QRC_ERR.PARSE } });
  h.s.receive('{"jsonrpc":"2.0","id":9}');
  t.match(h.out.at(-1), { id: 9, error: { code: QRC_ERR.INVALID_REQUEST } });
  h.s.receiveBad('invalid UTF-8', false);
  t.match(h.out.at(-1), { id: null, error: { code: QRC_ERR.PARSE } });
  t.equal(h.closes.length, 0, 'bad frames keep the connection');
  h.s.receive('{"jsonrpc":"2.0","method":"NoOp"}');
  await flush();
  t.match(h.out.at(-1), { id: null, error: { code: QRC_ERR.PARSE } }, 'a notification gets no reply');
  t.equal(h.s.counters.parseErrors, 2);
  h.s.receiveBad('too large', true);
  t.match(h.out.at(-1), { id: null, error: { code: QRC_ERR.INVALID_REQUEST } });
  t.same(h.closes, ['oversize'], 'oversize closes');
});

t.test('Control.Get / Control.Set', async (t) => {
  const h = harness();
  t.same((await h.call('Control.Get', ['MainGain', 'MainMute'])).result, [
    { Name: 'MainGain', Value: -10, String: '-10dB', Position: 90 / 120 },
    { Name: 'MainMute', Value: false, String: 'false', Position: 0 },
  ]);
  const unknown = await h.call('Control.Get', ['MainGain', 'Nope']);
  t.equal(code(unknown), QRC_ERR.UNKNOWN_CONTROL);
  t.match(unknown.error?.message, /Unknown control: Nope/);
  t.equal(
    code(await h.call('Control.Get', { Name: 'MainGain' })),
    QRC_ERR.INVALID_PARAMS,
    'params must be an array',
  );

  t.same((await h.call('Control.Set', { Name: 'MainGain', Value: -3, Ramp: 2 })).result, true);
  t.match(h.backend instanceof MemoryQrcBackend && h.backend.sets.at(-1), {
    name: 'MainGain',
    value: -3,
    ramp: 2,
  });
  t.match((await h.call('Control.Get', ['MainGain'])).result, [{ Value: -3, String: '-3dB' }]);

  const before = JSON.stringify(h.backend.namedControls());
  t.equal(code(await h.call('Control.Set', { Name: 'Nope', Value: 1 })), QRC_ERR.UNKNOWN_CONTROL);
  t.equal(
    code(await h.call('Control.Set', { Name: 'MainGain', Value: 500 })),
    QRC_ERR.INVALID_PARAMS,
    'out of range',
  );
  t.equal(
    code(await h.call('Control.Set', { Name: 'MainGain', Value: 'loud' })),
    QRC_ERR.INVALID_PARAMS,
    'not a number',
  );
  t.equal(
    code(await h.call('Control.Set', { Name: 'Meter', Value: -1 })),
    QRC_ERR.INVALID_PARAMS,
    'read-only',
  );
  t.equal(code(await h.call('Control.Set', { Name: 'MainGain' })), QRC_ERR.INVALID_PARAMS, 'no Value');
  t.equal(
    code(await h.call('Control.Set', { Name: 'MainGain', Value: 1, Ramp: -1 })),
    QRC_ERR.INVALID_PARAMS,
    'bad Ramp',
  );
  t.equal(code(await h.call('Control.Set', [1])), QRC_ERR.INVALID_PARAMS);
  t.equal(JSON.stringify(h.backend.namedControls()), before, 'refused sets changed nothing');
  t.same(
    (await h.call('Control.Set', { Name: 'MainMute', Value: 1 })).result,
    true,
    'numbers coerce to booleans',
  );
  t.match((await h.call('Control.Get', ['MainMute'])).result, [{ Value: true }]);
});

t.test('Component.GetComponents / GetControls / Get / Set', async (t) => {
  const h = harness();
  t.same((await h.call('Component.GetComponents', {})).result, [
    { Name: 'Gain1', Type: 'gain', Properties: [{ Name: 'multi_channel_type', Value: '1' }] },
    { Name: 'Status', Type: 'status_combiner', Properties: [] },
  ]);
  t.match((await h.call('Component.GetControls', { Name: 'Gain1' })).result, {
    Name: 'Gain1',
    Controls: [
      { Name: 'gain', Type: 'Float', Value: 0, ValueMin: -100, ValueMax: 20, Direction: 'Read/Write' },
      { Name: 'mute', Type: 'Boolean' },
      { Name: 'peak', Direction: 'Read Only' },
    ],
  });
  t.equal(code(await h.call('Component.GetControls', { Name: 'Nope' })), QRC_ERR.UNKNOWN_COMPONENT);
  t.same(
    (await h.call('Component.Get', { Name: 'Gain1', Controls: [{ Name: 'gain' }, { Name: 'mute' }] })).result,
    {
      Name: 'Gain1',
      Controls: [
        { Name: 'gain', Value: 0, String: '0', Position: 100 / 120 },
        { Name: 'mute', Value: false, String: 'false', Position: 0 },
      ],
    },
  );
  t.equal(
    code(await h.call('Component.Get', { Name: 'Nope', Controls: [{ Name: 'gain' }] })),
    QRC_ERR.UNKNOWN_COMPONENT,
  );
  t.equal(
    code(await h.call('Component.Get', { Name: 'Gain1', Controls: [{ Name: 'x' }] })),
    QRC_ERR.UNKNOWN_CONTROL,
  );
  t.equal(code(await h.call('Component.Get', { Name: 'Gain1' })), QRC_ERR.INVALID_PARAMS);

  t.same(
    (
      await h.call('Component.Set', {
        Name: 'Gain1',
        Controls: [
          { Name: 'gain', Value: -6, Ramp: 1.5 },
          { Name: 'mute', Value: true },
        ],
      })
    ).result,
    true,
  );
  t.match(
    (await h.call('Component.Get', { Name: 'Gain1', Controls: [{ Name: 'gain' }, { Name: 'mute' }] })).result,
    {
      Controls: [{ Value: -6 }, { Value: true }],
    },
  );
  const before = JSON.stringify(h.backend.componentControls('Gain1'));
  t.equal(
    code(
      await h.call('Component.Set', {
        Name: 'Gain1',
        Controls: [
          { Name: 'gain', Value: 1 },
          { Name: 'x', Value: 1 },
        ],
      }),
    ),
    QRC_ERR.UNKNOWN_CONTROL,
  );
  t.equal(
    code(
      await h.call('Component.Set', {
        Name: 'Gain1',
        Controls: [
          { Name: 'gain', Value: 1 },
          { Name: 'peak', Value: 1 },
        ],
      }),
    ),
    QRC_ERR.INVALID_PARAMS,
    'read-only',
  );
  t.equal(
    code(await h.call('Component.Set', { Name: 'Nope', Controls: [{ Name: 'gain', Value: 1 }] })),
    QRC_ERR.UNKNOWN_COMPONENT,
  );
  t.equal(code(await h.call('Component.Set', { Name: 'Gain1', Controls: [] })), QRC_ERR.INVALID_PARAMS);
  t.equal(
    JSON.stringify(h.backend.componentControls('Gain1')),
    before,
    'a refused Component.Set changed nothing',
  );
});

t.test('change groups: add, poll, remove, clear, invalidate, destroy, errors, limits', async (t) => {
  const backend = sampleDesign();
  const h = harness({ backend, maxChangeGroups: 2, maxGroupControls: 3 });
  t.same(
    (await h.call('ChangeGroup.AddControl', { Id: 'g', Controls: ['MainGain', 'MainMute'] })).result,
    true,
  );
  t.same(
    (
      await h.call('ChangeGroup.AddComponentControl', {
        Id: 'g',
        Component: { Name: 'Gain1', Controls: [{ Name: 'gain' }] },
      })
    ).result,
    true,
  );
  t.same(
    (await h.call('ChangeGroup.Poll', { Id: 'g' })).result,
    {
      Id: 'g',
      Changes: [
        { Name: 'MainGain', Value: -10, String: '-10dB', Position: 0.75 },
        { Name: 'MainMute', Value: false, String: 'false', Position: 0 },
        { Component: 'Gain1', Name: 'gain', Value: 0, String: '0', Position: 100 / 120 },
      ],
    },
    'new controls count as changed',
  );
  t.same((await h.call('ChangeGroup.Poll', { Id: 'g' })).result, { Id: 'g', Changes: [] }, 'then nothing');
  backend.poke('Gain1', 'gain', -20);
  await h.call('Control.Set', { Name: 'MainMute', Value: true });
  t.same((await h.call('ChangeGroup.Poll', { Id: 'g' })).result, {
    Id: 'g',
    Changes: [
      { Name: 'MainMute', Value: true, String: 'true', Position: 1 },
      { Component: 'Gain1', Name: 'gain', Value: -20, String: '-20', Position: 80 / 120 },
    ],
  });
  t.same((await h.call('ChangeGroup.Invalidate', { Id: 'g' })).result, true);
  t.equal(
    ((await h.call('ChangeGroup.Poll', { Id: 'g' })).result as { Changes: unknown[] }).Changes.length,
    3,
    'invalidate resends all',
  );

  t.equal(
    code(await h.call('ChangeGroup.AddControl', { Id: 'g', Controls: ['Label'] })),
    QRC_ERR.INVALID_PARAMS,
    'group holds at most 3',
  );
  t.equal(
    code(await h.call('ChangeGroup.AddControl', { Id: 'g', Controls: ['Nope'] })),
    QRC_ERR.UNKNOWN_CONTROL,
  );
  t.equal(
    code(
      await h.call('ChangeGroup.AddComponentControl', {
        Id: 'g',
        Component: { Name: 'Nope', Controls: [{ Name: 'gain' }] },
      }),
    ),
    QRC_ERR.UNKNOWN_COMPONENT,
  );
  t.equal(
    code(
      await h.call('ChangeGroup.AddComponentControl', {
        Id: 'g',
        Component: { Name: 'Gain1', Controls: [{ Name: 'x' }] },
      }),
    ),
    QRC_ERR.UNKNOWN_CONTROL,
  );
  t.equal(
    code(await h.call('ChangeGroup.AddControl', { Id: 'fresh', Controls: ['Nope'] })),
    QRC_ERR.UNKNOWN_CONTROL,
  );
  t.equal(h.s.changeGroupCount, 1, 'a refused add created no group');

  t.same((await h.call('ChangeGroup.Remove', { Id: 'g', Controls: ['MainGain'] })).result, true);
  t.same(
    (
      await h.call('ChangeGroup.Remove', {
        Id: 'g',
        Component: { Name: 'Gain1', Controls: [{ Name: 'gain' }] },
      })
    ).result,
    true,
  );
  await h.call('Control.Set', { Name: 'MainGain', Value: 5 });
  backend.poke('Gain1', 'gain', -30);
  t.same(
    (await h.call('ChangeGroup.Poll', { Id: 'g' })).result,
    { Id: 'g', Changes: [] },
    'removed controls are not reported',
  );
  t.same((await h.call('ChangeGroup.Clear', { Id: 'g' })).result, true);
  t.same(
    (await h.call('ChangeGroup.AddControl', { Id: 7, Controls: ['Label'] })).result,
    true,
    'numeric ids work',
  );
  t.same((await h.call('ChangeGroup.Poll', { Id: 7 })).result, {
    Id: 7,
    Changes: [{ Name: 'Label', Value: 'hello', String: 'hello', Position: 0 }],
  });
  t.equal(
    code(await h.call('ChangeGroup.AddControl', { Id: 'third', Controls: ['Label'] })),
    QRC_ERR.CHANGE_GROUPS_EXHAUSTED,
  );
  t.same((await h.call('ChangeGroup.Destroy', { Id: 'g' })).result, true);
  t.same(
    (await h.call('ChangeGroup.AddControl', { Id: 'third', Controls: ['Label'] })).result,
    true,
    'room again after Destroy',
  );

  for (const m of ['Poll', 'Remove', 'Clear', 'Invalidate', 'Destroy', 'AutoPoll']) {
    const r = await h.call(`ChangeGroup.${m}`, { Id: 'g', Controls: ['Label'], Rate: 1 });
    t.equal(code(r), QRC_ERR.UNKNOWN_CHANGE_GROUP, `${m} on a destroyed group`);
  }
  t.equal(code(await h.call('ChangeGroup.Poll', {})), QRC_ERR.INVALID_PARAMS, 'Id required');
  t.equal(
    code(await h.call('ChangeGroup.Remove', { Id: 'third' })),
    QRC_ERR.INVALID_PARAMS,
    'Remove needs Controls',
  );
});

t.test('a shared group budget limits change groups across sessions', async (t) => {
  const budget = { used: 0, max: 2 };
  const a = harness({ groupBudget: budget });
  const b = harness({ groupBudget: budget });
  t.same((await a.call('ChangeGroup.AddControl', { Id: 1, Controls: ['Label'] })).result, true);
  t.same((await b.call('ChangeGroup.AddControl', { Id: 1, Controls: ['Label'] })).result, true);
  t.equal(budget.used, 2);
  t.equal(
    code(await a.call('ChangeGroup.AddControl', { Id: 2, Controls: ['Label'] })),
    QRC_ERR.CHANGE_GROUPS_EXHAUSTED,
    'the Core-wide limit',
  );
  await b.call('ChangeGroup.Destroy', { Id: 1 });
  t.equal(budget.used, 1, 'Destroy gives one back');
  t.same((await a.call('ChangeGroup.AddControl', { Id: 2, Controls: ['Label'] })).result, true);
  a.s.close('peer');
  t.equal(budget.used, 0, 'closing a session gives its groups back');
});

t.test(
  'AutoPoll pushes ChangeGroup.Poll with only changed controls, at the rate, without drift',
  async (t) => {
    const backend = sampleDesign();
    const h = harness({ backend, idleTimeoutMs: 0 });
    await h.call('ChangeGroup.AddControl', { Id: 'ap', Controls: ['MainGain', 'Label'] });
    t.same((await h.call('ChangeGroup.AutoPoll', { Id: 'ap', Rate: 0.5 })).result, true);
    t.equal(h.notes('ChangeGroup.Poll').length, 0, 'nothing before the first period');
    h.clock.advance(500);
    t.same(
      h.notes('ChangeGroup.Poll').map((m) => m.params),
      [
        {
          Id: 'ap',
          Changes: [
            { Name: 'MainGain', Value: -10, String: '-10dB', Position: 0.75 },
            { Name: 'Label', Value: 'hello', String: 'hello', Position: 0 },
          ],
        },
      ],
    );
    h.clock.advance(2000);
    t.equal(h.notes('ChangeGroup.Poll').length, 1, 'no push while nothing changes');
    backend.poke(undefined, 'Label', 'bye');
    h.clock.advance(499);
    t.equal(h.notes('ChangeGroup.Poll').length, 1);
    h.clock.advance(1);
    t.same(
      h.notes('ChangeGroup.Poll').at(-1)?.params,
      { Id: 'ap', Changes: [{ Name: 'Label', Value: 'bye', String: 'bye', Position: 0 }] },
      'on the 500 ms grid, only the change',
    );
    for (let i = 0; i < 100; i++) {
      backend.poke(undefined, 'Label', `v${i}`);
      h.clock.advance(500);
    }
    t.equal(h.notes('ChangeGroup.Poll').length, 102, 'one push per period for 50 s');
    t.equal(
      code(await h.call('ChangeGroup.AutoPoll', { Id: 'ap', Rate: 0.01 })),
      QRC_ERR.INVALID_PARAMS,
      'Rate below 0.1 s',
    );
    t.equal(
      code(await h.call('ChangeGroup.AutoPoll', { Id: 'ap' })),
      QRC_ERR.INVALID_PARAMS,
      'Rate required',
    );
    await h.call('ChangeGroup.AutoPoll', { Id: 'ap', Rate: 2 });
    backend.poke(undefined, 'Label', 'slow');
    h.clock.advance(1999);
    t.equal(h.notes('ChangeGroup.Poll').length, 102, 'a new AutoPoll replaces the old rate');
    h.clock.advance(1);
    t.equal(h.notes('ChangeGroup.Poll').length, 103);
    await h.call('ChangeGroup.Destroy', { Id: 'ap' });
    t.equal(h.clock.pendingCount, 0, 'Destroy stops the timer');
  },
);

t.test('AutoPoll response style repeats the AutoPoll request id', async (t) => {
  const backend = sampleDesign();
  const h = harness({ backend, autoPollStyle: 'response' });
  await h.call('ChangeGroup.AddControl', { Id: 'r', Controls: ['Label'] });
  const ack = await h.call('ChangeGroup.AutoPoll', { Id: 'r', Rate: 1 });
  h.clock.advance(1000);
  const pushes = h.out.filter((m) => m.id === ack.id);
  t.equal(pushes.length, 2);
  t.same(pushes[1]?.result, {
    Id: 'r',
    Changes: [{ Name: 'Label', Value: 'hello', String: 'hello', Position: 0 }],
  });
  h.s.close('peer');
  t.equal(h.clock.pendingCount, 0, 'close stops every timer');
});

t.test('idle timeout: closes after 60 s of silence; any input (NoOp) resets it', async (t) => {
  const h = harness();
  h.clock.advance(59_000);
  await h.call('NoOp', {});
  h.clock.advance(59_000);
  t.same(h.closes, [], 'still open 59 s after the NoOp');
  h.s.receiveBad('junk', false);
  h.clock.advance(59_999);
  t.same(h.closes, [], 'a bad frame counts as input too');
  h.clock.advance(1);
  t.same(h.closes, ['idle']);
  t.equal(h.s.counters.idleCloses, 1);
  const n = h.out.length;
  h.s.receive('{"jsonrpc":"2.0","id":1,"method":"NoOp"}');
  await flush();
  t.equal(h.out.length, n, 'a closed session ignores input');

  const custom = harness({ idleTimeoutMs: 1000 });
  custom.clock.advance(1000);
  t.same(custom.closes, ['idle'], 'configurable');
  const never = harness({ idleTimeoutMs: 0 });
  never.clock.advance(3_600_000);
  t.same(never.closes, [], '0 disables it');
});

t.test('Logon required: error 10 until logged on; bad credentials refused', async (t) => {
  const h = harness({ auth: { users: [{ User: 'admin', Password: 's3cret' }] } });
  t.equal(h.notes('EngineStatus').length, 1, 'EngineStatus is sent before Logon');
  t.same((await h.call('NoOp', {})).result, true, 'NoOp is allowed');
  for (const [m, p] of [
    ['StatusGet', 0],
    ['Control.Get', ['MainGain']],
    ['Component.GetComponents', {}],
    ['ChangeGroup.Poll', { Id: 'x' }],
  ] as const) {
    t.equal(code(await h.call(m, p)), QRC_ERR.LOGON_REQUIRED, m);
  }
  t.equal(
    code(await h.call('Logon', { User: 'admin', Password: 'nope' })),
    QRC_ERR.LOGON_REQUIRED,
    'wrong password',
  );
  t.equal(
    code(await h.call('Logon', { User: 'Admin', Password: 's3cret' })),
    QRC_ERR.LOGON_REQUIRED,
    'user is case-sensitive',
  );
  t.equal(code(await h.call('Logon', {})), QRC_ERR.LOGON_REQUIRED);
  t.equal(code(await h.call('Logon', 5)), QRC_ERR.INVALID_PARAMS);
  t.equal(h.s.user, null);
  t.same((await h.call('Logon', { User: 'admin', Password: 's3cret' })).result, true);
  t.equal(h.s.user, 'admin');
  t.match((await h.call('Control.Get', ['MainGain'])).result, [{ Name: 'MainGain' }]);

  const open = harness();
  t.same(
    (await open.call('Logon', { User: 'anyone', Password: 'x' })).result,
    true,
    'open access accepts any Logon',
  );
  t.match((await open.call('Control.Get', ['MainGain'])).result, [{ Name: 'MainGain' }]);
});

t.test('Standby: -32604 for everything but Logon, NoOp, StatusGet', async (t) => {
  const backend = sampleDesign({ State: 'Standby' });
  const h = harness({ backend });
  t.equal(code(await h.call('Control.Get', ['MainGain'])), QRC_ERR.STANDBY);
  t.match((await h.call('StatusGet', 0)).result, { State: 'Standby' });
  t.same((await h.call('NoOp', {})).result, true);
  backend.setStatus({ State: 'Active' });
  t.match((await h.call('Control.Get', ['MainGain'])).result, [{ Name: 'MainGain' }]);
});

t.test('replies keep request order when the backend is slow; failures map to codes', async (t) => {
  const base = sampleDesign();
  const gates: Array<() => void> = [];
  let fail: Error | null = null;
  const slow: QrcBackend = {
    status: () => base.status(),
    namedControls: () => base.namedControls(),
    components: () => base.components(),
    componentControls: (c) => base.componentControls(c),
    setNamed: (n, v, r) =>
      new Promise<void>((resolve, reject) =>
        gates.push(() => (fail ? reject(fail) : resolve(base.setNamed(n, v, r)))),
      ),
    setComponent: (c, n, v, r) => base.setComponent(c, n, v, r),
    onChange: (cb) => base.onChange(cb),
    onStatus: (cb) => base.onStatus(cb),
  };
  const h = harness({ backend: slow });
  let drained = 0;
  const h2 = harness({ backend: slow, onDrain: () => drained++ });
  h2.s.receive('{"jsonrpc":"2.0","id":1,"method":"Control.Set","params":{"Name":"MainGain","Value":1}}');
  h2.s.receive('{"jsonrpc":"2.0","id":2,"method":"NoOp"}');
  t.equal(h2.s.backlog, 2, 'the NoOp waits behind the set');
  await flush();
  t.equal(h2.out.filter((m) => m.id !== undefined).length, 0, 'no reply yet');
  gates.shift()!();
  await flush();
  t.same(
    h2.out.filter((m) => 'id' in m && m.id !== undefined).map((m) => m.id),
    [1, 2],
    'in order',
  );
  t.ok(drained >= 1, 'onDrain after the backlog empties');

  fail = new Error('device unplugged');
  h.s.receive('{"jsonrpc":"2.0","id":5,"method":"Control.Set","params":{"Name":"MainGain","Value":1}}');
  await flush();
  gates.shift()!();
  await flush();
  t.match(h.out.at(-1), { id: 5, error: { code: QRC_ERR.SERVER_ERROR, message: /device unplugged/ } });
  fail = new QrcBackendError('bad-value', 'nope');
  h.s.receive('{"jsonrpc":"2.0","id":6,"method":"Control.Set","params":{"Name":"MainGain","Value":1}}');
  await flush();
  gates.shift()!();
  await flush();
  t.match(h.out.at(-1), { id: 6, error: { code: QRC_ERR.INVALID_PARAMS } });
});

t.test('seeded fuzz: random method calls always get exactly one reply with a known code', async (t) => {
  let seed = 0xbeef;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const methods = [
    'Logon',
    'NoOp',
    'StatusGet',
    'Control.Get',
    'Control.Set',
    'Component.GetComponents',
    'Component.GetControls',
    'Component.Get',
    'Component.Set',
    'ChangeGroup.AddControl',
    'ChangeGroup.AddComponentControl',
    'ChangeGroup.Remove',
    'ChangeGroup.Poll',
    'ChangeGroup.Clear',
    'ChangeGroup.Destroy',
    'ChangeGroup.Invalidate',
    'ChangeGroup.AutoPoll',
    'X',
  ];
  const values: unknown[] = [
    null,
    0,
    -1,
    1e300,
    'MainGain',
    'Gain1',
    ['MainGain'],
    [{ Name: 'gain' }],
    [{ Name: 'gain', Value: 3 }],
    {},
    { Name: 'Gain1' },
    true,
    'g',
    0.2,
    [1, 2],
  ];
  const keys = ['Name', 'Value', 'Ramp', 'Id', 'Controls', 'Component', 'Rate', 'User', 'Password'];
  const h = harness({ maxChangeGroups: 4 });
  const known = new Set<number>(Object.values(QRC_ERR));
  for (let i = 0; i < 2000; i++) {
    const params: Record<string, unknown> = {};
    for (let k = Math.floor(rand() * 4); k > 0; k--) params[pick(keys)] = pick(values);
    const r = await h.call(pick(methods), rand() < 0.8 ? params : pick(values));
    if (r.error && !known.has(r.error.code)) t.fail(`unknown code ${r.error.code}`);
    h.clock.advance(100);
  }
  t.equal(h.closes.length, 0, 'still open');
  t.ok(h.s.changeGroupCount <= 4, 'group limit held');
  t.ok(h.s.counters.requests >= 2000);
});

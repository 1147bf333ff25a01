/**
 * The QRC server over real TCP and WebSocket on loopback 127.0.5.x (ports chosen by the OS):
 * every method, malformed and oversize input, unknown method/component/control, AutoPoll
 * pushes, the idle close, Logon-required mode, the connection limit, counters.
 */
import http from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import { WebSocket } from 'ws';
import { ControlCallError, ControlClient } from '../../firmware/control/client.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import type { MemoryQrcBackend } from '../../bench/core/qrc/backend.js';
import { QRC_ERR } from '../../bench/core/qrc/errors.js';
import { sampleDesign } from '../../bench/core/qrc/sample-design.js';
import { QrcServer, type QrcServerOptions } from '../../bench/core/qrc/server.js';

let nextHost = 1;
/** A fresh loopback address per server (127.0.5.1 .. 127.0.5.20). */
function host(): string {
  const h = `127.0.5.${nextHost}`;
  nextHost = nextHost >= 20 ? 1 : nextHost + 1;
  return h;
}

async function startServer(
  t: Test,
  opts: Partial<QrcServerOptions> = {},
): Promise<{ server: QrcServer; backend: MemoryQrcBackend; host: string; port: number }> {
  const backend = (opts.backend as MemoryQrcBackend | undefined) ?? sampleDesign();
  const server = new QrcServer({ logger: createMemoryLogger(), host: host(), port: 0, ...opts, backend });
  await server.start();
  t.teardown(() => server.stop());
  const a = server.address();
  return { server, backend, host: a.host, port: a.port };
}

async function connect(t: Test, h: string, port: number): Promise<ControlClient> {
  const c = await ControlClient.connect({ host: h, port, timeoutMs: 5000 });
  t.teardown(() => c.close());
  return c;
}

async function waitUntil(pred: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return pred();
}

async function rpcCode(p: Promise<unknown>): Promise<number | string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof ControlCallError ? err.rpcCode : String(err);
  }
}

t.test('TCP: EngineStatus on connect, then every method', async (t) => {
  const { host: h, port, server, backend } = await startServer(t);
  t.equal(port > 0, true, 'port 0 picks a free port');
  const c = await connect(t, h, port);
  t.ok(await c.waitFor(() => c.notifications.length > 0), 'EngineStatus arrives unasked');
  t.match(c.notifications[0], {
    method: 'EngineStatus',
    params: { State: 'Active', DesignName: 'Lobby', IsEmulator: true },
  });

  t.same(await c.call('Logon', { User: 'x', Password: 'y' }), true);
  t.same(await c.call('NoOp', {}), true);
  t.match(await c.call('StatusGet', 0), {
    Platform: 'Emulated Core',
    State: 'Active',
    DesignCode: 'abcDEF123456',
  });
  t.same(await c.call('Control.Set', { Name: 'MainGain', Value: -4, Ramp: 0.5 }), true);
  t.match(await c.call('Control.Get', ['MainGain', 'Label']), [
    { Name: 'MainGain', Value: -4, String: '-4dB' },
    { Name: 'Label', Value: 'hello' },
  ]);
  t.match(await c.call('Component.GetComponents', {}), [{ Name: 'Gain1', Type: 'gain' }, { Name: 'Status' }]);
  t.match(await c.call('Component.GetControls', { Name: 'Gain1' }), {
    Name: 'Gain1',
    Controls: [{ Name: 'gain' }, { Name: 'mute' }, { Name: 'peak' }],
  });
  t.same(await c.call('Component.Set', { Name: 'Gain1', Controls: [{ Name: 'gain', Value: -12 }] }), true);
  t.match(await c.call('Component.Get', { Name: 'Gain1', Controls: [{ Name: 'gain' }] }), {
    Name: 'Gain1',
    Controls: [{ Name: 'gain', Value: -12 }],
  });
  t.same(await c.call('ChangeGroup.AddControl', { Id: 'g1', Controls: ['MainGain'] }), true);
  t.same(
    await c.call('ChangeGroup.AddComponentControl', {
      Id: 'g1',
      Component: { Name: 'Gain1', Controls: [{ Name: 'mute' }] },
    }),
    true,
  );
  t.match(await c.call('ChangeGroup.Poll', { Id: 'g1' }), {
    Id: 'g1',
    Changes: [{ Name: 'MainGain' }, { Component: 'Gain1', Name: 'mute' }],
  });
  t.same(await c.call('ChangeGroup.Invalidate', { Id: 'g1' }), true);
  t.same(await c.call('ChangeGroup.Remove', { Id: 'g1', Controls: ['MainGain'] }), true);
  t.match(await c.call('ChangeGroup.Poll', { Id: 'g1' }), {
    Id: 'g1',
    Changes: [{ Component: 'Gain1', Name: 'mute' }],
  });
  t.same(await c.call('ChangeGroup.Clear', { Id: 'g1' }), true);
  t.same(await c.call('ChangeGroup.AutoPoll', { Id: 'g1', Rate: 1 }), true);
  t.same(await c.call('ChangeGroup.Destroy', { Id: 'g1' }), true);
  t.match(backend.sets, [
    { name: 'MainGain', value: -4, ramp: 0.5 },
    { component: 'Gain1', name: 'gain', value: -12 },
  ]);

  t.equal(await rpcCode(c.call('No.Such')), QRC_ERR.METHOD_NOT_FOUND);
  t.equal(await rpcCode(c.call('Component.GetControls', { Name: 'Nope' })), QRC_ERR.UNKNOWN_COMPONENT);
  t.equal(await rpcCode(c.call('Control.Get', ['Nope'])), QRC_ERR.UNKNOWN_CONTROL);
  t.equal(await rpcCode(c.call('Control.Set', { Name: 'MainGain', Value: 999 })), QRC_ERR.INVALID_PARAMS);
  t.equal(await rpcCode(c.call('ChangeGroup.Poll', { Id: 'gone' })), QRC_ERR.UNKNOWN_CHANGE_GROUP);
  t.match(server.counters, { connections: 1, openConnections: 1 });
  t.ok(server.counters.framesIn >= 23 && server.counters.framesOut >= 24, 'frames counted');
  t.ok(server.counters.errors >= 5, 'errors counted');
});

t.test('TCP: split frames, several per write, malformed JSON kept open, oversize closes', async (t) => {
  const { host: h, port, server } = await startServer(t, { maxFrameBytes: 4096 });
  const c = await connect(t, h, port);
  const two =
    '{"jsonrpc":"2.0","id":1,"method":"NoOp","params":{}}\0{"jsonrpc":"2.0","id":2,"method":"Control.Get","params":["Label"]}\0';
  c.writeRaw(two.slice(0, 10));
  c.writeRaw(two.slice(10, 70));
  c.writeRaw(two.slice(70));
  c.writeRaw('{"jsonrpc":"2.0","id":3,"method":\0');
  c.writeRaw(Buffer.from([0xff, 0xfe, 0x00]));
  t.ok(await c.waitFor(() => c.unsolicitedErrors.length >= 2), 'two errors with id null');
  t.same(
    c.unsolicitedErrors.map((e) => e.code),
    [QRC_ERR.PARSE, QRC_ERR.PARSE],
    'bad JSON and bad UTF-8 are -32700',
  );
  t.match(await c.call('Control.Get', ['Label']), [{ Value: 'hello' }], 'the connection is still usable');
  t.equal(c.closed, false);

  c.writeRaw(Buffer.alloc(5000, 0x20));
  await c.closedPromise;
  t.equal(c.closed, true, 'oversize: closed');
  t.match(
    c.unsolicitedErrors.at(-1),
    { code: QRC_ERR.INVALID_REQUEST, message: /longer than 4096/ },
    'after an error reply',
  );
  t.equal(server.counters.oversizeCloses, 1);
});

t.test('TCP: AutoPoll pushes only changed controls', async (t) => {
  const { host: h, port, backend } = await startServer(t);
  const c = await connect(t, h, port);
  await c.call('ChangeGroup.AddControl', { Id: 'auto', Controls: ['MainGain', 'Label'] });
  await c.call('ChangeGroup.AutoPoll', { Id: 'auto', Rate: 0.1 });
  const pushes = () => c.notifications.filter((n) => n.method === 'ChangeGroup.Poll');
  t.ok(await c.waitFor(() => pushes().length >= 1), 'first push');
  t.match(
    pushes()[0]?.params,
    { Id: 'auto', Changes: [{ Name: 'MainGain' }, { Name: 'Label' }] },
    'first push holds everything',
  );
  backend.poke(undefined, 'Label', 'changed');
  t.ok(await c.waitFor(() => pushes().length >= 2), 'second push');
  t.same(
    pushes()[1]?.params,
    { Id: 'auto', Changes: [{ Name: 'Label', Value: 'changed', String: 'changed', Position: 0 }] },
    'only the change',
  );
});

t.test('TCP: idle close after the (short) idle timeout; NoOp keeps a client alive', async (t) => {
  const { host: h, port, server } = await startServer(t, { idleTimeoutMs: 1000 });
  const silent = await connect(t, h, port);
  const busy = await connect(t, h, port);
  let stop = false;
  const keep = (async () => {
    while (!stop && !busy.closed) {
      await busy.call('NoOp', {});
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  await silent.closedPromise;
  t.equal(silent.closed, true, 'the silent client was closed');
  t.equal(busy.closed, false, 'the NoOp client is still open');
  stop = true;
  await keep;
  t.ok(server.counters.idleCloses >= 1);
});

t.test('TCP: Logon required mode', async (t) => {
  const { host: h, port } = await startServer(t, { auth: { users: [{ User: 'admin', Password: 'pw' }] } });
  const c = await connect(t, h, port);
  t.ok(
    await c.waitFor(() => c.notifications.some((n) => n.method === 'EngineStatus')),
    'EngineStatus before Logon',
  );
  t.equal(await rpcCode(c.call('Control.Get', ['MainGain'])), QRC_ERR.LOGON_REQUIRED);
  t.equal(await rpcCode(c.call('StatusGet', 0)), QRC_ERR.LOGON_REQUIRED);
  t.equal(await rpcCode(c.call('Logon', { User: 'admin', Password: 'bad' })), QRC_ERR.LOGON_REQUIRED);
  t.same(await c.call('NoOp', {}), true);
  t.same(await c.call('Logon', { User: 'admin', Password: 'pw' }), true);
  t.match(await c.call('Control.Get', ['MainGain']), [{ Name: 'MainGain' }]);
  const other = await connect(t, h, port);
  t.equal(
    await rpcCode(other.call('Control.Get', ['MainGain'])),
    QRC_ERR.LOGON_REQUIRED,
    'logon is per connection',
  );
});

t.test('TCP: connection limit; groups die with the connection', async (t) => {
  const { host: h, port, server } = await startServer(t, { maxConnections: 2 });
  const a = await connect(t, h, port);
  await connect(t, h, port);
  await a.call('ChangeGroup.AddControl', { Id: 'g', Controls: ['Label'] });
  const third = net.connect({ host: h, port });
  third.on('error', () => undefined);
  await new Promise<void>((resolve) => third.on('close', () => resolve()));
  t.pass('the third connection was closed');
  t.equal(server.counters.refusedConnections, 1);
  t.equal(server.groupBudget.used, 1, 'one change group in use on the server');
  await a.close();
  t.ok(await waitUntil(() => server.groupBudget.used === 0), 'given back when the connection closes');
  const again = await connect(t, h, port);
  t.equal(
    await rpcCode(again.call('ChangeGroup.Poll', { Id: 'g' })),
    QRC_ERR.UNKNOWN_CHANGE_GROUP,
    'a new connection has no groups',
  );
});

interface WsClient {
  ws: WebSocket;
  msgs: Array<Record<string, unknown>>;
  wait: (pred: (m: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
  call: (id: number, method: string, params?: unknown) => Promise<Record<string, unknown>>;
}

async function wsClient(t: Test, url: string): Promise<WsClient> {
  const ws = new WebSocket(url);
  const msgs: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  ws.on('message', (d: Buffer) => {
    msgs.push(JSON.parse(d.toString('utf8')) as Record<string, unknown>);
    for (const w of [...waiters]) w();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  t.teardown(() => ws.terminate());
  const wait = (pred: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no such WebSocket message in 5 s')), 5000);
      const check = (): void => {
        const m = msgs.find(pred);
        if (m) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(m);
        }
      };
      waiters.add(check);
      check();
    });
  const call = (id: number, method: string, params?: unknown): Promise<Record<string, unknown>> => {
    ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    return wait((m) => m['id'] === id);
  };
  return { ws, msgs, wait, call };
}

t.test('WebSocket /qrc: same session logic, one message per JSON-RPC message', async (t) => {
  const { server, backend } = await startServer(t);
  const httpServer = http.createServer((_req, res) => res.end('plain http'));
  const h = host();
  await new Promise<void>((r) => httpServer.listen(0, h, () => r()));
  t.teardown(() => new Promise<void>((r) => httpServer.close(() => r())));
  server.attachWebSocket(httpServer);
  const port = (httpServer.address() as net.AddressInfo).port;
  const c = await wsClient(t, `ws://${h}:${port}/qrc`);
  await c.wait((m) => m['method'] === 'EngineStatus');
  t.pass('EngineStatus on connect');
  t.match(await c.call(1, 'StatusGet', 0), { result: { State: 'Active' } });
  t.same((await c.call(2, 'Control.Set', { Name: 'Label', Value: 'ws' }))['result'], true);
  t.match(await c.call(3, 'Control.Get', ['Label']), { result: [{ Value: 'ws' }] });
  t.match(await c.call(4, 'Component.Get', { Name: 'Nope', Controls: [] }), {
    error: { code: QRC_ERR.UNKNOWN_COMPONENT },
  });
  t.match(await c.call(5, 'Nope'), { error: { code: QRC_ERR.METHOD_NOT_FOUND } });
  c.ws.send('{"jsonrpc":"2.0","id":6,"method":"NoOp"}\0');
  t.match(await c.wait((m) => m['id'] === 6), { result: true }, 'a trailing NUL is accepted');
  c.ws.send('{broken');
  t.match(await c.wait((m) => m['id'] === null), { error: { code: QRC_ERR.PARSE } });
  await c.call(7, 'ChangeGroup.AddComponentControl', {
    Id: 'w',
    Component: { Name: 'Gain1', Controls: [{ Name: 'gain' }] },
  });
  await c.call(8, 'ChangeGroup.AutoPoll', { Id: 'w', Rate: 0.1 });
  await c.wait((m) => m['method'] === 'ChangeGroup.Poll');
  backend.poke('Gain1', 'gain', -42);
  const push = await c.wait(
    (m) => m['method'] === 'ChangeGroup.Poll' && JSON.stringify(m['params']).includes('-42'),
  );
  t.same(push['params'], {
    Id: 'w',
    Changes: [{ Component: 'Gain1', Name: 'gain', Value: -42, String: '-42', Position: 58 / 120 }],
  });
  t.equal(server.connectionCount, 1);

  const other = await new Promise<number>((resolve) => {
    const bad = new WebSocket(`ws://${h}:${port}/elsewhere`);
    bad.on('error', () => undefined);
    bad.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    bad.on('close', () => resolve(-1));
    setTimeout(() => {
      bad.terminate();
      resolve(-2);
    }, 1000);
  });
  t.equal(other, 404, 'other upgrade paths are answered 404 (no other upgrade handler here)');

  await server.stop();
  await new Promise<void>((r) =>
    c.ws.readyState === WebSocket.CLOSED ? r() : c.ws.once('close', () => r()),
  );
  t.pass('stop() closes WebSocket sessions');
});

t.test('WebSocket: idle close and Logon required', async (t) => {
  const { server } = await startServer(t, {
    idleTimeoutMs: 500,
    auth: { users: [{ User: 'u', Password: 'p' }] },
  });
  const httpServer = http.createServer();
  const h = host();
  await new Promise<void>((r) => httpServer.listen(0, h, () => r()));
  t.teardown(() => new Promise<void>((r) => httpServer.close(() => r())));
  server.attachWebSocket(httpServer, '/custom');
  const port = (httpServer.address() as net.AddressInfo).port;
  const c = await wsClient(t, `ws://${h}:${port}/custom`);
  t.match(await c.call(1, 'Control.Get', ['Label']), { error: { code: QRC_ERR.LOGON_REQUIRED } });
  t.match(await c.call(2, 'Logon', { User: 'u', Password: 'p' }), { result: true });
  t.match(await c.call(3, 'Control.Get', ['Label']), { result: [{ Name: 'Label' }] });
  const code = await new Promise<number>((r) => c.ws.once('close', (cd: number) => r(cd)));
  t.equal(code, 1000, 'closed for idleness');
});

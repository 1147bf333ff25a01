/**
 * The control link over real TCP and real mutual TLS 1.3 on loopback (127.0.1.x, ports 170xx):
 * methods, malformed frames and the connection rules, ownership between two Cores, change-group
 * pushes, idle timeout, client limit, and trust (trusted, pending, declined Cores, plaintext
 * refused in secure mode). Certificates come from the openssl CLI.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { StateStore } from '../../firmware/config/state-store.js';
import { FakeStreamApi } from '../../firmware/control/apis.js';
import { runControlCli } from '../../firmware/control/cli.js';
import { ControlCallError, ControlClient } from '../../firmware/control/client.js';
import { RPC_ERR } from '../../firmware/control/jsonrpc.js';
import { ControlService, type ControlServiceOptions } from '../../firmware/control/service.js';
import { declineCore, trustCore } from '../../firmware/control/trust.js';
import { FakeSerialBinding } from '../../firmware/io/serial-fake.js';
import { SerialBridge } from '../../firmware/io/serial-bridge.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { ROOT } from '../helpers/processes.js';

const BOARD = loadBoardConfig(path.join(ROOT, 'board-configs', 'virtual.json'));
const HOST = '127.0.1.10';
const CORE_A = '127.0.1.11';
const CORE_B = '127.0.1.12';

function haveOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function makeCert(dir: string, cn: string): { key: string; cert: string; fingerprint: string } {
  const key = path.join(dir, `${cn}.key`);
  const cert = path.join(dir, `${cn}.crt`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
    ],
    { stdio: 'ignore' },
  );
  const pem = readFileSync(cert, 'utf8');
  return { key: readFileSync(key, 'utf8'), cert: pem, fingerprint: new X509Certificate(pem).fingerprint256 };
}

async function rig(t: Test, port: number, extra: Partial<ControlServiceOptions> = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-ctl-'));
  const logger = createMemoryLogger();
  const state = await StateStore.open({ dir, logger });
  const events = { design: [] as unknown[], identify: [] as number[] };
  const svc = new ControlService({
    board: BOARD,
    state,
    logger,
    clock: createSystemClock(),
    port,
    host: HOST,
    hooks: {
      onDesignChanged: (d) => events.design.push(d),
      onIdentify: (s) => events.identify.push(s),
      firmwareStatus: () => ({ State: 'idle', Version: '0.1.0' }),
    },
    ...extra,
  });
  await svc.start();
  const clients: ControlClient[] = [];
  const connect = async (opts: { local?: string; tls?: { key: string; cert: string } } = {}) => {
    const c = await ControlClient.connect({
      host: HOST,
      port,
      localAddress: opts.local ?? CORE_A,
      tls: opts.tls,
      timeoutMs: 10_000,
    });
    clients.push(c);
    return c;
  };
  t.teardown(async () => {
    for (const c of clients) c.socket.destroy();
    await svc.stop();
  });
  return { svc, state, logger, events, connect, dir };
}

async function rpcErr(p: Promise<unknown>): Promise<ControlCallError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ControlCallError) return err;
    throw err;
  }
  throw new Error('expected a JSON-RPC error');
}

t.test('plaintext: methods, malformed frames, ownership, change groups, serial', async (t) => {
  const serialBinding = new FakeSerialBinding(['virtual:serial1']);
  const serial = new SerialBridge({
    ports: BOARD.serial,
    binding: serialBinding,
    logger: createMemoryLogger(),
  });
  const { svc, state, events, connect } = await rig(t, 17001, { serial, ownerGraceMs: 400 });
  const level = svc.registry.register({
    name: 'test.level',
    type: 'float',
    min: -100,
    max: 0,
    unit: 'dB',
    writable: false,
  });
  svc.registry.register({ name: 'test.gain', type: 'float', min: -100, max: 20, unit: 'dB', writable: true });

  const a = await connect({ local: CORE_A });
  const status = await a.call<Record<string, unknown>>('Status.Get');
  t.match(status, {
    Platform: 'qperiph',
    State: 'Idle',
    SecureComm: false,
    Transport: 'plain',
    Owned: false,
    CanWrite: true,
  });
  const list = await a.call<Array<{ Name: string }>>('Controls.List');
  t.ok(list.some((c) => c.Name === 'status.state') && list.some((c) => c.Name === 'test.gain'));

  // Bad input: each gets its error and the connection goes on.
  t.equal((await rpcErr(a.call('No.Such'))).rpcCode, RPC_ERR.METHOD_NOT_FOUND);
  t.equal((await rpcErr(a.call('Controls.Set', { Name: 'test.gain' }))).rpcCode, RPC_ERR.INVALID_PARAMS);
  t.equal((await rpcErr(a.call('Controls.Get', ['nope']))).rpcCode, RPC_ERR.UNKNOWN_CONTROL);
  t.equal(
    (await rpcErr(a.call('Controls.Set', { Name: 'test.level', Value: -3 }))).rpcCode,
    RPC_ERR.READ_ONLY_CONTROL,
  );
  a.writeRaw('{"jsonrpc":"2.0","id":1,\0');
  a.writeRaw(Buffer.from([0x7b, 0xff, 0x7d, 0]));
  a.writeRaw('\0');
  a.writeRaw('[{"jsonrpc":"2.0","id":2,"method":"NoOp"}]\0');
  await a.waitFor(() => a.unsolicitedErrors.length >= 4);
  t.same(
    a.unsolicitedErrors.map((e) => e.code),
    [RPC_ERR.PARSE, RPC_ERR.BAD_FRAME, RPC_ERR.BAD_FRAME, RPC_ERR.INVALID_REQUEST],
  );
  t.same(await a.call('NoOp'), {}, 'still serving after bad frames');

  // Identify and firmware hooks.
  t.same(await a.call('Peripheral.Identify', { Seconds: 5 }), { Seconds: 5 });
  t.same(events.identify, [5]);
  t.same(await a.call('Firmware.Status'), { State: 'idle', Version: '0.1.0' });
  t.equal((await rpcErr(a.call('Stream.Open', { Direction: 'send' }))).rpcCode, RPC_ERR.NOT_AVAILABLE);

  // Core A claims; Core B is read-only.
  const assigned = await a.call('Design.Assign', {
    Name: 'Bench Design',
    Code: 'abc123XYZ',
    Role: 'io-1',
    Core: 'core-a',
  });
  t.match(assigned, { Owner: true, Trusted: false, SecureComm: false });
  t.match(state.get().design, { name: 'Bench Design', code: 'abc123XYZ', role: 'io-1', primary: true });
  t.equal(events.design.length, 1);
  const b = await connect({ local: CORE_B });
  t.match(await b.call('Status.Get'), { State: 'Active', Owned: true, IsOwner: false, CanWrite: false });
  t.same(await b.call('Controls.Get', ['test.gain']), [
    { Name: 'test.gain', Value: 0, String: '0.00dB', Position: 100 / 120 },
  ]);
  t.equal(
    (await rpcErr(b.call('Controls.Set', { Name: 'test.gain', Value: -10 }))).rpcCode,
    RPC_ERR.NOT_OWNER,
  );
  t.equal(
    (await rpcErr(b.call('Design.Assign', { Name: 'Other', Code: 'zzz', Role: 'x' }))).rpcCode,
    RPC_ERR.NOT_OWNER,
  );
  t.equal((await rpcErr(b.call('Design.Release'))).rpcCode, RPC_ERR.NOT_OWNER);
  t.match(await a.call('Controls.Set', { Name: 'test.gain', Value: -10 }), { Name: 'test.gain', Value: -10 });
  const multi = await a
    .call<unknown[]>('Controls.Set', {
      Controls: [
        { Name: 'test.gain', Value: -20 },
        { Name: 'test.level', Value: -1 },
      ],
    })
    .catch((e: ControlCallError) => e);
  t.equal((multi as ControlCallError).rpcCode, RPC_ERR.READ_ONLY_CONTROL, 'one bad item refuses the batch');
  t.match(await b.call('Controls.Get', { Names: ['test.gain'] }), [{ Value: -10 }], 'and changed nothing');

  // Change group pushed at 20 Hz to B (read-only Cores may watch).
  t.match(await b.call('ChangeGroup.AddControl', { Id: 'g', Controls: ['test.level', 'test.gain'] }), {
    Id: 'g',
    Count: 2,
  });
  t.match(await b.call('ChangeGroup.Poll', { Id: 'g' }), {
    Id: 'g',
    Changes: [{ Name: 'test.level' }, { Name: 'test.gain' }],
  });
  t.equal((await rpcErr(b.call('ChangeGroup.Poll', { Id: 'nope' }))).rpcCode, RPC_ERR.UNKNOWN_CHANGE_GROUP);
  await b.call('ChangeGroup.AutoPoll', { Id: 'g', Rate: 0.05 });
  level.update(-42);
  const pushed = () =>
    b.notifications.some(
      (n) => n.method === 'ChangeGroup.Poll' && JSON.stringify(n.params).includes('"Value":-42'),
    );
  t.ok(await b.waitFor(pushed), 'the change was pushed');
  await b.call('ChangeGroup.Destroy', { Id: 'g' });

  // Serial bridged over the link (fake port here; real PTYs in io-serial.test.ts).
  t.match(await a.call('Serial.List'), [{ Name: 'serial1', Open: false, BaudRate: 9600 }]);
  t.match(await a.call('Serial.Open', { Name: 'SERIAL1', BaudRate: 115200 }), {
    Name: 'serial1',
    Open: true,
    BaudRate: 115200,
  });
  t.same(
    await a.call('Serial.Write', { Name: 'serial1', Data: Buffer.from('PING\r\n').toString('base64') }),
    { Bytes: 6 },
  );
  const dev = serialBinding.device('virtual:serial1');
  t.equal(dev.writtenBytes.toString(), 'PING\r\n');
  dev.send('PONG\r\n');
  dev.lineError('framing error');
  t.ok(await a.waitFor(() => a.notifications.some((n) => n.method === 'Serial.Error')));
  const data = a.notifications.find((n) => n.method === 'Serial.Data')!.params as {
    Name: string;
    Data: string;
  };
  t.equal(Buffer.from(data.Data, 'base64').toString(), 'PONG\r\n');
  t.match(await a.call('Serial.Configure', { Name: 'serial1', Parity: 'even', StopBits: 2 }), {
    Parity: 'even',
    StopBits: 2,
  });
  t.equal(dev.reopens, 1);
  t.equal(
    (await rpcErr(a.call('Serial.Configure', { Name: 'serial1', BaudRate: 12345 }))).rpcCode,
    RPC_ERR.INVALID_PARAMS,
  );
  t.equal(
    (await rpcErr(a.call('Serial.Write', { Name: 'serial1', Data: '!!' }))).rpcCode,
    RPC_ERR.INVALID_PARAMS,
  );
  t.equal((await rpcErr(a.call('Serial.Open', { Name: 'nope' }))).rpcCode, RPC_ERR.UNKNOWN_SERIAL_PORT);
  t.equal(
    (await rpcErr(b.call('Serial.Write', { Name: 'serial1', Data: 'AA==' }))).rpcCode,
    RPC_ERR.NOT_OWNER,
  );

  // The owner leaves: B stays refused during the grace period, then may claim.
  await a.close();
  t.ok(await b.waitFor(() => !dev.isOpen, 5000), "the departed owner's serial port was closed");
  t.equal(
    (await rpcErr(b.call('Design.Assign', { Name: 'B', Code: 'bbb', Role: 'r' }))).rpcCode,
    RPC_ERR.NOT_OWNER,
  );
  let claimed = false;
  for (let i = 0; i < 100 && !claimed; i++) {
    claimed = await b.call('Design.Assign', { Name: 'B', Code: 'bbb', Role: 'r' }).then(
      () => true,
      () => new Promise<boolean>((r) => setTimeout(() => r(false), 50)),
    );
  }
  t.ok(claimed, 'B claims after the grace period');
  t.match(state.get().design, { code: 'bbb' });
  t.same(await b.call('Design.Release'), {});
  t.equal(state.get().design, null);
  t.equal(events.design.at(-1), null);

  // Oversize: error 32 and the connection closes.
  const c = await connect({ local: CORE_A });
  c.writeRaw(Buffer.alloc(300 * 1024, 0x20));
  await c.closedPromise;
  t.equal(c.unsolicitedErrors[0]?.code, RPC_ERR.TOO_LARGE);
  t.ok(svc.counters.errors['CONTROL_ERR_TOO_LARGE']! >= 1);
});

t.test('idle timeout, client limit, owner reconnect, firmware events, CLI', async (t) => {
  const { svc, connect } = await rig(t, 17002, { idleTimeoutMs: 1500, maxClients: 2 });
  const a = await connect();
  await a.call('NoOp');
  await a.closedPromise;
  t.ok(
    a.notifications.some((n) => n.method === 'Connection.Closing'),
    'told why before closing',
  );
  t.equal(svc.counters.closedIdle, 1);

  const b = await connect();
  const c = await connect();
  await b.call('NoOp');
  await c.call('NoOp');
  const d = await connect();
  await d.closedPromise;
  t.match(d.unsolicitedErrors[0], { code: RPC_ERR.REFUSED, data: { Reason: 'too-many-clients' } });
  await b.close();
  await c.close();

  // The owner drops and comes back (same identity) within the grace period: still the owner.
  const owner = await connect({ local: CORE_A });
  await owner.call('Design.Assign', { Name: 'D', Code: 'c0de', Role: 'io' });
  await owner.close();
  const again = await connect({ local: CORE_A });
  t.match(await again.call('Status.Get'), { Owned: true, IsOwner: true, CanWrite: true });
  svc.notifyFirmware({ State: 'downloading', Progress: 0.5 });
  t.ok(await again.waitFor(() => again.notifications.some((n) => n.method === 'Firmware.Event')));
  t.same(again.notifications.find((n) => n.method === 'Firmware.Event')!.params, {
    State: 'downloading',
    Progress: 0.5,
  });
  await again.close();

  // The CLI client.
  let out = '';
  let err = '';
  const io = { out: (x: string) => (out += x), err: (x: string) => (err += x) };
  const base = ['--host', HOST, '--port', '17002', '--local', CORE_B];
  t.equal(await runControlCli(['call', 'Status.Get', ...base], {}, io), 0);
  t.match(JSON.parse(out), { State: 'Active', IsOwner: false });
  t.equal(await runControlCli(['call', 'Controls.Get', '["status.state"]', ...base], {}, io), 0);
  t.equal(await runControlCli(['call', 'No.Such', ...base], {}, io), 1);
  t.match(JSON.parse(err.trim()), { code: RPC_ERR.METHOD_NOT_FOUND });
  t.equal(await runControlCli(['call', 'NoOp', '{bad', ...base], {}, io), 2);
  t.equal(await runControlCli([], {}, io), 2);
  t.equal(await runControlCli(['--help'], {}, io), 0);
  t.match(out, /Usage: qperiph control call/);
});

const skipTls = haveOpenssl() ? false : 'openssl CLI not installed (apt-get install -y openssl)';

t.test(
  'mutual TLS: auto-trust on first claim, pending, declined, plaintext refused',
  { skip: skipTls },
  async (t) => {
    const certDir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-ctl-certs-'));
    const device = makeCert(certDir, 'qperiph-device');
    const core1 = makeCert(certDir, 'core1');
    const core2 = makeCert(certDir, 'core2');
    const core3 = makeCert(certDir, 'core3');
    const stream = new FakeStreamApi();
    let trustChanges = 0;
    const { svc, state, connect } = await rig(t, 17003, {
      identity: () => ({ key: device.key, cert: device.cert }),
      stream,
      hooks: { onTrustChanged: () => trustChanges++ },
    });

    // Before any trust: plaintext works, TLS works and the Core is recorded as pending.
    const plain = await connect({ local: CORE_B });
    t.match(await plain.call('Status.Get'), { SecureComm: false });
    const c1 = await connect({ local: CORE_A, tls: core1 });
    t.equal((c1.socket as tls.TLSSocket).getProtocol(), 'TLSv1.3');
    t.match(await c1.call('Status.Get'), { Transport: 'tls', Trusted: false, SecureComm: false });
    t.ok(
      await c1.waitFor(() => state.get().pendingCores.some((c) => c.fingerprint256 === core1.fingerprint)),
    );
    t.equal(state.get().pendingCores[0]!.name, 'core1', 'named from the certificate CN');

    // The first claim over TLS trusts core1: secure communication on, plaintext dropped.
    t.match(await c1.call('Design.Assign', { Name: 'D', Code: 'code1', Role: 'io', Core: 'core1' }), {
      Owner: true,
      Trusted: true,
      SecureComm: true,
    });
    t.same(
      state.get().trustedCores.map((c) => c.fingerprint256),
      [core1.fingerprint],
    );
    t.same(state.get().pendingCores, []);
    t.ok(trustChanges >= 1);
    await plain.closedPromise;
    t.match(plain.unsolicitedErrors[0], {
      code: RPC_ERR.REFUSED,
      data: { Reason: 'plaintext-in-secure-mode' },
    });
    const plain2 = await connect({ local: CORE_B });
    await plain2.call('NoOp').catch(() => undefined);
    await plain2.closedPromise;
    t.match(plain2.unsolicitedErrors[0], { data: { Reason: 'plaintext-in-secure-mode' } });

    // Streams go through the injected API.
    t.match(
      await c1.call('Stream.Open', {
        Direction: 'send',
        Address: '127.0.1.50',
        Port: 6518,
        Channels: [1, 2],
      }),
      {
        StreamId: 's1',
        channels: [1, 2],
      },
    );
    t.match(stream.opened[0], { direction: 'send', format: 'qlan', core: `cert:${core1.fingerprint}` });
    t.match(
      await rpcErr(
        c1.call('Stream.Open', { Direction: 'send', Address: '127.0.1.50', Port: 6519, Channels: [1] }),
      ),
      {
        rpcCode: RPC_ERR.STREAM_FAILED,
        data: { Code: 'AUDIO_ERR_BAD_PORT' },
      },
    );
    t.equal(
      (await rpcErr(c1.call('Stream.Open', { Direction: 'up', Address: 'x', Port: 1, Channels: [] })))
        .rpcCode,
      RPC_ERR.INVALID_PARAMS,
    );

    // An unknown Core: pending, refused.
    const c2 = await connect({ local: CORE_B, tls: core2 });
    await c2.closedPromise;
    t.match(c2.unsolicitedErrors[0], { code: RPC_ERR.REFUSED, data: { Reason: 'pending' } });
    t.ok(state.get().pendingCores.some((c) => c.fingerprint256 === core2.fingerprint));

    // A declined Core: refused, and not added to pending.
    await declineCore(state, { name: 'core3', fingerprint256: core3.fingerprint }, new Date().toISOString());
    const c3 = await connect({ local: CORE_B, tls: core3 });
    await c3.closedPromise;
    t.match(c3.unsolicitedErrors[0], { data: { Reason: 'declined' } });
    t.notOk(state.get().pendingCores.some((c) => c.fingerprint256 === core3.fingerprint));

    // The admin trusts core2: it connects, but core1 owns, so it is read-only.
    await trustCore(state, { fingerprint256: core2.fingerprint }, new Date().toISOString());
    t.same(state.get().pendingCores, []);
    const c2b = await connect({ local: CORE_B, tls: core2 });
    t.match(await c2b.call('Status.Get'), { Trusted: true, IsOwner: false, CanWrite: false });
    t.equal(
      (await rpcErr(c2b.call('Controls.Set', { Name: 'identify', Value: true }))).rpcCode,
      RPC_ERR.NOT_OWNER,
    );

    // A client without a certificate, and one offering only TLS 1.2, are turned away.
    const noCert = await connect({ local: CORE_B, tls: undefined }).catch(() => null);
    if (noCert) {
      await noCert.call('NoOp').catch(() => undefined);
      await noCert.closedPromise;
      t.match(noCert.unsolicitedErrors[0], { data: { Reason: 'plaintext-in-secure-mode' } });
    }
    const old = tls.connect({
      host: HOST,
      port: 17003,
      maxVersion: 'TLSv1.2',
      rejectUnauthorized: false,
      key: core1.key,
      cert: core1.cert,
    });
    const oldResult = await new Promise<string>((resolve) => {
      old.once('secureConnect', () => resolve('connected'));
      old.once('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
    old.destroy();
    t.match(oldResult, /^error/, 'TLS 1.2 refused');

    // Declining the owner while it is connected closes its session.
    await declineCore(state, { fingerprint256: core1.fingerprint }, new Date().toISOString());
    svc.applyTrust();
    await c1.closedPromise;
    t.match(c1.unsolicitedErrors.at(-1), { data: { Reason: 'declined' } });
    t.equal(stream.closed.length, 1, "the declined Core's stream was closed");

    // A raw TCP peer that sends a TLS record to a server without identity is simply dropped.
    const raw = net.connect({ host: HOST, port: 17003, localAddress: CORE_B });
    await new Promise<void>((r) => raw.once('connect', () => r()));
    raw.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x01, 0x00]));
    await new Promise<void>((r) => raw.once('close', () => r()));
    t.pass('garbage handshake does not crash the server');
    t.match(await c2b.call('Status.Get'), { Trusted: true });
  },
);

t.test(
  'core presence: core-connected on claim, core-lost when the owner drops, back on reconnect',
  async (t) => {
    const presence: string[] = [];
    const { svc, connect } = await rig(t, 17004, {
      hooks: {
        onCorePresence: (ev) => presence.push(`${ev.event}:${ev.core}`),
        clockStatus: () => ({ state: 'free-running', offsetNs: null, grandmaster: null }),
      },
    });
    const a = await connect({ local: CORE_A });
    t.match(await a.call('Clock.Status'), { state: 'free-running' });
    t.equal(svc.coreConnected(), false);
    await a.call('Design.Assign', { Name: 'D', Code: 'D1', Role: 'io', Core: 'core-a' });
    t.same(presence, ['core-connected:core-a']);
    t.equal(svc.coreConnected(), true);
    a.socket.destroy();
    await a.closedPromise;
    await new Promise((r) => setTimeout(r, 100));
    t.same(presence, ['core-connected:core-a', 'core-lost:core-a'], 'the owner dropped');
    const again = await connect({ local: CORE_A });
    await again.call('NoOp');
    t.same(presence.at(-1), 'core-connected:core-a', 'the owner is back (same identity)');
    await again.call('Design.Release');
    t.same(presence.at(-1), 'core-lost:null', 'released: no Core owns it');
  },
);

t.test('Clock.Status without a clock hook: not available (22)', async (t) => {
  const { connect } = await rig(t, 17005);
  const a = await connect({ local: CORE_A });
  t.equal((await rpcErr(a.call('Clock.Status'))).rpcCode, RPC_ERR.NOT_AVAILABLE);
});

/**
 * The emulated Core against real peripherals on loopback (127.0.6.x): two `qperiph start`
 * processes, a redundant pair of Cores in this process sharing one identity. Checks: the Cores
 * find the peripherals by QDP, the primary claims them over mutual TLS (secure communication on,
 * certificates pinned), pushes the design's control values, drives controls over 1700, exposes
 * them over QRC on 1710 (both ways), serves the dashboard; when the primary dies the backup takes
 * over and the peripherals follow within 10 s (each peripheral logs core_lost then
 * core_connected); a peripheral whose certificate changed is refused (pin mismatch).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { WebSocket } from 'ws';
import { ControlClient } from '../../firmware/control/client.js';
import { encodeFrame, FrameDecoder } from '../../firmware/control/frame-codec.js';
import { createJsonLogger, type Logger } from '../../firmware/log/logger.js';
import { Core } from '../../bench/core/core.js';
import { parseDesign } from '../../bench/core/design.js';
import { createDevSigner, signAppBundle } from '../../bench/core/signer.js';
import { CliProcess, ROOT } from '../helpers/processes.js';

const BOARD = path.join(ROOT, 'board-configs', 'virtual.json');
const CORE_A = '127.0.6.1';
const CORE_B = '127.0.6.2';
const PERIPHERALS = [
  { name: 'stage-io-1', address: '127.0.6.11' },
  { name: 'stage-io-2', address: '127.0.6.12' },
];

const logger: Logger =
  process.env['CORE_TEST_LOG'] === '1'
    ? createJsonLogger({ level: 'info' })
    : createJsonLogger({ write: () => undefined });

async function until<T>(what: string, fn: () => T | null | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One QRC request over TCP (NUL-framed JSON-RPC), resolving with the reply. */
async function qrc(
  host: string,
  port: number,
  method: string,
  params: unknown,
): Promise<Record<string, unknown>> {
  const sock = net.connect({ host, port });
  const decoder = new FrameDecoder({ maxMessageBytes: 1 << 20 });
  try {
    return await new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.on('data', (chunk: Buffer) => {
        for (const ev of decoder.push(chunk)) {
          if (ev.kind !== 'frame') continue;
          const msg = JSON.parse(ev.text) as Record<string, unknown>;
          if (msg['id'] === 1) resolve(msg);
        }
      });
      sock.write(encodeFrame({ jsonrpc: '2.0', id: 1, method, params }));
      setTimeout(() => reject(new Error(`${method}: no QRC reply`)), 5000);
    });
  } finally {
    sock.destroy();
  }
}

t.test('emulated Core: discover, claim, push, drive, QRC, failover, pins', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-core-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const start = (p: (typeof PERIPHERALS)[number]): CliProcess =>
    new CliProcess([
      'start',
      '--board',
      BOARD,
      '--state-dir',
      path.join(dir, p.name),
      '--address',
      p.address,
      '--name',
      p.name,
    ]);
  const t0 = Date.now();
  const procs = PERIPHERALS.map(start);
  t.teardown(() => Promise.all(procs.map((p) => p.stop())));
  await Promise.all(procs.map((p) => p.waitFor((r) => r.event === 'ready', 60_000)));
  t.comment(`peripherals ready after ${Date.now() - t0} ms`);

  const design = parseDesign({
    schemaVersion: 1,
    name: 'Core Test',
    code: 'CoreTest01',
    peripherals: PERIPHERALS.map((p) => ({
      name: p.name,
      partNumber: 'qperiph-virtual',
      controls: [
        { name: 'audio.out.1.gain', value: -6 },
        { name: 'audio.out.1.mute', value: false },
        { name: 'gpio-out-1', value: true },
        { name: 'audio.in.1.peak' },
      ],
    })),
  });
  writeFileSync(path.join(dir, 'design.json'), JSON.stringify(design));
  const identityDir = path.join(dir, 'core-identity');
  const common = { design, identityDir, secure: true, logger, dashboardPort: 0 };
  const coreA = await Core.start({
    ...common,
    address: CORE_A,
    stateDir: path.join(dir, 'core-a'),
    name: 'qcore-a',
    role: 'primary',
    peer: CORE_B,
    qrcPort: 1710,
  });
  const coreB = await Core.start({
    ...common,
    address: CORE_B,
    stateDir: path.join(dir, 'core-b'),
    name: 'qcore-b',
    role: 'backup',
    peer: CORE_A,
    qrcPort: 1710,
  });
  t.teardown(() => Promise.all([coreA.stop(), coreB.stop()]));

  // Discovery and claim: the primary goes active, the backup stands by.
  await until(
    'both peripherals connected to the primary',
    () => PERIPHERALS.every((p) => coreA.inventory.get(p.name)?.link === 'connected'),
    20_000,
  );
  t.comment(`claimed after ${Date.now() - t0} ms`);
  t.equal(coreA.state, 'active');
  t.equal(coreB.state, 'standby', 'the backup hears the active primary and stands by');
  for (const p of PERIPHERALS) {
    const s = coreA.inventory.get(p.name)!;
    t.equal(s.online, true, `${p.name} heard on QDP`);
    t.equal(s.address, p.address, `${p.name} address from QDP`);
    t.equal(s.secure, true, `${p.name}: secure communication on after the claim`);
    t.match(s.fingerprint, /^[0-9A-F:]{95}$/, `${p.name} certificate fingerprint recorded`);
    t.equal(coreA.pins.get(p.name), s.fingerprint, `${p.name} pinned`);
    t.equal(s.configPushed, 'https', `${p.name} configuration pushed over HTTPS (contract A)`);
    t.ok(s.version, `${p.name} firmware version ${s.version}`);
    t.equal(coreB.inventory.get(p.name)?.online, true, `the backup hears ${p.name} too`);
    t.equal(coreB.inventory.get(p.name)?.link, 'idle', 'the backup does not connect');
  }
  const p1 = PERIPHERALS[0]!;
  const linkA = coreA.links.get(p1.name)!;
  t.equal(linkA.getControl('audio.out.1.gain')?.Value, -6, 'design value pushed');
  t.equal(linkA.getControl('gpio-out-1')?.Value, true, 'design value pushed (gpio)');
  t.equal(linkA.getControl('audio.out.2.gain'), null, 'controls outside the design are not exposed');

  // Secure communication: plaintext is refused now.
  const plain = await ControlClient.connect({ host: p1.address, port: 1700, localAddress: '127.0.6.30' });
  await plain.call('NoOp').catch(() => undefined);
  await plain.waitFor(() => plain.closed, 5000);
  t.equal((plain.unsolicitedErrors[0]?.data as { Reason?: string })?.Reason, 'plaintext-in-secure-mode');

  // Drive a control over 1700; the change comes back through the link's change group.
  await linkA.set('audio.out.1.gain', -12);
  t.equal(linkA.getControl('audio.out.1.gain')?.Value, -12);

  // QRC on 1710: components, controls, and a set that reaches the peripheral.
  const comps = await qrc(CORE_A, 1710, 'Component.GetComponents', {});
  t.same(
    ((comps['result'] as Array<{ Name: string }>) ?? []).map((c) => c.Name).sort(),
    PERIPHERALS.map((p) => p.name),
    'each peripheral is a QRC component',
  );
  const got = await qrc(CORE_A, 1710, 'Component.Get', {
    Name: p1.name,
    Controls: [{ Name: 'audio.out.1.gain' }],
  });
  t.match(got['result'], { Name: p1.name, Controls: [{ Name: 'audio.out.1.gain', Value: -12 }] });
  const set = await qrc(CORE_A, 1710, 'Component.Set', {
    Name: p1.name,
    Controls: [{ Name: 'audio.out.1.gain', Value: -3 }],
  });
  t.notOk(set['error'], 'Component.Set accepted');
  await until(
    'QRC set seen on the peripheral',
    () => linkA.getControl('audio.out.1.gain')?.Value === -3,
    5000,
  );
  const ro = await qrc(CORE_A, 1710, 'Component.Set', {
    Name: p1.name,
    Controls: [{ Name: 'audio.in.1.peak', Value: -3 }],
  });
  t.ok(ro['error'], 'a read-only control cannot be set over QRC');
  const status = await qrc(CORE_A, 1710, 'StatusGet', {});
  t.match(status['result'], {
    State: 'Active',
    DesignCode: 'CoreTest01',
    IsRedundant: true,
    IsEmulator: true,
  });

  // Dashboard: one JSON snapshot over HTTP.
  const dash = coreA.dashboard!.address()!;
  const snap = (await (await fetch(`http://${dash.host}:${dash.port}/api/state`)).json()) as {
    core: { state: string };
    inventory: Array<{ name: string; link: string }>;
  };
  t.equal(snap.core.state, 'active');
  t.equal(snap.inventory.filter((p) => p.link === 'connected').length, 2);
  const ws = new WebSocket(`ws://${dash.host}:${dash.port}/ws`);
  const pushed = await new Promise<{ core: { name: string } }>((resolve, reject) => {
    ws.once('message', (m: Buffer) => resolve(JSON.parse(m.toString('utf8')) as { core: { name: string } }));
    ws.once('error', reject);
  });
  ws.terminate();
  t.equal(pushed.core.name, 'qcore-a', 'the dashboard WebSocket pushes snapshots');
  const page = await fetch(`http://${dash.host}:${dash.port}/`);
  t.equal(page.status, 200);
  t.match(await page.text(), /Inventory/);

  // Firmware: the Core signs a bundle with its dev signing key and rolls it out, canary first,
  // halting on a failure. These peripherals do not trust that signer (no dev anchor): the canary
  // refuses the bundle, the rollout halts and the second peripheral is never touched.
  const signer = await createDevSigner({ dir: path.join(dir, 'signer') });
  const tree = path.join(dir, 'tree');
  mkdirSync(path.join(tree, 'dist', 'firmware'), { recursive: true });
  writeFileSync(path.join(tree, 'package.json'), JSON.stringify({ name: 'qperiph', version: '9.9.9' }));
  writeFileSync(path.join(tree, 'dist', 'firmware', 'cli.js'), '');
  const bundle = await signAppBundle({
    tree,
    out: path.join(dir, 'app.qbundle'),
    version: '9.9.9',
    securityVersion: 1,
    signer,
  });
  const results = await coreA.startRollout({
    bundle: bundle.path,
    expectVersion: '9.9.9',
    policy: { kind: 'canary-waves', canary: 1, waveSize: 1, maxInFlight: 1, haltOnFailure: true },
    timeoutMs: 20_000,
  });
  t.match(
    results.map((r) => [r.id, r.state]),
    [
      [PERIPHERALS[0]!.name, 'refused'],
      [PERIPHERALS[1]!.name, 'pending'],
    ],
    'canary refused an untrusted bundle; the rollout halted',
  );
  t.equal(
    (coreA.snapshot() as { rollout: { state: string } }).rollout.state,
    'done',
    'the dashboard shows the rollout',
  );

  // Failover: the primary dies; the backup takes over, the peripherals follow within 10 s.
  const killedAt = Date.now();
  await coreA.kill();
  await until(
    'the backup active with both peripherals',
    () =>
      coreB.state === 'active' && PERIPHERALS.every((p) => coreB.inventory.get(p.name)?.link === 'connected'),
    10_000,
  );
  const tookMs = Date.now() - killedAt;
  t.pass(`backup took over and both peripherals follow after ${tookMs} ms`);
  for (const proc of procs) {
    const lost = await proc.waitFor((r) => r.event === 'core_lost', 2000);
    const back = await proc.waitFor(
      (r) => r.event === 'core_connected' && (r['_atMs'] as number) > (lost['_atMs'] as number),
      2000,
    );
    t.ok(
      back,
      'peripheral: core_lost, then core_connected (muted in between when main.ts wires FailoverMute)',
    );
  }
  const linkB = coreB.links.get(p1.name)!;
  t.equal(linkB.getControl('audio.out.1.gain')?.Value, -6, 'the backup pushed the design values again');
  await linkB.set('gpio-out-1', false);
  t.equal(linkB.getControl('gpio-out-1')?.Value, false, 'the backup drives the peripheral');

  t.comment(`failover done after ${Date.now() - t0} ms`);
  // A peripheral whose certificate is not the pinned one is refused, never driven. (Same as a
  // peripheral that got a new key: what the Core compares is presented vs pinned.)
  const p2 = PERIPHERALS[1]!;
  const realPin = coreB.pins.get(p2.name)!;
  await coreB.pins.pin(p2.name, realPin.replace(/^../, realPin.startsWith('00') ? '11' : '00'));
  coreB.links.get(p2.name)!.drop();
  await until('pin mismatch reported', () => coreB.inventory.get(p2.name)?.link === 'pin-mismatch', 10_000);
  t.equal(coreB.links.get(p2.name)!.connected(), false);
});

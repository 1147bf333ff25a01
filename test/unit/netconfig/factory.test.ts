import { createServer, type Server } from 'node:net';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../../firmware/config/board-config.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import {
  createConnectivityProbe,
  createNetconfigForBoard,
  defaultNetworkSettings,
  gatewayTargets,
  parseDefaultGateways,
  probeTcp,
  type ProbeTarget,
} from '../../../firmware/netconfig/index.js';
import { findProjectRoot } from '../../../firmware/paths.js';

const board = (name: string) => loadBoardConfig(join(findProjectRoot(), 'board-configs', `${name}.json`));

const ROUTES = [
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
  'eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0',
  'eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0',
  'wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0',
  'eth1\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0',
  'garbage',
  '',
].join('\n');

async function listen(host: string): Promise<Server> {
  const s = createServer((c) => c.end());
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  return s;
}
const portOf = (s: Server) => (s.address() as { port: number }).port;
const close = (s: Server) => new Promise<void>((resolve) => s.close(() => resolve()));

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

t.test('default gateways from /proc/net/route (pure)', async (t) => {
  t.same(parseDefaultGateways(ROUTES), [
    { iface: 'eth0', gateway: '192.168.0.1' },
    { iface: 'wlan0', gateway: '192.168.1.1' },
  ]);
  t.same(parseDefaultGateways(''), []);
  t.same(parseDefaultGateways('header\neth0 0000000 zz 3 0 0 0 00000000'), []);
  const targets = gatewayTargets(
    {
      hostname: 'x',
      dns: [],
      lanA: { mode: 'static', address: '10.0.0.2', prefixLength: 24, gateway: '10.0.0.1' },
      lanB: null,
    },
    { lanA: 'eth0', lanB: null },
    parseDefaultGateways(ROUTES),
  );
  t.same(
    targets.map((x) => `${x.host}:${x.port}`),
    ['10.0.0.1:53', '10.0.0.1:80', '10.0.0.1:443', '192.168.0.1:53', '192.168.0.1:80', '192.168.0.1:443'],
    'static gateway + default route on our interface; wlan0 ignored',
  );
});

t.test('TCP probe: accept vs answer, no targets', async (t) => {
  const s = await listen('127.0.3.210');
  const port = portOf(s);
  t.equal(await probeTcp({ host: '127.0.3.210', port, expect: 'accept' }, 2000), true, 'accepted');
  await close(s);
  t.equal(await probeTcp({ host: '127.0.3.210', port, expect: 'accept' }, 2000), false, 'closed: refused');
  t.equal(await probeTcp({ host: '127.0.3.210', port }, 2000), true, 'a gateway that refuses still answers');
  let addressUp = true;
  const probe = createConnectivityProbe({ targets: () => [], noTargets: () => addressUp });
  t.equal(await probe(), true, 'nothing to probe: LAN A address decides');
  addressUp = false;
  t.equal(await probe(), false);
});

t.test('virtual board: a dry run under the state dir, nothing run', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'qp-ncf-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const ran: string[] = [];
  const b = board('virtual');
  const svc = await createNetconfigForBoard(
    b,
    stateDir,
    {},
    {
      clock: new FakeClock(0, Date.UTC(2026, 5, 1)),
      logger: createMemoryLogger(),
      defaults: defaultNetworkSettings(b, 'qperiph-0001'),
      run: async (argv) => void ran.push(argv.join(' ')),
    },
  );
  t.teardown(() => svc.stop());
  await svc.applyNetwork({ hostname: 'v-1', lanA: { mode: 'dhcp' } });
  const text = await readFile(join(stateDir, 'os-network/etc/systemd/network/20-qperiph-lo.network'), 'utf8');
  t.match(text, /Name=lo\n/);
  t.same(ran, [], 'no command ran');
});

t.test('real board: real paths + apply steps; reverts when the Core stops answering', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'qp-ncf-'));
  const root = await mkdtemp(join(tmpdir(), 'qp-root-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const core = await listen('127.0.3.211');
  const corePort = portOf(core);
  t.teardown(() => (core.listening ? close(core) : undefined));
  const clock = new FakeClock(0, Date.UTC(2026, 5, 1));
  const logger = createMemoryLogger();
  const ran: string[] = [];
  const b = board('rpi4-hifiberry-dacplusadc');
  const targets: ProbeTarget[] = [{ host: '127.0.3.211', port: corePort, expect: 'accept' }];
  const svc = await createNetconfigForBoard(
    b,
    stateDir,
    {},
    {
      clock,
      logger,
      defaults: defaultNetworkSettings(b, 'qp-0001'),
      root,
      run: async (argv) => void ran.push(argv.join(' ')),
      readRoutes: async () => '',
      probeTargets: () => targets,
      probeTimeoutMs: 2000,
      revertAfterMs: 60_000,
    },
  );
  t.teardown(() => svc.stop());
  const unit = join(root, 'etc/systemd/network/20-qperiph-eth0.network');
  const events: string[] = [];
  svc.onEvent((e) => void events.push(e));

  await svc.applyNetwork({ hostname: 'qp-a', dns: ['127.0.3.1'], lanA: { mode: 'dhcp' } });
  t.match(await readFile(unit, 'utf8'), /DHCP=ipv4\nDNS=127\.0\.3\.1\n/);
  t.equal((await stat(unit)).mode & 0o777, 0o644);
  t.same(ran, [
    'systemctl stop wpa_supplicant-wired@eth0.service',
    'hostnamectl hostname qp-a',
    'networkctl reload',
    'networkctl reconfigure eth0',
  ]);
  clock.advance(60_000);
  await until(() => svc.snapshot().pending === null, 'confirmation');
  t.same(events, ['netconfig_applied', 'netconfig_confirmed'], 'the Core answered: kept');
  const saved = JSON.parse(await readFile(join(stateDir, 'netconfig.json'), 'utf8'));
  t.equal(saved.network.hostname, 'qp-a');

  ran.length = 0;
  await svc.applyNetwork({
    hostname: 'qp-b',
    lanA: { mode: 'static', address: '10.200.0.2', prefixLength: 24 },
  });
  t.match(await readFile(unit, 'utf8'), /Address=10\.200\.0\.2\/24/);
  await close(core); // the change "cut us off": the Core's port no longer accepts
  clock.advance(60_000);
  await until(() => svc.snapshot().pending === null, 'revert');
  t.same(events.slice(2), ['netconfig_applied', 'netconfig_reverted']);
  t.match(await readFile(unit, 'utf8'), /DHCP=ipv4\nDNS=127\.0\.3\.1\n/, 'previous file back');
  t.equal((await stat(unit)).mode & 0o777, 0o644, 'with its mode');
  t.same(ran.slice(-3), ['hostnamectl hostname qp-a', 'networkctl reload', 'networkctl reconfigure eth0']);
  t.equal(svc.snapshot().network.hostname, 'qp-a');
  t.ok(logger.records.some((r) => r.event === 'netconfig_probe' && r['ok'] === false));
});

t.test('real board, QPERIPH_NETCONFIG=dry-run: nothing run', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'qp-ncf-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const b = board('cm4');
  const ran: string[] = [];
  const svc = await createNetconfigForBoard(
    b,
    stateDir,
    { QPERIPH_NETCONFIG: 'dry-run' },
    {
      clock: new FakeClock(),
      logger: createMemoryLogger(),
      defaults: defaultNetworkSettings(b, 'qp'),
      run: async (argv) => void ran.push(argv.join(' ')),
    },
  );
  t.teardown(() => svc.stop());
  await svc.applyNetwork({ hostname: 'qp-2', lanA: { mode: 'dhcp' } });
  t.same(ran, []);
  t.ok((await stat(join(stateDir, 'os-network/etc/systemd/network/20-qperiph-eth0.network'))).isFile());
});

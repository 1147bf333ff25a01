import t from 'tap';
import {
  applySteps,
  FakeNetBinding,
  NetconfigService,
  renderNetworkFiles,
  validateNetworkSettings,
  type NetworkSettings,
} from '../../../firmware/netconfig/index.js';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIC\n-----END PRIVATE KEY-----\n';

const staticA: NetworkSettings = {
  hostname: 'dev-9',
  dns: ['10.0.0.2', '10.0.0.3'],
  lanA: { mode: 'static', address: '10.0.0.9', prefixLength: 24, gateway: '10.0.0.1' },
  lanB: { mode: 'dhcp' },
};

t.test('networkd: static LAN A + DHCP LAN B, byte fixtures', async (t) => {
  const files = renderNetworkFiles({
    root: '/r',
    backend: 'systemd-networkd',
    interfaces: { lanA: 'end0', lanB: 'end1' },
    network: validateNetworkSettings(staticA),
    dot1x: null,
  });
  t.same(
    files.map((f) => [f.path, f.mode]),
    [
      ['/r/etc/systemd/network/20-qperiph-end0.network', 0o644],
      ['/r/etc/systemd/network/20-qperiph-end1.network', 0o644],
    ],
    'one .network per LAN, no /etc/hostname (hostnamectl sets it)',
  );
  t.equal(
    files[0]!.content,
    [
      '# written by qperiph; changes are overwritten',
      '[Match]',
      'Name=end0',
      '',
      '[Network]',
      'Address=10.0.0.9/24',
      'Gateway=10.0.0.1',
      'DNS=10.0.0.2',
      'DNS=10.0.0.3',
      'LinkLocalAddressing=ipv4',
      'IPv6AcceptRA=no',
      '',
    ].join('\n'),
  );
  t.equal(
    files[1]!.content,
    '# written by qperiph; changes are overwritten\n[Match]\nName=end1\n\n[Network]\nDHCP=ipv4\n' +
      'DNS=10.0.0.2\nDNS=10.0.0.3\nLinkLocalAddressing=ipv4\nIPv6AcceptRA=no\n',
  );
});

t.test('networkd: 802.1X PEAP and EAP-TLS through wpa_supplicant-wired@', async (t) => {
  const net = { hostname: 'dev-9', dns: [], lanA: { mode: 'dhcp' as const }, lanB: null };
  const peap = renderNetworkFiles({
    root: '/r',
    backend: 'systemd-networkd',
    interfaces: { lanA: 'eth0', lanB: null },
    network: net,
    dot1x: {
      enabled: true,
      method: 'peap-mschapv2',
      identity: 'bob',
      anonymousIdentity: 'anon',
      password: 'secret2',
      caCert: CA,
    },
  });
  const byPath = new Map(peap.map((f) => [f.path, f]));
  t.same([...byPath.keys()].sort(), [
    '/r/etc/qperiph/8021x/ca.pem',
    '/r/etc/systemd/network/20-qperiph-eth0.network',
    '/r/etc/wpa_supplicant/wpa_supplicant-wired-eth0.conf',
  ]);
  const wpa = byPath.get('/r/etc/wpa_supplicant/wpa_supplicant-wired-eth0.conf')!;
  t.equal(wpa.mode, 0o600, 'holds the password');
  t.equal(
    wpa.content,
    [
      '# written by qperiph; changes are overwritten',
      'ctrl_interface=/run/wpa_supplicant',
      'ap_scan=0',
      'network={',
      '  key_mgmt=IEEE8021X',
      '  eap=PEAP',
      '  identity="bob"',
      '  anonymous_identity="anon"',
      '  ca_cert="/r/etc/qperiph/8021x/ca.pem"',
      '  password="secret2"',
      '  phase2="auth=MSCHAPV2"',
      '  eapol_flags=0',
      '}',
      '',
    ].join('\n'),
  );
  t.equal(
    byPath.get('/r/etc/systemd/network/20-qperiph-eth0.network')!.content,
    '# written by qperiph; changes are overwritten\n' +
      '# 802.1X: wpa_supplicant-wired@eth0.service authenticates the port\n' +
      '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=ipv4\nIPv6AcceptRA=no\n',
  );

  const tls = renderNetworkFiles({
    root: '/',
    backend: 'systemd-networkd',
    interfaces: { lanA: 'eth0', lanB: 'eth1' },
    network: { ...net, lanB: { mode: 'dhcp' } },
    dot1x: { enabled: true, method: 'eap-tls', identity: 'dev', caCert: CA, clientCert: CA, clientKey: KEY },
  });
  const tp = new Map(tls.map((f) => [f.path, f]));
  t.match(
    tp.get('/etc/wpa_supplicant/wpa_supplicant-wired-eth0.conf')!.content,
    /eap=TLS\n {2}identity="dev"\n {2}ca_cert="\/etc\/qperiph\/8021x\/ca.pem"\n {2}client_cert="\/etc\/qperiph\/8021x\/client.pem"\n {2}private_key="\/etc\/qperiph\/8021x\/client-key.pem"\n/,
  );
  t.equal(tp.get('/etc/qperiph/8021x/client-key.pem')!.mode, 0o600);
  t.equal(tp.get('/etc/qperiph/8021x/client-key.pem')!.content, KEY);
  t.notOk(tp.has('/etc/wpa_supplicant/wpa_supplicant-wired-eth1.conf'), '802.1X only on LAN A');
  t.notMatch(tp.get('/etc/systemd/network/20-qperiph-eth1.network')!.content, /802\.1X/);

  const off = renderNetworkFiles({
    root: '/',
    backend: 'systemd-networkd',
    interfaces: { lanA: 'eth0', lanB: null },
    network: net,
    dot1x: { enabled: false, method: 'peap-mschapv2', identity: '', caCert: '' },
  });
  t.same(
    off.map((f) => f.path),
    ['/etc/systemd/network/20-qperiph-eth0.network'],
    'disabled 802.1X: no supplicant file',
  );
});

t.test('apply steps per backend', async (t) => {
  const network = validateNetworkSettings(staticA);
  const on = { enabled: true, method: 'peap-mschapv2' as const, identity: 'b', password: 'p', caCert: CA };
  t.same(
    applySteps({
      backend: 'systemd-networkd',
      interfaces: { lanA: 'eth0', lanB: 'eth1' },
      network,
      dot1x: on,
    }),
    [
      { argv: ['systemctl', 'restart', 'wpa_supplicant-wired@eth0.service'] },
      { argv: ['hostnamectl', 'hostname', 'dev-9'] },
      { argv: ['networkctl', 'reload'] },
      { argv: ['networkctl', 'reconfigure', 'eth0', 'eth1'] },
    ],
  );
  t.same(
    applySteps({
      backend: 'systemd-networkd',
      interfaces: { lanA: 'eth0', lanB: 'eth1' },
      network: { ...network, lanB: null },
      dot1x: null,
    }),
    [
      { argv: ['systemctl', 'stop', 'wpa_supplicant-wired@eth0.service'], optional: true },
      { argv: ['hostnamectl', 'hostname', 'dev-9'] },
      { argv: ['networkctl', 'reload'] },
      { argv: ['networkctl', 'reconfigure', 'eth0'] },
    ],
    'LAN B not configured: not reconfigured',
  );
  t.same(
    applySteps({ backend: 'ifupdown', interfaces: { lanA: 'eth0', lanB: null }, network, dot1x: null }),
    [{ argv: ['systemctl', 'restart', 'networking.service'] }],
  );
  t.same(
    applySteps({
      backend: 'networkmanager',
      interfaces: { lanA: 'eth0', lanB: 'eth1' },
      network,
      dot1x: null,
    }),
    [
      { argv: ['nmcli', 'connection', 'reload'] },
      { argv: ['nmcli', 'connection', 'up', 'qperiph-eth0'] },
      { argv: ['nmcli', 'connection', 'up', 'qperiph-eth1'], optional: true },
    ],
  );
});

t.test('service on networkd: validate first, apply steps, failed apply restores', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'qp-nc-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const clock = new FakeClock(0, Date.UTC(2026, 5, 1));
  const binding = new FakeNetBinding();
  const svc = await NetconfigService.open({
    binding,
    clock,
    logger: createMemoryLogger(),
    stateDir,
    root: '/x',
    backend: 'systemd-networkd',
    interfaces: { lanA: 'eth0', lanB: null },
    defaults: { hostname: 'qp-1', dns: [], lanA: { mode: 'dhcp' }, lanB: null },
    revertAfterMs: 1000,
  });
  t.teardown(() => svc.stop());
  const unit = '/x/etc/systemd/network/20-qperiph-eth0.network';
  binding.files.set(unit, { content: 'FIRSTBOOT\n', mode: 0o644 });

  await t.rejects(svc.applyNetwork({ hostname: 'bad name', lanA: { mode: 'static' } }), {
    code: 'NETCONFIG_ERR_INVALID',
  });
  t.equal(binding.applied, 0, 'invalid: nothing applied');
  t.equal(binding.files.get(unit)!.content, 'FIRSTBOOT\n', 'invalid: nothing written');

  binding.failNextApply = new Error('networkctl: Access denied');
  await t.rejects(svc.applyNetwork(staticA), { code: 'NETCONFIG_ERR_IO', message: /Access denied/ });
  t.equal(binding.files.get(unit)!.content, 'FIRSTBOOT\n', 'half-applied change put back');
  t.equal(binding.files.get(unit)!.mode, 0o644);
  t.equal(binding.applied, 2, 'previous files applied again');
  t.same(binding.plans[1]!.at(-3), { argv: ['hostnamectl', 'hostname', 'qp-1'] }, 'with the old hostname');
  t.equal(svc.snapshot().network.hostname, 'qp-1');
  t.equal(svc.snapshot().pending, null, 'not pending: another change is allowed');

  await svc.applyNetwork(staticA);
  t.match(binding.files.get(unit)!.content, /Address=10\.0\.0\.9\/24/);
  t.same(binding.plans.at(-1)!.at(-1), { argv: ['networkctl', 'reconfigure', 'eth0'] });
});

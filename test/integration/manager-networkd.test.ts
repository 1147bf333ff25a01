/**
 * The systemd-networkd files the Manager renders, read by a real systemd-networkd: a network
 * namespace with two veth pairs, networkd in a private mount namespace whose
 * /etc/systemd/network holds only our files (plus a DHCP server on the far end of LAN B, for the
 * DHCP case). LAN A static (address, gateway route), LAN B DHCP. Needs root and systemd-networkd;
 * there is no udev here, so the test marks the links initialised in a private /run/udev.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { renderNetworkFiles } from '../../firmware/netconfig/index.js';

const NETWORKD = ['/lib/systemd/systemd-networkd', '/usr/lib/systemd/systemd-networkd'].find((p) =>
  existsSync(p),
);
const skip =
  process.getuid?.() !== 0
    ? 'needs root to create network namespaces'
    : !NETWORKD
      ? 'needs systemd-networkd (Debian bookworm: systemd; trixie: systemd-networkd)'
      : false;

const NS = `qpnd${process.pid % 100000}`;
const ip = (...args: string[]): string => execFileSync('ip', args, { stdio: 'pipe' }).toString();

async function until<T>(what: string, get: () => T | null, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('systemd-networkd applies the rendered .network files', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qp-nd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  ip('netns', 'add', NS);
  t.teardown(() => void ip('netns', 'del', NS));
  ip('-n', NS, 'link', 'add', 'lana', 'type', 'veth', 'peer', 'name', 'peera');
  ip('-n', NS, 'link', 'add', 'lanb', 'type', 'veth', 'peer', 'name', 'peerb');
  ip('-n', NS, 'link', 'set', 'peera', 'up');

  const files = renderNetworkFiles({
    root: dir,
    backend: 'systemd-networkd',
    interfaces: { lanA: 'lana', lanB: 'lanb' },
    network: {
      hostname: 'qp-nd',
      dns: ['10.200.7.53'],
      lanA: { mode: 'static', address: '10.200.7.2', prefixLength: 24, gateway: '10.200.7.1' },
      lanB: { mode: 'dhcp' },
    },
    dot1x: null,
  });
  const netDir = join(dir, 'etc/systemd/network');
  await mkdir(netDir, { recursive: true });
  for (const f of files) await writeFile(f.path, f.content, { mode: f.mode });
  // the test's DHCP server on the far end of LAN B (not ours: a stand-in for the site's server)
  await writeFile(
    join(netDir, '90-test-dhcp-server.network'),
    '[Match]\nName=peerb\n\n[Network]\nAddress=10.200.8.1/24\nDHCPServer=yes\n\n[DHCPServer]\nPoolOffset=100\nPoolSize=20\n',
  );

  const script = [
    'set -e',
    `mount -t tmpfs tmpfs /etc/systemd/network && cp ${netDir}/*.network /etc/systemd/network/`,
    'mkdir -p /run/systemd /run/udev',
    'mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/netif',
    'chown systemd-network /run/systemd/netif 2>/dev/null || true',
    'mount -t tmpfs tmpfs /run/udev && mkdir -p /run/udev/data',
    'for i in /sys/class/net/*; do echo I:1 > /run/udev/data/n$(cat $i/ifindex); done',
    `exec ${NETWORKD!}`,
  ].join('\n');
  const nd = spawn('ip', ['netns', 'exec', NS, 'unshare', '-m', 'sh', '-c', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SYSTEMD_LOG_LEVEL: 'info' },
  });
  let log = '';
  nd.stdout.on('data', (d: Buffer) => (log += d.toString()));
  nd.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise((r) => nd.once('exit', r));
  t.teardown(async () => {
    if (nd.exitCode === null) {
      nd.kill('SIGTERM');
      await exited;
    }
  });

  type Addr = Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
  const v4 = (ifname: string) =>
    (JSON.parse(ip('-n', NS, '-j', '-4', 'addr', 'show', 'dev', ifname)) as Addr).flatMap((l) =>
      l.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
    );
  const a = await until('LAN A static address', () =>
    v4('lana').includes('10.200.7.2/24') ? true : null,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nnetworkd log:\n${log}`);
  });
  t.ok(a, 'LAN A: Address= applied');
  const routes = await until('the default route', () => {
    const out = ip('-n', NS, '-4', 'route', 'show', 'default');
    return out.includes('via 10.200.7.1 dev lana') ? out : null;
  });
  t.match(routes, /default via 10\.200\.7\.1 dev lana/, 'LAN A: Gateway= applied');
  const lease = await until('a DHCP lease on LAN B', () => {
    const got = v4('lanb').find((x) => x.startsWith('10.200.8.'));
    return got ?? null;
  }).catch((err: Error) => {
    throw new Error(`${err.message}\nnetworkd log:\n${log}`);
  });
  t.match(lease, /^10\.200\.8\.(1[0-2][0-9])\/24$/, 'LAN B: DHCP=ipv4 got a lease from the pool');
  t.notOk(
    v4('lanb').some((x) => x.startsWith('10.200.7.')),
    'LAN B has no static address',
  );
});

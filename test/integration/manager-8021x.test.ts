/**
 * 802.1X end to end: the wpa_supplicant configuration the manager writes (through
 * NetconfigService into a temp root) authenticates against hostapd's internal EAP server over
 * a veth pair between two network namespaces this test creates (wired 802.1X), for PEAP-MSCHAPv2
 * and EAP-TLS; a wrong password fails. Needs root, iproute2, hostapd and wpasupplicant.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import {
  createFsNetBinding,
  NetconfigService,
  wpaSupplicantPath,
  wpaWiredPath,
} from '../../firmware/netconfig/index.js';
import { createAuthority, generateKeyPem, issueCertificate } from '../../firmware/pki/index.js';

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const skip =
  process.getuid?.() !== 0
    ? 'needs root to create network namespaces'
    : !has('hostapd') || !has('wpa_supplicant') || !has('ip')
      ? 'needs hostapd, wpasupplicant and iproute2 (apt-get install -y hostapd wpasupplicant)'
      : false;

const tag = String(process.pid % 100000);
const NS_A = `qp8021xa${tag}`;
const NS_B = `qp8021xb${tag}`;
const IF_A = `qpa${tag}`;
const IF_B = `qpb${tag}`;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

/** Run until `pattern` appears in the output (resolve with the output) or `timeoutMs` passes. */
function waitFor(child: ChildProcess, patterns: RegExp[], timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const done = () => {
      clearTimeout(timer);
      resolve(out);
    };
    const timer = setTimeout(done, timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (patterns.some((p) => p.test(out))) done();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', done);
  });
}

t.test('wired 802.1X with the written wpa_supplicant config', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qp-8021x-'));
  const children: ChildProcess[] = [];
  t.teardown(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    for (const ns of [NS_A, NS_B]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  });
  ip('netns', 'add', NS_A);
  ip('netns', 'add', NS_B);
  ip('link', 'add', IF_A, 'netns', NS_A, 'type', 'veth', 'peer', 'name', IF_B, 'netns', NS_B);
  ip('-n', NS_A, 'link', 'set', IF_A, 'up');
  ip('-n', NS_B, 'link', 'set', IF_B, 'up');

  // a CA, the authentication server's certificate, and an EAP-TLS client certificate
  const now = Date.now();
  const day = 86_400_000;
  const ca = await createAuthority('802.1X Test CA', new Date(now - day), new Date(now + 30 * day));
  const serverKey = await generateKeyPem();
  const serverCert = await issueCertificate(ca, {
    subjectKeyPem: serverKey,
    commonName: 'radius.test',
    dnsNames: ['radius.test'],
    notBefore: new Date(now - day),
    notAfter: new Date(now + 30 * day),
  });
  const clientKey = await generateKeyPem();
  const clientCert = await issueCertificate(ca, {
    subjectKeyPem: clientKey,
    commonName: 'qperiph-dev',
    usage: 'client',
    notBefore: new Date(now - day),
    notAfter: new Date(now + 30 * day),
  });
  await writeFile(join(dir, 'ca.pem'), ca.certPem);
  await writeFile(join(dir, 'server.pem'), serverCert);
  await writeFile(join(dir, 'server-key.pem'), serverKey, { mode: 0o600 });
  await writeFile(join(dir, 'eap_users'), '"bob" PEAP\n"bob" MSCHAPV2 "secret2" [2]\n"qperiph-dev" TLS\n');
  await writeFile(
    join(dir, 'hostapd.conf'),
    [
      `interface=${IF_A}`,
      'driver=wired',
      'ieee8021x=1',
      'eap_server=1',
      'use_pae_group_addr=1',
      `eap_user_file=${join(dir, 'eap_users')}`,
      `ca_cert=${join(dir, 'ca.pem')}`,
      `server_cert=${join(dir, 'server.pem')}`,
      `private_key=${join(dir, 'server-key.pem')}`,
      'logger_stdout=-1',
      'logger_stdout_level=1',
      '',
    ].join('\n'),
  );
  const hostapd = spawn('ip', ['netns', 'exec', NS_A, 'hostapd', join(dir, 'hostapd.conf')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(hostapd);
  const hostapdOut = await waitFor(
    hostapd,
    [/ENABLED|interface state .*->ENABLED|Setup of interface done/i],
    10_000,
  );
  t.ok(hostapd.exitCode === null, `hostapd running (${hostapdOut.split('\n').slice(-3).join(' | ')})`);

  const root = join(dir, 'root');
  const netconfig = await NetconfigService.open({
    binding: createFsNetBinding(),
    clock: createSystemClock(),
    logger: createMemoryLogger(),
    stateDir: dir,
    root,
    backend: 'ifupdown',
    interfaces: { lanA: IF_B, lanB: null },
    defaults: { hostname: 'qperiph-dev', dns: [], lanA: { mode: 'dhcp' }, lanB: null },
    revertAfterMs: 600_000,
  });
  t.teardown(() => netconfig.stop());

  // the ifupdown file by default; the networkd one as wpa_supplicant-wired@.service runs it
  const authenticate = async (conf = wpaSupplicantPath(root, IF_B)): Promise<string> => {
    const wpa = spawn('ip', ['netns', 'exec', NS_B, 'wpa_supplicant', `-c${conf}`, '-Dwired', `-i${IF_B}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(wpa);
    const out = await waitFor(wpa, [/CTRL-EVENT-EAP-SUCCESS/, /CTRL-EVENT-EAP-FAILURE/], 20_000);
    wpa.kill('SIGTERM');
    await new Promise((r) => (wpa.exitCode === null ? wpa.once('exit', r) : r(null)));
    return out;
  };
  const settle = () => netconfig.stop();

  await netconfig.applyDot1x({
    enabled: true,
    method: 'peap-mschapv2',
    identity: 'bob',
    password: 'secret2',
    caCert: ca.certPem,
  });
  settle();
  const peapConf = await readFile(wpaSupplicantPath(root, IF_B), 'utf8');
  t.match(peapConf, /eap=PEAP/);
  let out = await authenticate();
  t.match(out, /CTRL-EVENT-EAP-SUCCESS/, 'PEAP-MSCHAPv2 authenticates');

  await netconfig.applyDot1x({
    enabled: true,
    method: 'eap-tls',
    identity: 'qperiph-dev',
    caCert: ca.certPem,
    clientCert,
    clientKey,
  });
  settle();
  t.match(await readFile(wpaSupplicantPath(root, IF_B), 'utf8'), /eap=TLS/);
  out = await authenticate();
  t.match(out, /CTRL-EVENT-EAP-SUCCESS/, 'EAP-TLS authenticates');

  // systemd-networkd backend: the file Debian's wpa_supplicant-wired@<if>.service reads
  const rootNd = join(dir, 'root-networkd');
  const nd = await NetconfigService.open({
    binding: createFsNetBinding(),
    clock: createSystemClock(),
    logger: createMemoryLogger(),
    stateDir: join(dir, 'nd'),
    root: rootNd,
    backend: 'systemd-networkd',
    interfaces: { lanA: IF_B, lanB: null },
    defaults: { hostname: 'qperiph-dev', dns: [], lanA: { mode: 'dhcp' }, lanB: null },
    revertAfterMs: 600_000,
  });
  t.teardown(() => nd.stop());
  await nd.applyDot1x({
    enabled: true,
    method: 'peap-mschapv2',
    identity: 'bob',
    password: 'secret2',
    caCert: ca.certPem,
  });
  nd.stop();
  out = await authenticate(wpaWiredPath(rootNd, IF_B));
  t.match(out, /CTRL-EVENT-EAP-SUCCESS/, 'networkd backend: PEAP-MSCHAPv2 authenticates');

  // last: after a failure the authenticator holds the port quiet for a while
  await netconfig.applyDot1x({
    enabled: true,
    method: 'peap-mschapv2',
    identity: 'bob',
    password: 'wrong-one',
    caCert: ca.certPem,
  });
  settle();
  out = await authenticate();
  t.notMatch(out, /CTRL-EVENT-EAP-SUCCESS/, 'a wrong password does not');
  t.match(out, /CTRL-EVENT-EAP-FAILURE/);
});

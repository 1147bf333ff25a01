/** The Core's PTP grandmaster without ptp4l: the config it writes, the lookup, not-available. */
import t from 'tap';
import {
  CORE_PRIORITY1,
  CORE_PRIORITY2,
  coreGmConfig,
  ptpAvailability,
  PtpGrandmaster,
} from '../../../bench/core/ptp-gm.js';

function keys(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(\S+)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

t.test('config: vendor Core priorities and the AES67 media profile', async (t) => {
  const text = coreGmConfig({ interface: 'eth0', udsPath: '/run/q/gm.sock' });
  const k = keys(text);
  t.equal(CORE_PRIORITY1, 254);
  t.equal(CORE_PRIORITY2, 100);
  t.equal(k['priority1'], '254');
  t.equal(k['priority2'], '100');
  t.equal(k['domainNumber'], '0');
  t.equal(k['logSyncInterval'], '-3');
  t.equal(k['logAnnounceInterval'], '1');
  t.equal(k['announceReceiptTimeout'], '3');
  t.equal(k['logMinDelayReqInterval'], '-3');
  t.equal(k['network_transport'], 'UDPv4');
  t.equal(k['delay_mechanism'], 'E2E');
  t.equal(k['time_stamping'], 'software');
  t.equal(k['uds_address'], '/run/q/gm.sock');
  t.equal(k['free_running'], '1', 'never steers the host clock by default');
  t.equal(k['slaveOnly'], '0');
  t.match(text, /\n\[eth0\]\n$/, 'BMCA decides (no masterOnly) by default');
  const m = coreGmConfig({
    interface: 'lo',
    udsPath: '/x',
    domain: 5,
    masterOnly: true,
    freeRunning: false,
    priority1: 10,
  });
  t.equal(keys(m)['domainNumber'], '5');
  t.equal(keys(m)['priority1'], '10');
  t.equal(keys(m)['free_running'], '0');
  t.match(m, /\[lo\]\nmasterOnly 1\n$/);
});

t.test('config: bad options are typed errors', async (t) => {
  for (const o of [
    { domain: 128 },
    { domain: -1 },
    { priority1: 256 },
    { priority2: 1.5 },
    { interface: 'eth0; rm' },
    { interface: '' },
  ])
    t.throws(
      () => coreGmConfig({ interface: 'lo', udsPath: '/x', ...o }),
      { code: 'CORE_AUDIO_ERR_BAD_OPTIONS' },
      JSON.stringify(o),
    );
});

t.test('availability lookup', async (t) => {
  const have = new Set(['/opt/ptp/ptp4l', '/usr/sbin/pmc']);
  const a = ptpAvailability('/opt/ptp:/bin', (p) => have.has(p));
  t.same(
    a,
    { available: true, ptp4l: '/opt/ptp/ptp4l', pmc: '/usr/sbin/pmc', reason: null },
    '/usr/sbin is searched too',
  );
  const b = ptpAvailability('/bin', (p) => p.endsWith('pmc'));
  t.equal(b.available, false);
  t.equal(b.reason, 'ptp4l not installed (apt-get install linuxptp)');
});

t.test('not available: start resolves with the reason, nothing runs', async (t) => {
  const gm = new PtpGrandmaster({
    interface: 'lo',
    dir: '/nonexistent/never-created',
    availability: ptpAvailability('', () => false),
  });
  const st = await gm.start();
  t.match(st, {
    available: false,
    running: false,
    isGrandmaster: false,
    state: 'unlocked',
    priority1: 254,
    priority2: 100,
  });
  t.match(st.reason, /ptp4l and pmc not installed/);
  t.equal(gm.mediaClock, null);
  await t.rejects(gm.query('DEFAULT_DATA_SET'), { code: 'CORE_AUDIO_ERR_STATE' });
  t.equal(await gm.waitForGrandmaster(10), false);
  await gm.close();
});

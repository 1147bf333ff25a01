import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetwork } from '../../../firmware/net/datagram-fake.js';
import type { InterfaceAddress } from '../../../firmware/net/interfaces.js';
import { scheduleStep } from '../../../firmware/qdp/announce-schedule.js';
import { CoreTracker } from '../../../firmware/qdp/core-tracker.js';
import { discover } from '../../../firmware/qdp/discovery.js';
import { decodeQdp, encodeQdp } from '../../../firmware/qdp/qdp-codec.js';
import { QdpService, type QdpSelfDescription } from '../../../firmware/qdp/service.js';
import { flush } from '../../helpers/flush.js';

const GROUP = '224.0.23.175';
const VENDOR_CORE =
  '<QDP><device> <name>core-110f-dddd</name> <type>core</type> <platform>core</platform> <part_number>Core 110f</part_number> <ref>device.core.core-110f-dddd</ref> <is_virtual>false</is_virtual> <lan_a_ip>192.168.1.118</lan_a_ip> <lan_a_lldp>30:23:03:bf:8f:46+gi3</lan_a_lldp> <lan_b_ip/> <lan_b_lldp/> <aux_a_ip/> <aux_a_lldp/> <aux_b_ip/> <aux_b_lldp/> <web_cfg_url>/network-settings</web_cfg_url> <secure_comm>enabled</secure_comm> </device> <control> <role>core</role> <design_pretty>camera-video-bridge</design_pretty> <design_code>pdTHJ5GGNifl</design_code> <primary>1</primary> <redundant>0</redundant> <device_ref>device.core.core-110f-dddd</device_ref> <ref>control.pdTHJ5GGNifl.core.primary</ref> </control> <query_ref>control.pdTHJ5GGNifl.*</query_ref> </QDP>';

function rig(opts: { address?: string; design?: QdpSelfDescription['control'] } = {}) {
  const address = opts.address ?? '10.9.0.5';
  const net = new FakeNetwork([address, '10.9.0.6', '127.0.0.1']);
  const clock = new FakeClock(1000);
  const logger = createMemoryLogger();
  let ifaces: Record<string, InterfaceAddress[]> = {
    eth0: [{ address, netmask: '255.255.255.0', mac: '02:00:00:00:12:34', internal: false }],
  };
  let control = opts.design ?? null;
  const svc = new QdpService({
    binding: net,
    clock,
    logger,
    interfaces: () => ifaces,
    lans: [{ id: 'a', config: { interface: 'eth0' } }],
    describe: () => ({
      device: {
        name: 'qperiph-1234',
        type: 'ioframe',
        platform: 'qperiph',
        partNumber: 'qperiph-virtual',
        ref: 'device.ioframe.qperiph-1234',
        isVirtual: true,
        periphCfgUrl: '/#network',
        secureComm: 'disabled',
      },
      control,
    }),
    ttl: 4,
  });
  return {
    net,
    clock,
    logger,
    svc,
    setIfaces: (v: Record<string, InterfaceAddress[]>) => (ifaces = v),
    setControl: (c: QdpSelfDescription['control']) => (control = c),
    announcements: () => net.sent.filter((s) => s.to.address === GROUP && s.to.port === 2467),
  };
}

t.test('announces at once, then every second on the grid, from port 6504', async (t) => {
  const r = rig();
  await r.svc.start();
  await flush();
  t.equal(r.announcements().length, 1, 'first announcement is sent during start');
  for (let i = 0; i < 10; i++) {
    r.clock.advance(1000);
    await flush();
  }
  const sent = r.announcements();
  t.equal(sent.length, 11, 'one per second');
  for (const s of sent) {
    t.same(s.from, { address: '10.9.0.5', port: 6504 });
    t.equal(s.ttl, 4, 'configured TTL');
    t.equal(s.multicastInterface, '10.9.0.5', 'sent on the LAN A interface');
  }
  const p = decodeQdp(sent[0]!.data);
  t.equal(p.device?.name, 'qperiph-1234');
  t.equal(p.device?.type, 'ioframe');
  t.equal(p.device?.lanAIp, '10.9.0.5');
  t.equal(p.device?.lanBIp, '', 'LAN B present but empty');
  t.equal(p.device?.auxAIp, '', 'aux fields present but empty');
  t.equal(p.control, undefined, 'no control block before a design is assigned');
  t.equal(r.svc.counters.announcementsSent, 11);
  t.ok(r.svc.health().ok);
  await r.svc.stop();
  r.clock.advance(5000);
  await flush();
  t.equal(r.announcements().length, 11, 'nothing after stop');
  t.equal(r.clock.pendingCount, 0, 'no timers left behind');
});

t.test('carries a control block once a design is assigned', async (t) => {
  const r = rig();
  await r.svc.start();
  r.setControl({
    role: 'qperiph-1234',
    designPretty: 'Bench A',
    designCode: 'AbCdEf123456',
    primary: true,
    redundant: false,
    deviceRef: 'device.ioframe.qperiph-1234',
    ref: 'control.AbCdEf123456.qperiph-1234',
  });
  r.svc.announceNow();
  await flush();
  const last = decodeQdp(r.announcements().at(-1)!.data);
  t.equal(last.control?.designCode, 'AbCdEf123456');
  t.equal(last.control?.primary, true);
  await r.svc.stop();
});

t.test('answers matching queries by unicast from 6504 and ignores the rest', async (t) => {
  const r = rig({
    design: {
      role: 'qperiph-1234',
      designCode: 'Dz9',
      primary: true,
      redundant: false,
    },
  });
  await r.svc.start();
  await flush();
  const before = r.net.sent.length;
  const ask = (ref: string, port = 2468) =>
    r.net.inject(
      { address: '10.9.0.6', port: 50000 },
      { address: GROUP, port },
      encodeQdp({ queryRefs: [ref] }),
    );
  ask('device.ioframe.*');
  ask('device.ioframe.qperiph-1234', 2469);
  ask('control.Dz9.*', 2470);
  ask('device.core.*');
  ask('device.ioframe.someone-else');
  ask('control.OTHER.*');
  await flush();
  const answers = r.net.sent.slice(before).filter((s) => s.to.port === 50000);
  t.equal(answers.length, 3, 'three matching queries, three answers');
  for (const a of answers) {
    t.same(a.from, { address: '10.9.0.5', port: 6504 }, 'answer comes from 6504');
    t.equal(a.to.address, '10.9.0.6', 'by unicast to the querier');
    t.equal(decodeQdp(a.data).device?.name, 'qperiph-1234');
  }
  t.equal(r.svc.counters.queriesAnswered, 3);
  t.ok(r.svc.counters.ownIgnored >= 1, 'hears its own announcements and ignores them');
  await r.svc.stop();
});

t.test(
  "skips a peer peripheral's repeated announcement without parsing it; Cores always count",
  async (t) => {
    const r = rig();
    await r.svc.start();
    const peer = { address: '10.9.0.6', port: 6504 };
    const announce = (name: string): Buffer =>
      encodeQdp({
        device: { name, type: 'ioframe', ref: `device.ioframe.${name}`, lanAIp: '10.9.0.6' },
        queryRefs: [],
      });
    r.svc.handleDatagram(announce('peer-1'), peer);
    r.svc.handleDatagram(announce('peer-1'), peer);
    r.svc.handleDatagram(announce('peer-1'), peer);
    t.equal(r.svc.counters.repeatsSkipped, 2, 'identical repeats from the same sender are skipped');
    r.svc.handleDatagram(announce('peer-2'), peer);
    t.equal(r.svc.counters.repeatsSkipped, 2, 'changed bytes are parsed again');
    r.svc.handleDatagram(announce('peer-2'), { address: '10.9.0.7', port: 6504 });
    t.equal(r.svc.counters.repeatsSkipped, 2, 'same bytes from another sender are parsed');
    t.same(r.svc.cores(), [], 'no Core from peripheral announcements');

    // A Core's announcement is never skipped: it keeps the Core alive and carries a query.
    const core = { address: '10.9.0.6', port: 6504 };
    const coreBytes = Buffer.from(VENDOR_CORE);
    r.svc.handleDatagram(coreBytes, core);
    r.clock.advance(8000);
    r.svc.handleDatagram(coreBytes, core);
    t.equal(r.svc.counters.repeatsSkipped, 2, 'Core repeats are parsed');
    r.clock.advance(8000);
    await flush();
    t.equal(r.svc.cores().length, 1, 'the Core is still heard 16 s after its first packet');
    const answers = r.net.sent.filter((s) => s.to.address === '10.9.0.6' && s.to.port === 6504);
    t.equal(answers.length, 0, 'the Core query names another design: no answer, but it was evaluated');
    t.equal(r.svc.counters.dropped['QDP_ERR_BAD_XML'] ?? 0, 0);
    await r.svc.stop();
  },
);

t.test('drops hostile datagrams, counts them by code, never throws', async (t) => {
  const r = rig();
  await r.svc.start();
  const from = { address: '10.9.0.6', port: 6000 };
  const bad = [
    Buffer.from('<QDP><device><name>x</name>'),
    Buffer.from('<!DOCTYPE QDP [<!ENTITY a "aaaa">]><QDP><query_ref>&a;</query_ref></QDP>'),
    Buffer.alloc(20000, 0x41),
    Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3]),
    Buffer.from('<NOTQDP/>'),
  ];
  for (const b of bad) t.doesNotThrow(() => r.svc.handleDatagram(b, from));
  const dropped = Object.values(r.svc.counters.dropped).reduce((a, b) => a + b, 0);
  t.equal(dropped, bad.length, 'every bad datagram counted');
  t.ok(
    Object.keys(r.svc.counters.dropped).length >= 4,
    `distinct codes: ${Object.keys(r.svc.counters.dropped)}`,
  );
  t.ok(
    r.logger.records.some((x) => x.event === 'packet_dropped'),
    'a drop is logged',
  );
  t.ok(
    r.logger.records.filter((x) => x.event === 'packet_dropped').length < bad.length,
    'drop logging is rate-limited',
  );
  await r.svc.stop();
});

t.test('tracks the Cores it hears and forgets silent ones', async (t) => {
  const r = rig();
  await r.svc.start();
  r.net.inject({ address: '10.9.0.6', port: 6504 }, { address: GROUP, port: 2467 }, Buffer.from(VENDOR_CORE));
  await flush();
  const cores = r.svc.cores();
  t.equal(cores.length, 1);
  t.match(cores[0], {
    name: 'core-110f-dddd',
    address: '192.168.1.118',
    designCode: 'pdTHJ5GGNifl',
    primary: true,
  });
  t.ok(r.logger.records.some((x) => x.event === 'core_discovered' && x['name'] === 'core-110f-dddd'));
  for (let i = 0; i < 12; i++) {
    r.clock.advance(1000);
    await flush();
  }
  t.equal(r.svc.cores().length, 0, 'forgotten after 10 s of silence');
  t.ok(r.logger.records.some((x) => x.event === 'core_lost'));
  await r.svc.stop();
});

t.test('follows addresses coming and going', async (t) => {
  const r = rig();
  await r.svc.start();
  await flush();
  r.setIfaces({ eth0: [{ address: '10.9.0.6', netmask: '255.255.255.0', mac: 'x', internal: false }] });
  r.clock.advance(2000);
  await flush();
  r.clock.advance(1000);
  await flush();
  const last = r.announcements().at(-1)!;
  t.same(last.from, { address: '10.9.0.6', port: 6504 }, 'announces from the new address');
  t.equal(decodeQdp(last.data).device?.lanAIp, '10.9.0.6');
  t.ok(r.logger.records.some((x) => x.event === 'state' && x['to'] === '10.9.0.6'));
  r.setIfaces({});
  r.clock.advance(2000);
  await flush();
  const n = r.announcements().length;
  r.clock.advance(3000);
  await flush();
  t.equal(r.announcements().length, n, 'silent while the interface is gone');
  t.equal(r.svc.lanAddresses().a, null);
  r.setIfaces({ eth0: [{ address: '10.9.0.5', netmask: '255.255.255.0', mac: 'x', internal: false }] });
  r.clock.advance(2000);
  await flush();
  t.ok(r.announcements().length > n, 'announces again when the address returns');
  await r.svc.stop();
});

t.test('answers are rate-limited against query floods', async (t) => {
  const r = rig();
  await r.svc.start();
  for (let i = 0; i < 200; i++) {
    r.net.inject(
      { address: '10.9.0.6', port: 50001 },
      { address: GROUP, port: 2467 },
      encodeQdp({ queryRefs: ['device.ioframe.*'] }),
    );
  }
  await flush();
  t.ok(r.svc.counters.queriesAnswered <= 50, `answered ${r.svc.counters.queriesAnswered}`);
  t.ok(r.svc.counters.answersThrottled >= 150);
  await r.svc.stop();
});

t.test('discovery finds the peripheral by answer and by announcement', async (t) => {
  const r = rig();
  await r.svc.start();
  const found = discover({
    binding: r.net,
    clock: r.clock,
    logger: r.logger,
    addresses: ['10.9.0.6'],
    timeoutMs: 1100,
  });
  await flush();
  r.clock.advance(0);
  await flush();
  r.clock.advance(1100);
  await flush();
  const res = await found;
  t.equal(res.devices.length, 1);
  t.equal(res.devices[0]!.device.name, 'qperiph-1234');
  t.equal(res.devices[0]!.via, 'answer', 'the query answer arrives before the next announcement');
  t.ok(res.devices[0]!.firstHeardAfterMs < 100);
  await r.svc.stop();
});

t.test('schedule stays on the grid and never bursts', async (t) => {
  t.same(scheduleStep(0, 1000, -1, 0), { index: 0, nextAt: 1000, missed: 0 });
  t.same(scheduleStep(0, 1000, 0, 1003), { index: 1, nextAt: 2000, missed: 0 }, 'late wake keeps the grid');
  t.same(scheduleStep(0, 1000, 0, 999.6), { index: 1, nextAt: 2000, missed: 0 }, 'early wake counts as due');
  t.same(
    scheduleStep(0, 1000, 1, 5500),
    { index: 5, nextAt: 6000, missed: 3 },
    'a stall sends once, skips ahead',
  );
  t.throws(() => scheduleStep(0, 0, 0, 0), RangeError);
});

t.test('core tracker reports changes', async (t) => {
  const tr = new CoreTracker(5000);
  const pkt = decodeQdp(Buffer.from(VENDOR_CORE));
  t.equal(tr.observe(pkt, '1.2.3.4', 0)[0]?.event, 'core_discovered');
  t.same(tr.observe(pkt, '1.2.3.4', 100), [], 'nothing new');
  const changed = { ...pkt, control: { ...pkt.control!, primary: false } };
  const ev = tr.observe(changed, '1.2.3.4', 200);
  t.equal(ev[0]?.event, 'core_changed');
  t.same((ev[0] as { changed: string[] }).changed, ['primary']);
  t.same(
    tr.observe({ device: { name: 'p', type: 'ioframe' }, queryRefs: [] }, '1.1.1.1', 0),
    [],
    'peripherals are not Cores',
  );
  t.equal(tr.expire(5100).length, 0);
  t.equal(tr.expire(5300).length, 1);
});

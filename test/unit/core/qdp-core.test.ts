/**
 * QDP as a Core on a fake network in virtual time: two Cores of a pair and a real firmware
 * QdpService peripheral. The Core announces type core with its design and active flag, queries
 * for peripherals, hears the peripheral (by announcement and by answer) and its peer's heartbeat,
 * and the pair's state machine turns silence into a takeover.
 */
import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetwork } from '../../../firmware/net/datagram-fake.js';
import { decodeQdp } from '../../../firmware/qdp/qdp-codec.js';
import { QdpService } from '../../../firmware/qdp/service.js';
import { PERIPHERAL_QUERY, QdpCore, type PeripheralEvent } from '../../../bench/core/qdp-core.js';
import { RedundancyFsm } from '../../../bench/core/redundancy.js';
import { flush } from '../../helpers/flush.js';

t.test(
  'Core announces, queries, hears peripherals and its peer; the backup takes over on silence',
  async (t) => {
    const net = new FakeNetwork(['127.0.0.1', '127.0.0.2', '127.0.0.5']);
    const clock = new FakeClock(0);
    const logger = createMemoryLogger();
    const peripheral = new QdpService({
      binding: net,
      clock,
      logger,
      interfaces: () => ({
        lo: [{ address: '127.0.0.5', netmask: '255.0.0.0', mac: '00:00:00:00:00:00', internal: true }],
      }),
      lans: [{ id: 'a', config: { interface: 'lo' } }],
      describe: () => ({
        device: { name: 'io-1', type: 'ioframe', partNumber: 'qperiph-virtual', ref: 'device.ioframe.io-1' },
        control: null,
      }),
      ttl: 1,
    });
    const heard: PeripheralEvent[] = [];
    let aActive = true;
    const backupFsm = new RedundancyFsm({ role: 'backup', hasPeer: true, startMs: 0 });
    const coreOf = (address: string, name: string, active: () => boolean) =>
      new QdpCore({
        binding: net,
        clock,
        logger,
        address,
        describe: () => ({
          name,
          designName: 'Bench',
          designCode: 'Bench01',
          active: active(),
          redundant: true,
          secure: true,
          webUrl: '',
        }),
        onPeripheral: (ev) => heard.push(ev),
        onCorePacket: (core, act) => {
          if (address === '127.0.0.2' && core.address === '127.0.0.1')
            backupFsm.handle({ kind: 'peer', nowMs: clock.monotonicMs(), peerActive: act });
        },
      });
    const a = coreOf('127.0.0.1', 'qcore-a', () => aActive);
    const b = coreOf('127.0.0.2', 'qcore-b', () => backupFsm.state === 'active');
    await peripheral.start();
    await a.start();
    await b.start();
    await flush();

    const fromA = net.sent.filter((d) => d.from.address === '127.0.0.1').map((d) => decodeQdp(d.data));
    t.match(fromA[0], {
      device: { name: 'qcore-a', type: 'core', lanAIp: '127.0.0.1', secureComm: 'enabled' },
      control: { designCode: 'Bench01', designPretty: 'Bench', primary: true, redundant: true },
      queryRefs: [PERIPHERAL_QUERY],
    });
    t.ok(
      net.sent.some((d) => d.from.address === '127.0.0.5' && d.to.address === '127.0.0.1'),
      'the peripheral answered the query by unicast',
    );
    t.match(a.peripherals.get('io-1'), { address: '127.0.0.5', partNumber: 'qperiph-virtual' });
    t.ok(heard.some((e) => e.event === 'peripheral_discovered'));
    t.same(
      a.cores.list().map((c) => c.name),
      ['qcore-b'],
      'each Core hears the other, not itself',
    );

    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      await flush();
      backupFsm.handle({ kind: 'tick', nowMs: clock.monotonicMs() });
    }
    t.equal(backupFsm.state, 'standby', 'the primary is heard: the backup stands by');

    await a.stop(); // the primary dies
    aActive = false;
    let tookOverAt: number | null = null;
    for (let i = 0; i < 50 && tookOverAt === null; i++) {
      clock.advance(100);
      await flush(1);
      if (backupFsm.handle({ kind: 'tick', nowMs: clock.monotonicMs() })?.to === 'active')
        tookOverAt = clock.monotonicMs();
    }
    t.ok(
      tookOverAt !== null && tookOverAt - 5000 <= 3100,
      `backup active ${tookOverAt! - 5000} ms after the last heartbeat window`,
    );
    b.announceNow();
    await flush();
    const last = net.sent
      .filter((d) => d.from.address === '127.0.0.2')
      .map((d) => decodeQdp(d.data))
      .at(-1);
    t.equal(last?.control?.primary, true, 'the backup now announces itself active');

    net.inject(
      { address: '127.0.0.9', port: 6504 },
      { address: '224.0.23.175', port: 2467 },
      Buffer.from('<QDP><bad'),
    );
    await flush();
    t.ok(b.counters.dropped >= 1, 'a malformed datagram is dropped and counted');
    await Promise.all([b.stop(), peripheral.stop()]);
  },
);

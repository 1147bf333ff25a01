/**
 * The emulated Core's audio peer against a real peripheral process (virtual board) on loopback
 * 127.0.7.x: Q-LAN and AES67 streams both ways through Stream.Open, packets flow, the Core meters
 * the peripheral's 1 kHz tone, the peripheral's output meters show the Core's 440 Hz tone, and
 * nothing is lost on loopback. Then PtpGrandmaster: ptp4l as the Core's grandmaster (priority1
 * 254, priority2 100) inside a private network namespace's `lo` (root) or on the host's `lo`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { createFreeRunningClock } from '../../firmware/audio/media-clock.js';
import { ControlClient } from '../../firmware/control/client.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { AudioPeer, type PeerStats } from '../../bench/core/audio-peer.js';
import { PtpGrandmaster, ptpAvailability } from '../../bench/core/ptp-gm.js';
import { CliProcess, ROOT } from '../helpers/processes.js';

const BOARD = path.join(ROOT, 'board-configs', 'virtual.json');
const CORE = '127.0.7.1';
const PERIPHERAL = '127.0.7.2';
const SECONDS = Number(process.env['CORE_AUDIO_SECONDS'] ?? 2);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function startPeripheral(t: Test): Promise<ControlClient> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-core-audio-'));
  const p = new CliProcess([
    'start',
    '--board',
    BOARD,
    '--state-dir',
    path.join(dir, 'state'),
    '--address',
    PERIPHERAL,
    '--control-port',
    '17071',
    '--http-port',
    '18071',
    '--https-port',
    '18471',
  ]);
  t.teardown(async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await p.waitFor((r) => r.event === 'ready', 120_000);
  const c = await ControlClient.connect({ host: PERIPHERAL, port: 17071, localAddress: CORE });
  t.teardown(() => c.close());
  return c;
}

t.test('Q-LAN and AES67 both ways with a real peripheral', { timeout: 300_000 }, async (t) => {
  const client = await startPeripheral(t);
  const call = (m: string, p: unknown): Promise<unknown> => client.call(m, p);
  const mediaClock = createFreeRunningClock();
  const logger = createMemoryLogger();

  const runs: Array<[string, ConstructorParameters<typeof AudioPeer>[0]]> = [
    ['qlan', { peripheral: PERIPHERAL, localAddress: CORE, call, mediaClock, logger, basePort: 27000 }],
    [
      'aes67',
      {
        peripheral: PERIPHERAL,
        localAddress: CORE,
        call,
        mediaClock,
        logger,
        format: 'aes67',
        basePort: 27010,
        groups: { toPeripheral: '239.69.7.1', fromPeripheral: '239.69.7.2' },
      },
    ],
  ];
  for (const [name, opts] of runs) {
    await t.test(name, async (t) => {
      const peer = new AudioPeer(opts);
      await peer.start();
      t.teardown(() => peer.stop());
      t.ok(
        peer.streamIds.toPeripheral && peer.streamIds.fromPeripheral,
        'the peripheral opened both streams',
      );
      const listed = (await call('Stream.List', {})) as Array<{ streamId: string; direction: string }>;
      t.same(
        listed.map((s) => s.direction).sort(),
        ['receive', 'send'],
        'Stream.List shows one send and one receive stream',
      );
      await sleep(SECONDS * 1000);
      // The peripheral's output meters cover its last 100 ms: poll until they show our tone.
      let s: PeerStats = peer.stats();
      for (let i = 0; i < 10; i++) {
        await peer.poll();
        s = peer.stats();
        if ((s.meters.peripheralOutput?.[0]?.peakDb ?? -Infinity) > -13) break;
        await sleep(150);
      }
      t.comment(JSON.stringify({ ...s, latency: s.latency, meters: s.meters }));
      const perS = name === 'qlan' ? 3000 : 1000;
      t.ok(s.txPackets > 0, `Core sent ${s.txPackets} packets`);
      t.ok(s.rxPackets > 0, `Core received ${s.rxPackets} packets`);
      t.ok((s.tx.wire?.arrived ?? 0) > 0, `the peripheral received our stream (${s.tx.wire?.arrived})`);
      // Wire loss (sequence gaps the sender did not skip itself) must be 0 on loopback. Slots that
      // played empty because this busy host stalled a process are playout loss: printed, not asserted.
      t.equal(s.rx.wire?.lost, 0, `nothing lost peripheral -> Core (${JSON.stringify(s.rx.wire)})`);
      t.ok((s.rx.wire?.expected ?? 0) > perS * SECONDS * 0.5, `${s.rx.wire?.expected} packets judged`);
      t.equal(s.tx.wire?.lost, 0, `nothing lost Core -> peripheral (${JSON.stringify(s.tx.wire)})`);
      t.equal(s.lossPct, 0, 'wire loss 0 % on loopback');
      t.comment(`playout loss ${s.playoutLossPct.toFixed(3)} % (host scheduling; see the benchmark)`);
      t.equal(s.rx.duplicate, 0);
      // The peripheral's virtual card plays a 1 kHz sine at 0.5 (-6 dBFS); the Core sends 440 Hz at
      // 0.25. On a host so loaded that a side's engine sent (or played) nothing but silence, the
      // firmware drops late audio by design (keep-time): that is reported, not a failure here.
      const rs = s.rx.remoteSender;
      if (rs && rs.underruns >= 0.9 * rs.sent)
        t.comment(`peripheral sent silence in ${rs.underruns} of ${rs.sent} packets (host starved it)`);
      else {
        for (const p of s.meters.receivedPeakHold) t.ok(p > -7 && p < -5, `received peak ${p} dBFS`);
        t.ok(Math.abs(s.meters.receivedHz - 1000) < 5, `received tone ${s.meters.receivedHz} Hz`);
      }
      if ((s.tx.remote?.lossPct ?? 0) >= 90)
        t.comment(`peripheral played ${s.tx.remote?.lossPct.toFixed(1)} % of slots empty (host starved it)`);
      else
        for (const m of s.meters.peripheralOutput ?? [])
          t.ok(m.peakDb > -13 && m.peakDb < -11, `peripheral output peak ${m.peakDb} dBFS`);
      t.equal(s.meters.peripheralOutput?.length, 2, 'peripheral output meters read');
      t.ok(s.latency.samples > 0 && s.latencyMs !== null, `one-way transit ${s.latencyMs} ms measured`);
      if (name === 'qlan') t.ok(s.tx.acks > 0, 'Q-LAN acks from the peripheral heard');
      await peer.stop();
      const after = (await call('Stream.List', {})) as unknown[];
      t.equal(after.length, 0, 'both streams closed on the peripheral');
    });
  }
  await t.test('a refused Stream.Open is a typed error and leaves nothing open', async (t) => {
    const peer = new AudioPeer({
      peripheral: PERIPHERAL,
      localAddress: CORE,
      call,
      mediaClock: createFreeRunningClock(),
      channels: 4, // the virtual board has 2 channels each way
      basePort: 27020,
    });
    await t.rejects(peer.start(), { code: 'CORE_AUDIO_ERR_OPEN' });
    t.same(await call('Stream.List', {}), [], 'no stream left open on the peripheral');
  });
});

const avail = ptpAvailability();
const isRoot = process.getuid?.() === 0;
const hasIp = spawnSync('sh', ['-c', 'command -v ip']).status === 0;

t.test(
  'ptp4l as the Core grandmaster: priority1 254, priority2 100, port MASTER',
  { skip: avail.available ? false : avail.reason!, timeout: 60_000 },
  async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-core-ptp-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // A private namespace keeps this ptp4l away from any other on the host's lo (root only).
    let commandPrefix: string[] | undefined;
    if (isRoot && hasIp) {
      const ns = `qcore7-${process.pid % 100000}`;
      spawnSync('ip', ['netns', 'add', ns]);
      spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
      commandPrefix = ['ip', 'netns', 'exec', ns];
    } else t.comment('not root: ptp4l runs on the host lo (domain 97)');
    const gm = new PtpGrandmaster({
      interface: 'lo',
      domain: commandPrefix ? 0 : 97,
      dir,
      pollMs: 500,
      logger: createMemoryLogger(),
      ...(commandPrefix ? { commandPrefix } : {}),
    });
    t.match(gm.configText, /priority1 254\n/);
    t.match(gm.configText, /priority2 100\n/);
    await gm.start();
    t.teardown(() => gm.close());
    t.ok(await gm.waitForGrandmaster(30_000), `became grandmaster (${gm.status().detail})`);
    const st = gm.status();
    t.equal(st.state, 'master');
    t.ok(st.grandmaster, `grandmaster identity ${st.grandmaster}`);
    const dds = await gm.query('DEFAULT_DATA_SET');
    t.equal(dds?.['priority1'], '254', 'running ptp4l reports priority1 254');
    t.equal(dds?.['priority2'], '100', 'running ptp4l reports priority2 100');
    t.ok(gm.mediaClock, 'the grandmaster is a media clock for the Core');
  },
);

t.test('without linuxptp the grandmaster reports not-available and starts nothing', async (t) => {
  const gm = new PtpGrandmaster({
    interface: 'lo',
    dir: mkdtempSync(path.join(os.tmpdir(), 'qperiph-core-ptp-')),
    availability: ptpAvailability('/nonexistent', () => false),
  });
  const st = await gm.start();
  t.equal(st.available, false);
  t.equal(st.running, false);
  t.match(st.reason, /ptp4l and pmc not installed/);
  t.equal(gm.mediaClock, null);
  await gm.close();
});

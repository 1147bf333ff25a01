/**
 * The Core's audio peer without a peripheral: the stream plan, the pure bookkeeping (transit
 * histogram, sequence tracking and wire loss, levels, counters off the wire), and AudioPeer itself
 * with a fake control link, a fake network (RTP injected), a fake clock and a fake media clock.
 */
import t from 'tap';
import { FakeMediaClock } from '../../../firmware/audio/media-clock.js';
import { rtpTimestampAt } from '../../../firmware/audio/media-timeline.js';
import { encodeRtp, writePayload } from '../../../firmware/audio/rtp-codec.js';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { FakeNetwork } from '../../../firmware/net/datagram-fake.js';
import { AudioPeer, metersFromControls } from '../../../bench/core/audio-peer.js';
import {
  LevelTracker,
  lossPct,
  readCounters,
  readSenderCounters,
  SeqTracker,
  TransitStats,
  wireStats,
} from '../../../bench/core/audio/peer-stats.js';
import { planStreams } from '../../../bench/core/audio/stream-plan.js';
import { ToneSource } from '../../../bench/core/audio/tone.js';

t.test('stream plan: Q-LAN unicast both ways', async (t) => {
  const p = planStreams({
    peripheral: '10.0.0.5',
    local: '10.0.0.1',
    format: 'qlan',
    channels: 2,
    basePort: 6518,
  });
  t.same(p.fromPeripheral.open, {
    Direction: 'send',
    Format: 'qlan',
    Address: '10.0.0.1',
    Port: 6518,
    Channels: [1, 2],
  });
  t.same(p.fromPeripheral.bind, { address: '10.0.0.1', port: 6518, group: null });
  t.same(p.toPeripheral.open, {
    Direction: 'receive',
    Format: 'qlan',
    Address: '10.0.0.5',
    Port: 6522,
    Channels: [1, 2],
  });
  t.same(p.toPeripheral.destination, { address: '10.0.0.5', port: 6522 });
  t.equal(p.toPeripheral.sourcePort, 6520);
  t.equal(p.toPeripheral.multicastInterface, null);
  t.same(p.format, { encoding: 'F32', channels: 2, framesPerPacket: 16 });
  t.equal(p.payloadType, 98);
});

t.test('stream plan: AES67 multicast', async (t) => {
  const p = planStreams({
    peripheral: '10.0.0.5',
    local: '10.0.0.1',
    format: 'aes67',
    channels: 8,
    basePort: 5004,
    groups: { toPeripheral: '239.69.1.1', fromPeripheral: '239.69.1.2' },
  });
  t.equal(p.toPeripheral.open.Address, '239.69.1.1');
  t.equal(p.toPeripheral.multicastInterface, '10.0.0.1');
  t.equal(p.fromPeripheral.open.Address, '239.69.1.2');
  t.same(p.fromPeripheral.bind, { address: '10.0.0.1', port: 5004, group: '239.69.1.2' });
  t.same(p.format, { encoding: 'L24', channels: 8, framesPerPacket: 48 });
  t.equal(p.payloadType, 96);
});

t.test('stream plan: bad options are typed errors', async (t) => {
  const ok = {
    peripheral: '10.0.0.5',
    local: '10.0.0.1',
    format: 'qlan' as const,
    channels: 2,
    basePort: 6518,
  };
  const bad: Array<Partial<Parameters<typeof planStreams>[0]> & Record<string, unknown>> = [
    { peripheral: '10.0.0.256' },
    { peripheral: '239.1.1.1' },
    { local: 'localhost' },
    { format: 'dante' as never },
    { channels: 0 },
    { channels: 17 },
    { channels: 1.5 },
    { format: 'aes67', channels: 9 },
    { basePort: 6519 },
    { basePort: 1022 },
    { basePort: 65532 },
    { groups: { toPeripheral: '239.1.1.1', fromPeripheral: '239.1.1.2' } },
    { format: 'aes67', groups: { toPeripheral: '10.1.1.1', fromPeripheral: '239.1.1.2' } },
  ];
  for (const b of bad)
    t.throws(() => planStreams({ ...ok, ...b }), { code: 'CORE_AUDIO_ERR_BAD_OPTIONS' }, JSON.stringify(b));
});

t.test('transit histogram', async (t) => {
  const s = new TransitStats();
  t.equal(s.meanMs, null);
  t.equal(s.quantileMs(0.5), null);
  for (let i = 0; i < 99; i++) s.add(1.01);
  s.add(20.01);
  s.add(NaN);
  t.equal(s.count, 100);
  t.ok(Math.abs(s.meanMs! - 1.2) < 1e-9);
  t.ok(Math.abs(s.quantileMs(0.5)! - 1.05) < 1e-9, 'p50 is the upper edge of its 0.05 ms bin');
  t.ok(Math.abs(s.quantileMs(0.99)! - 1.05) < 1e-9);
  t.ok(Math.abs(s.quantileMs(1)! - 20.05) < 1e-9);
  t.equal(s.maxMs, 20.01);
  s.add(-3);
  s.add(1e6);
  t.equal(s.minMs, -3, 'negative transit (clock offset) kept in min, first bin');
  t.equal(s.quantileMs(1), 500, 'beyond the range lands in the last bin');
});

t.test('sequence tracking: gaps, duplicates, reorder, wrap', async (t) => {
  const s = new SeqTracker();
  t.equal(s.expected, 0);
  t.same(s.wireUpTo(10, 0), wireStats(0, 0, 0));
  for (const q of [65530, 65531, 65533, 65532, 65532, 65535, 0, 1, 3]) s.push(q);
  t.equal(s.firstExt, 65530);
  t.equal(s.highestExt, 65536 + 3);
  t.equal(s.expected, 10);
  t.equal(s.unique, 8, '65534 and 2 missing');
  t.equal(s.duplicates, 1);
  t.equal(s.uniqueBelow(65536), 5, 'below the wrap: 65530..65533 and 65535');
  t.equal(s.uniqueBelow(1e9), 8);
  s.push(65000); // before the first packet: outside the span
  t.equal(s.unique, 8);
  const w = s.wireUpTo(65536 + 100, 1);
  t.same(
    w,
    { expected: 10, arrived: 8, notSent: 1, lost: 1, lossPct: 10 },
    'one skipped by the sender, one lost',
  );
  t.same(s.wireUpTo(65536, 0), { expected: 6, arrived: 5, notSent: 0, lost: 1, lossPct: (100 * 1) / 6 });
  // a long run: the window slides without false duplicates
  const r = new SeqTracker();
  for (let i = 0; i < 200_000; i++) r.push(i & 0xffff);
  t.equal(r.unique, 200_000);
  t.equal(r.duplicates, 0);
  t.equal(r.expected, 200_000);
});

t.test('loss and counters off the wire', async (t) => {
  t.equal(lossPct({ lost: 0, playedPackets: 0 }), 0);
  t.equal(lossPct({ lost: 5, playedPackets: 100 }), 5);
  t.equal(lossPct({ lost: 500, playedPackets: 100 }), 100);
  t.same(wireStats(100, 99, 5), { expected: 100, arrived: 99, notSent: 5, lost: 0, lossPct: 0 });
  t.same(wireStats(0, 0, 0).lossPct, 0);
  t.equal(readCounters(null), null);
  t.equal(readCounters({ sent: 3 }), null, 'sender counters are not receive counters');
  t.same(readCounters({ received: 10, lost: 'x', late: 2 }), {
    received: 10,
    extendedHighestSeq: 0,
    timestampErrors: 0,
    lost: 0,
    late: 2,
    duplicate: 0,
    reordered: 0,
    playedPackets: 0,
  });
  t.same(readSenderCounters({ sent: 100, skipped: 3, bufferBusy: 1, underruns: 2 }), {
    sent: 100,
    notSent: 4,
    underruns: 2,
  });
  t.equal(readSenderCounters({ received: 1 }), null);
  t.same(
    metersFromControls(
      [{ Name: 'audio.out.1.peak', Value: -6 }, { Name: 'AUDIO.OUT.1.RMS', Value: -9 }, null],
      [1, 2],
    ),
    [
      { peakDb: -6, rmsDb: -9 },
      { peakDb: -Infinity, rmsDb: -Infinity },
    ],
  );
});

t.test('levels and frequency', async (t) => {
  const tone = new ToneSource(2, 1000, 0.5);
  const l = new LevelTracker(2);
  t.same(l.read(), [
    { peakDb: -Infinity, rmsDb: -Infinity },
    { peakDb: -Infinity, rmsDb: -Infinity },
  ]);
  for (let i = 0; i < 100; i++) l.feed(tone.next(48), 48);
  const r = l.read();
  t.ok(Math.abs(r[0]!.peakDb - -6.02) < 0.05, `peak ${r[0]!.peakDb}`);
  t.ok(Math.abs(r[1]!.rmsDb - -9.03) < 0.05, `rms ${r[1]!.rmsDb}`);
  t.same(l.read(), r, 'an empty window keeps the last reading');
  t.ok(Math.abs(l.frequencyHz() - 1000) < 1, `frequency ${l.frequencyHz()}`);
  t.ok(Math.abs(l.peakHoldDb()[0]! - -6.02) < 0.05, 'peak hold');
  const other = new LevelTracker(1, 4800);
  const t440 = new ToneSource(1, 440, 0.5);
  for (let i = 0; i < 50; i++) other.feed(t440.next(48), 48);
  other.gap();
  const t2k = new ToneSource(1, 2000, 0.5);
  for (let i = 0; i < 99; i++) other.feed(t2k.next(48), 48);
  t.equal(other.frequencyHz(), 0, 'a gap restarts the run: no 100 ms contiguous yet');
  other.feed(t2k.next(48), 48);
  t.ok(Math.abs(other.frequencyHz() - 2000) < 2, 'a complete run after the gap');
  for (let i = 0; i < 100; i++) other.feed(t440.next(48), 48);
  t.ok(Math.abs(other.frequencyHz() - 440) < 1, `after 100 ms without a gap: ${other.frequencyHz()}`);
  // Silence packets (sender underruns) arrive as packets, not gaps: the run restarts at them too.
  // Without that the first 100 ms window holds 4 ms of zeros and reads ~960 Hz.
  const under = new LevelTracker(1, 4800);
  const t1k = new ToneSource(1, 1000, 0.5);
  for (let i = 0; i < 60; i++) under.feed(t1k.next(48), 48);
  for (let i = 0; i < 4; i++) under.feed(new Float32Array(48), 48);
  // 101: the tone's first sample after the silence is an exact 0 and still counts as silence.
  for (let i = 0; i < 101; i++) under.feed(t1k.next(48), 48);
  t.ok(Math.abs(under.frequencyHz() - 1000) < 1, `1 kHz after 4 silent packets: ${under.frequencyHz()}`);
});

const CORE = '127.0.7.11';
const PERIPH = '127.0.7.12';

function fakeLink(overrides: Record<string, (params: unknown) => unknown> = {}): {
  calls: Array<[string, unknown]>;
  call: (m: string, p: unknown) => Promise<unknown>;
} {
  const calls: Array<[string, unknown]> = [];
  let n = 1;
  return {
    calls,
    call: async (m, p) => {
      calls.push([m, p]);
      const o = overrides[m];
      if (o) return o(p);
      if (m === 'Stream.Open') return { StreamId: `s${n++}` };
      return {};
    },
  };
}

function rtp(seq: number, ts: number, value: number): Buffer {
  const samples = new Float32Array(32).fill(value);
  const payload = new Uint8Array(128);
  writePayload('F32', samples, 0, 32, payload, 0);
  return encodeRtp({
    padding: false,
    marker: false,
    payloadType: 98,
    sequence: seq,
    timestamp: ts,
    ssrc: 0x1234,
    csrc: [],
    extension: null,
    payload,
  });
}

t.test('AudioPeer with fakes: opens, counts, meters, polls, closes', async (t) => {
  const link = fakeLink({
    'Stream.List': () => [
      { streamId: 's1', direction: 'send', counters: { sent: 100, skipped: 0, bufferBusy: 0 } },
      {
        streamId: 's2',
        direction: 'receive',
        counters: {
          received: 40,
          lost: 2,
          late: 1,
          duplicate: 0,
          playedPackets: 50,
          extendedHighestSeq: 44,
          timestampErrors: 0,
        },
      },
    ],
    'Controls.Get': () => [
      { Name: 'audio.out.1.peak', Value: -12 },
      { Name: 'audio.out.1.rms', Value: -15 },
      { Name: 'audio.out.2.peak', Value: -12.5 },
      { Name: 'audio.out.2.rms', Value: -15.5 },
    ],
  });
  const net = new FakeNetwork([CORE]);
  const clock = new FakeClock();
  const media = new FakeMediaClock();
  const peer = new AudioPeer({
    peripheral: PERIPH,
    localAddress: CORE,
    call: link.call,
    mediaClock: media,
    clock,
    datagram: net,
    basePort: 27100,
  });
  await t.rejects(peer.poll(), { code: 'CORE_AUDIO_ERR_STATE' }, 'poll before start');
  await peer.start();
  t.teardown(() => peer.stop());
  await t.rejects(peer.start(), { code: 'CORE_AUDIO_ERR_STATE' }, 'start twice');
  t.same(
    link.calls.map(([m, p]) => [m, (p as { Direction?: string }).Direction]),
    [
      ['Stream.Open', 'send'],
      ['Stream.Open', 'receive'],
    ],
    'the peripheral sends to us first, then listens for us',
  );
  t.same(peer.streamIds, { fromPeripheral: 's1', toPeripheral: 's2' });

  // 100 packets 1 ms in flight; number 50 never arrives, number 10 arrives twice.
  const t0 = media.now;
  const base = rtpTimestampAt(t0);
  const flush = (): Promise<void> => new Promise((r) => setImmediate(r));
  const from = { address: PERIPH, port: 40000, family: 'IPv4' } as never;
  const to = { address: CORE, port: 27100 } as never;
  for (let i = 0; i < 100; i++) {
    media.now = t0 + BigInt(i) * 333_333n + 1_000_000n;
    if (i !== 50) {
      const pkt = rtp(i, (base + i * 16) >>> 0, 0.5);
      net.inject(from, to, pkt);
      if (i === 10) net.inject(from, to, pkt);
      await flush();
    }
    clock.advance(1 / 3);
  }
  // Just late enough to play packet 99 (its slot ends at 1600 frames + 2 ms delay), no further.
  media.now = t0 + 35_340_000n;
  clock.advance(5);
  t.equal(peer.stats().rx.wire, null, "no wire figure before the peripheral's sender counters");
  t.equal(peer.stats().tx.wire, null);
  await peer.poll();
  const s = peer.stats();
  t.equal(s.rxPackets, 99);
  t.equal(s.rx.duplicate, 1);
  t.equal(s.rx.lost, 1, 'the missing packet played as silence');
  t.same(s.rx.wire, { expected: 100, arrived: 99, notSent: 0, lost: 1, lossPct: 1 });
  t.equal(s.latency.samples, 100, 'every arriving RTP datagram timed (the duplicate too)');
  t.ok(Math.abs(s.latencyMs! - 1) < 0.03, `one-way transit ${s.latencyMs} ms`);
  t.ok(Math.abs(s.meters.received[0]!.peakDb - -6.02) < 0.01, 'received level');
  t.same(s.meters.peripheralOutput, [
    { peakDb: -12, rmsDb: -15 },
    { peakDb: -12.5, rmsDb: -15.5 },
  ]);
  t.same(s.tx.remote, {
    received: 40,
    extendedHighestSeq: 44,
    timestampErrors: 0,
    lost: 2,
    late: 1,
    duplicate: 0,
    reordered: 0,
    playedPackets: 50,
    lossPct: 4,
  });
  t.same(s.tx.wire, { expected: 45, arrived: 41, notSent: 0, lost: 4, lossPct: (100 * 4) / 45 });
  t.equal(s.lossPct, (100 * 4) / 45, 'the worse direction');
  t.equal(s.playoutLossPct, 4);
  t.equal(s.latency.playoutDelayMs, 2);

  await peer.stop();
  t.same(
    link.calls.filter(([m]) => m === 'Stream.Close').map(([, p]) => p),
    [{ StreamId: 's2' }, { StreamId: 's1' }],
  );
  t.ok(
    net.sockets.every((x) => (x as unknown as { closed: boolean }).closed),
    'our sockets closed',
  );
  t.equal(peer.stats().rxPackets, 99, 'figures stay readable after stop');
  await peer.stop();
});

t.test('AudioPeer: a refused Stream.Open closes what was opened and is typed', async (t) => {
  const link = fakeLink({
    'Stream.Open': (p) => {
      if ((p as { Direction: string }).Direction === 'receive')
        throw Object.assign(new Error('the stream API refused'), { rpcCode: 25 });
      return { StreamId: 'first' };
    },
  });
  const net = new FakeNetwork([CORE]);
  const peer = new AudioPeer({
    peripheral: PERIPH,
    localAddress: CORE,
    call: link.call,
    mediaClock: new FakeMediaClock(),
    clock: new FakeClock(),
    datagram: net,
    basePort: 27110,
  });
  await t.rejects(peer.start(), { code: 'CORE_AUDIO_ERR_OPEN', message: /refused Stream.Open/ });
  t.same(
    link.calls.filter(([m]) => m === 'Stream.Close').map(([, p]) => p),
    [{ StreamId: 'first' }],
  );
  t.ok(net.sockets.every((x) => (x as unknown as { closed: boolean }).closed));
  await t.rejects(peer.start(), { code: 'CORE_AUDIO_ERR_STATE' });
});

t.test('AudioPeer: bad options are refused at construction', async (t) => {
  const base = {
    peripheral: PERIPH,
    localAddress: CORE,
    call: fakeLink().call,
    mediaClock: new FakeMediaClock(),
  };
  t.throws(() => new AudioPeer({ ...base, channels: 40 }), { code: 'CORE_AUDIO_ERR_BAD_OPTIONS' });
  t.throws(() => new AudioPeer({ ...base, playoutDelayMs: 0 }), { code: 'CORE_AUDIO_ERR_BAD_OPTIONS' });
  t.throws(() => new AudioPeer({ ...base, localAddress: 'x' }), { code: 'CORE_AUDIO_ERR_BAD_OPTIONS' });
});

import t from 'tap';
import { readFileSync } from 'node:fs';
import { FakeClock } from '../../../firmware/clock/clock.js';
import type { BoardConfig } from '../../../firmware/config/board-types.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetwork } from '../../../firmware/net/datagram-fake.js';
import { VirtualAudioBinding } from '../../../firmware/audio/audio-binding.js';
import {
  applyGain,
  createChannelControls,
  DriftTracker,
  estimateFrequency,
  Meters,
  Resampler,
  sine,
} from '../../../firmware/audio/dsp.js';
import { AudioEngine } from '../../../firmware/audio/engine.js';
import { JitterBuffer } from '../../../firmware/audio/jitter-buffer.js';
import { FakeMediaClock } from '../../../firmware/audio/media-clock.js';
import { MediaTimeline, rtpTimestampAt, sampleAt, tsDiff } from '../../../firmware/audio/media-timeline.js';
import {
  clockIdToSdp,
  decideLock,
  parsePmc,
  ptp4lConfig,
  statusFromPmc,
} from '../../../firmware/audio/ptp.js';
import { RtpReceiver } from '../../../firmware/audio/receiver.js';
import { decodeRtcp } from '../../../firmware/audio/rtcp-codec.js';
import {
  encodeRtp,
  payloadBytes,
  qlanFormat,
  writePayload,
  type AudioFormat,
} from '../../../firmware/audio/rtp-codec.js';
import { encodeSap } from '../../../firmware/audio/sap-codec.js';
import { SapService } from '../../../firmware/audio/sap-service.js';
import { encodeSdp } from '../../../firmware/audio/sdp-codec.js';
import { flush } from '../../helpers/flush.js';

function packet(
  f: AudioFormat,
  o: { seq: number; ts: number; ssrc?: number; pt?: number; fill?: number },
): Buffer {
  const n = f.framesPerPacket * f.channels;
  const src = new Float32Array(n).fill(o.fill ?? 0);
  const payload = Buffer.alloc(payloadBytes(f));
  writePayload(f.encoding, src, 0, n, payload, 0);
  return encodeRtp({
    padding: false,
    marker: false,
    payloadType: o.pt ?? 98,
    sequence: o.seq & 0xffff,
    timestamp: o.ts >>> 0,
    ssrc: o.ssrc ?? 7,
    csrc: [],
    extension: null,
    payload,
  });
}

t.test(
  'media timeline: RTP ts = floor(PTP ns x 48000 / 1e9) mod 2^32 + offset; exact per packet',
  async (t) => {
    t.equal(rtpTimestampAt(0n), 0);
    t.equal(rtpTimestampAt(1_000_000_000n), 48000);
    t.equal(rtpTimestampAt(20_833n), 0, 'one sample is 20833.33 ns');
    t.equal(rtpTimestampAt(20_834n), 1);
    t.equal(rtpTimestampAt(0n, 0xffffffff), 0xffffffff);
    const ns = 1_764_000_000_123_456_789n;
    t.equal(rtpTimestampAt(ns, 5), Number(((ns * 48000n) / 1_000_000_000n + 5n) % 2n ** 32n));
    const tl = new MediaTimeline(ns, 16, 1234);
    t.equal(tl.anchor.firstSample % 16n, 0n, 'anchored on a packet boundary');
    t.ok(tl.anchor.firstDueNs >= ns, 'first packet not due before the start');
    t.equal(
      tl.anchor.firstTimestamp,
      rtpTimestampAt(tl.anchor.firstDueNs, 1234),
      'first timestamp matches PTP time',
    );
    let prevTs = tl.timestamp(0);
    let prevDue = tl.dueNs(0);
    let jumps = 0;
    // Cross the 2^32 wrap: 2^32 / 16 packets later.
    for (const n of [1, 2, 3, 268435455, 268435456, 268435457, 10_000_000_000 / 16]) {
      const ts = tl.timestamp(n);
      if (ts !== rtpTimestampAt(tl.dueNs(n), 1234)) jumps++;
    }
    for (let n = 1; n < 100000; n++) {
      const ts = tl.timestamp(n);
      if (tsDiff(prevTs, ts) !== 16) jumps++;
      const due = tl.dueNs(n);
      const gap = due - prevDue;
      if (gap < 333_333n || gap > 333_334n) jumps++;
      if (Math.abs(Number(due - tl.anchor.firstDueNs) - tl.relDueNs(n)) > 1) jumps++;
      prevTs = ts;
      prevDue = due;
    }
    t.equal(jumps, 0, 'timestamps advance by exactly 16 per packet and match PTP time, across the wrap');
    t.equal(sampleAt(tl.dueNs(3)), tl.anchor.firstSample + 48n);
    t.equal(tsDiff(0xfffffff0, 0x10), 0x20, 'wrap-aware difference');
  },
);

t.test('jitter buffer: order, loss, late, duplicate, reorder, SSRC/PT/timestamp errors', async (t) => {
  const f = qlanFormat(2);
  const jb = new JitterBuffer({ format: f, payloadType: 98, delayFrames: 64 });
  const played: Array<{ ts: number; missing: boolean; v: number }> = [];
  const sink = (s: Float32Array, _n: number, missing: boolean, ts: number): void =>
    void played.push({ ts, missing, v: s[0]! });
  const base = 0xffffff00; // wraps during the test
  // Local media time far from the sender's timestamps: a sender on another clock, anchored on arrival.
  const A = 0x40000000;
  t.ok(jb.push(packet(f, { seq: 65534, ts: base, fill: 0.5 }), A + 1000));
  t.ok(jb.push(packet(f, { seq: 65535, ts: base + 16, fill: 0.25 }), A + 1016));
  t.ok(jb.push(packet(f, { seq: 1, ts: base + 48, fill: 0.125 }), A + 1040), 'seq 0 skipped (lost)');
  t.ok(jb.push(packet(f, { seq: 0, ts: base + 32, fill: 1 }), A + 1041), 'reordered');
  t.notOk(jb.push(packet(f, { seq: 0, ts: base + 32, fill: 1 }), A + 1042), 'duplicate');
  t.notOk(jb.push(packet(f, { seq: 2, ts: base + 64, ssrc: 99 }), A + 1043), 'foreign SSRC');
  t.notOk(jb.push(packet(f, { seq: 2, ts: base + 64, pt: 97 }), A + 1043), 'wrong PT');
  t.notOk(jb.push(packet(f, { seq: 2, ts: base + 70 }), A + 1043), 'misaligned timestamp');
  t.notOk(jb.push(packet(f, { seq: 2, ts: base + 16 * 100000 }), A + 1043), 'far future');
  t.notOk(jb.push(Buffer.from([1, 2, 3]), A + 1043), 'malformed');
  t.notOk(jb.push(packet(f, { seq: 2, ts: base }).subarray(0, 40), A + 1043), 'short payload');
  t.equal(jb.playout(A + 1000 + 64 + 15, sink), 0, 'nothing due before the playout delay');
  t.equal(jb.playout(A + 1000 + 64 + 16, sink), 1);
  jb.playout(A + 1000 + 64 + 16 * 6, sink);
  t.same(
    played.map((p) => [p.ts, p.missing, p.v]),
    [
      [base, false, 0.5],
      [(base + 16) >>> 0, false, 0.25],
      [(base + 32) >>> 0, false, 1],
      [(base + 48) >>> 0, false, 0.125],
      [(base + 64) >>> 0, true, 0],
      [(base + 80) >>> 0, true, 0],
    ],
  );
  t.notOk(jb.push(packet(f, { seq: 3, ts: base + 64 }), A + 1200), 'after its slot played: late');
  t.match(jb.counters, {
    received: 4,
    lost: 2,
    late: 1,
    duplicate: 1,
    reordered: 1,
    ssrcErrors: 1,
    payloadTypeErrors: 1,
    timestampErrors: 2,
    malformed: { AUDIO_ERR_SHORT: 1, AUDIO_ERR_PAYLOAD_SIZE: 1 },
    extendedHighestSeq: 65537,
  });
});

t.test(
  'jitter buffer: a sender on our media clock plays at absolute time (latency = playout delay)',
  async (t) => {
    const f = qlanFormat(1);
    const jb = new JitterBuffer({ format: f, payloadType: 98, delayFrames: 96 });
    // Stamped at media time 50000, arrives 300 frames later (a start-up stall): still aligned.
    jb.push(packet(f, { seq: 0, ts: 50000 }), 50300);
    t.equal(jb.aligned, true);
    const played: number[] = [];
    t.equal(
      jb.playout(50000 + 96 + 15, () => undefined),
      0,
    );
    jb.playout(50000 + 96 + 16, (_s, _n, _m, ts) => void played.push(ts));
    t.same(played, [50000], 'played at its timestamp + the playout delay');
    const foreign = new JitterBuffer({ format: f, payloadType: 98, delayFrames: 96 });
    foreign.push(packet(f, { seq: 0, ts: 0x9000_0000 }), 50300);
    t.equal(foreign.aligned, false, 'a random timestamp base is anchored on arrival');
  },
);

t.test('redundancy: two paths each losing different packets merge without loss', async (t) => {
  const f = qlanFormat(1);
  const jb = new JitterBuffer({ format: f, payloadType: 98, delayFrames: 32 });
  const got: number[] = [];
  const sink = (s: Float32Array, _n: number, missing: boolean): void =>
    void got.push(missing ? -1 : Math.round(s[0]! * 100));
  for (let i = 0; i < 100; i++) {
    const p = packet(f, { seq: i, ts: i * 16, fill: i / 100 });
    if (i % 3 !== 0) jb.push(p, i * 16, 0);
    if (i % 3 !== 1) jb.push(p, i * 16 + 1, 1);
    jb.playout(i * 16, sink);
  }
  jb.playout(100 * 16 + 33, sink);
  t.same(
    got,
    Array.from({ length: 100 }, (_, i) => i),
    'every packet played once, in order',
  );
  t.equal(jb.counters.lost, 0);
  t.equal(jb.counters.duplicate, 0, 'copies from the other path are not errors');
  t.ok(jb.counters.merged >= 33, `merged ${jb.counters.merged}`);
});

t.test('receiver shell: acks 100/s to the sender RTCP port, re-joins a silent multicast group', async (t) => {
  const net = new FakeNetwork(['127.0.4.1', '127.0.4.2']);
  const clock = new FakeClock(0);
  const media = new FakeMediaClock(1_000_000_000n);
  const f = qlanFormat(2);
  const played: boolean[] = [];
  const rx = new RtpReceiver({
    binding: net,
    clock,
    mediaClock: media,
    logger: createMemoryLogger(),
    format: f,
    payloadType: 98,
    delayFrames: 32,
    paths: [{ bindAddress: '127.0.4.2', port: 21000, group: '239.69.4.7' }],
    ack: { ssrc: 55, everyMs: 10 },
    sink: (_s, _n, missing) => void played.push(missing),
    silenceMs: 500,
  });
  await rx.start();
  const acks = net.createUdp4({ reuseAddr: false });
  const got: number[] = [];
  acks.onMessage((d) => {
    for (const p of decodeRtcp(d)) if (p.type === 'qlan-ack') got.push(p.received);
  });
  await acks.bind(21003, '127.0.4.1');
  const ts0 = rtpTimestampAt(media.now);
  for (let i = 0; i < 300; i++) {
    net.inject(
      { address: '127.0.4.1', port: 21002 },
      { address: '239.69.4.7', port: 21000 },
      packet(f, { seq: i, ts: ts0 + i * 16 }),
    );
    await flush(1);
    media.now += 333_333n;
    clock.advance(1 / 3);
  }
  await flush();
  t.ok(got.length >= 9 && got.length <= 11, `about 10 acks in 100 ms (got ${got.length})`);
  t.ok(played.length > 250 && played.every((m) => !m), 'played without gaps');
  const sock = net.sockets[0]!;
  t.ok(sock.memberships.has('239.69.4.7@127.0.4.2'));
  sock.memberships.clear(); // the switch forgot us
  clock.advance(700);
  t.equal(rx.counters().rejoins, 1, 'rejoined after 500 ms of silence');
  t.ok(sock.memberships.has('239.69.4.7@127.0.4.2'));
  await rx.close();
});

t.test('resampler: tone fidelity and exact sample accounting', async (t) => {
  const r = new Resampler(1, 65536);
  const step = 1.0001;
  const n = 48000;
  const input = new Float32Array(n + 64);
  sine(input, input.length, 1, 997, 0.8, 0);
  t.ok(r.push(input, input.length));
  const out = new Float32Array(n - 100);
  t.ok(r.pull(out, out.length, step));
  // Output frame k interpolates input position k*step + 1 (cubic centred between x[1] and x[2]).
  let errSq = 0;
  let sigSq = 0;
  for (let k = 0; k < out.length; k++) {
    const ideal = 0.8 * Math.sin((2 * Math.PI * 997 * (k * step + 1)) / 48000);
    errSq += (out[k]! - ideal) ** 2;
    sigSq += ideal ** 2;
  }
  const snr = 10 * Math.log10(sigSq / errSq);
  t.ok(snr > 60, `SNR ${snr.toFixed(1)} dB at 997 Hz`);
  t.ok(Math.abs(estimateFrequency(out) - 997 * step) < 0.1, `frequency ${estimateFrequency(out).toFixed(3)}`);
  t.ok(Math.abs(r.position - out.length * step) < 1e-6, 'consumed exactly steps x frames');
  t.equal(r.produced, out.length);
  // Many small pulls account exactly as one big one.
  const a = new Resampler(2, 8192);
  const blk = new Float32Array(48 * 2);
  let produced = 0;
  let expect = 0;
  for (let i = 0; i < 2000; i++) {
    a.push(blk, 48);
    const s = 1 + ((i % 7) - 3) * 1e-4;
    while (a.pull(new Float32Array(16 * 2), 16, s)) {
      produced += 16;
      expect += 16 * s;
    }
  }
  t.ok(Math.abs(a.position - expect) < 1e-6, `position ${a.position} vs ${expect}`);
  t.equal(a.produced, produced);
  t.notOk(new Resampler(1).pull(new Float32Array(4), 4, 1), 'underrun reported, nothing produced');
});

t.test('drift: +-100 ppm card against the media clock, zero slips', async (t) => {
  const seconds = Number(process.env['AUDIO_DRIFT_SECONDS'] ?? 120);
  for (const ppm of [100, -100, 0]) {
    const e = ppm * 1e-6;
    const r = new Resampler(1, 4800);
    const tr = new DriftTracker(240);
    const inBlk = new Float32Array(48);
    const out = new Float32Array(48);
    let tNet = 0;
    let tCard = 0;
    let under = 0;
    let over = 0;
    let sum = 0;
    let cnt = 0;
    for (let i = 0; i < 5; i++) r.push(inBlk, 48);
    while (tNet < seconds) {
      if (tNet <= tCard) {
        if (!r.push(inBlk, 48)) over++;
        tNet += 0.001;
      } else {
        const step = tr.update(r.available, 0.001 / (1 + e));
        if (!r.pull(out, 48, step)) under++;
        tCard += 0.001 / (1 + e);
        if (tCard > seconds / 2) {
          sum += step;
          cnt++;
        }
      }
    }
    t.equal(under + over, 0, `${ppm} ppm: no slips in ${seconds} s`);
    const learned = (sum / cnt - 1) * 1e6;
    t.ok(Math.abs(learned + ppm) < 2, `${ppm} ppm: loop learned ${learned.toFixed(2)} ppm`);
  }
});

t.test('meters, gain and mute', async (t) => {
  const m = new Meters(2);
  const buf = new Float32Array(4800 * 2);
  sine(buf, 4800, 2, 1000, 0.5, 0);
  const ctl = createChannelControls(2);
  ctl.mute[1] = 1;
  ctl.gain[0] = 0.5;
  applyGain(buf, 4800, 2, ctl);
  m.feed(buf, 4800);
  const [a, b] = m.read();
  t.ok(Math.abs(a!.peakDb - 20 * Math.log10(0.25)) < 0.01, `peak ${a!.peakDb}`);
  t.ok(Math.abs(a!.rmsDb - 20 * Math.log10(0.25 / Math.SQRT2)) < 0.01, `rms ${a!.rmsDb}`);
  t.equal(b!.peakDb, -Infinity, 'muted channel is silent');
  t.equal(m.read()[0]!.peakDb, -Infinity, 'read resets');
});

t.test('ptp4l config, pmc parsing and the lock decision', async (t) => {
  const cfg = ptp4lConfig({
    ptp: { timestamping: 'software', domain: 3, priority1: 255, priority2: 254 },
    interface: 'eth0',
    udsPath: '/run/x/ptp4l',
    freeRunning: true,
  });
  for (const line of [
    'domainNumber 3',
    'priority1 255',
    'priority2 254',
    'logSyncInterval -3',
    'logAnnounceInterval 1',
    'announceReceiptTimeout 3',
    'time_stamping software',
    'uds_address /run/x/ptp4l',
    'free_running 1',
    '[eth0]',
  ])
    t.match(cfg, new RegExp(`^${line.replace(/[[\]]/g, '\\$&')}$`, 'm'), line);
  t.match(
    ptp4lConfig({
      ptp: { timestamping: 'hardware', domain: 0, priority1: 1, priority2: 1 },
      interface: 'e',
      udsPath: 'u',
      role: 'master',
    }),
    /time_stamping hardware[\s\S]*masterOnly 1/,
  );
  const answers = parsePmc(
    readFileSync(new URL('../../fixtures/audio/pmc-slave.txt', import.meta.url), 'utf8'),
  );
  t.equal(answers['PORT_DATA_SET']?.['portState'], 'SLAVE');
  const st = statusFromPmc(answers, 0, 1000);
  t.match(st, {
    state: 'locked',
    offsetNs: -312,
    pathDelayNs: 2166,
    grandmaster: '00-1D-C1-FF-FE-0E-10-C4',
    portState: 'SLAVE',
  });
  t.equal(statusFromPmc(answers, 0, 100).state, 'locking', 'offset above threshold: not locked');
  t.equal(statusFromPmc({}, 0, 100).state, 'unlocked', 'no answer: unlocked');
  t.equal(decideLock({ portState: 'MASTER', offsetNs: 0, gmPresent: false }, 1), 'master');
  t.equal(decideLock({ portState: 'SLAVE', offsetNs: 0, gmPresent: false }, 1), 'locking');
  t.equal(decideLock({ portState: 'FAULTY', offsetNs: 0, gmPresent: true }, 1), 'unlocked');
  t.equal(
    decideLock({ portState: 'UNCALIBRATED', offsetNs: 50, gmPresent: true }, 100),
    'locking',
    'servo not locked',
  );
  t.equal(
    decideLock({ portState: 'UNCALIBRATED', offsetNs: 50, gmPresent: true, monitorOnly: true }, 100),
    'locked',
    'free_running: the measured offset decides',
  );
  t.equal(
    decideLock({ portState: 'UNCALIBRATED', offsetNs: 500, gmPresent: true, monitorOnly: true }, 100),
    'locking',
  );
  t.equal(clockIdToSdp('001dc1.fffe.0e10c4'), '00-1D-C1-FF-FE-0E-10-C4');
  t.equal(clockIdToSdp('nonsense'), null);
});

t.test('SAP announce/listen on a fake network', async (t) => {
  const net = new FakeNetwork(['127.0.4.1', '127.0.4.2']);
  const clock = new FakeClock(0);
  const events: string[] = [];
  const a = new SapService({
    binding: net,
    clock,
    logger: createMemoryLogger(),
    interfaceAddress: '127.0.4.1',
    intervalMs: 1000,
    expireMs: 5000,
  });
  const b = new SapService({
    binding: net,
    clock,
    logger: createMemoryLogger(),
    interfaceAddress: '127.0.4.2',
    intervalMs: 1000,
    expireMs: 5000,
    onSession: (e, s) => events.push(`${e}:${s.sdp.name}`),
  });
  await a.start();
  await b.start();
  const sdp = (name: string): string =>
    encodeSdp({
      sessionId: '1',
      sessionVersion: '1',
      origin: '127.0.4.1',
      name,
      destination: '239.69.4.1',
      ttl: 32,
      port: 5004,
      payloadType: 96,
      encoding: 'L24',
      channels: 2,
      rate: 48000,
      ptimeMs: 1,
      framesPerPacket: 48,
      ptp: null,
      mediaclkOffset: 0,
      info: '',
    });
  a.announce('s1', sdp('one'));
  await flush();
  t.same(events, ['added:one']);
  t.equal(a.counters.ownIgnored, 1, 'own announcement ignored');
  clock.advance(1000);
  await flush();
  t.equal(events.length, 1, 're-announcement adds nothing');
  net.inject(
    { address: '127.0.4.9', port: 9875 },
    { address: '239.255.255.255', port: 9875 },
    Buffer.from('junk'),
  );
  net.inject(
    { address: '127.0.4.9', port: 9875 },
    { address: '239.255.255.255', port: 9875 },
    encodeSap({
      deletion: false,
      msgIdHash: 9,
      origin: '127.0.4.9',
      payloadType: 'application/sdp',
      sdp: 'v=0\r\nm=video 1 RTP/AVP 96\r\n',
    }),
  );
  await flush();
  t.same(b.counters.dropped, { AUDIO_ERR_SAP_SHORT: 1, AUDIO_ERR_SDP: 1 });
  a.withdraw('s1');
  await flush();
  t.same(events, ['added:one', 'removed:one']);
  await a.close();
  await b.close();
});

const BOARD = {
  id: 'virtual',
  audio: {
    binding: 'virtual',
    capture: {
      device: 'virtual',
      channels: 4,
      sampleFormat: 'S24_3LE',
      sampleRate: 48000,
      periodTimeUs: 1000,
      bufferTimeUs: 4000,
    },
    playback: {
      device: 'virtual',
      channels: 2,
      sampleFormat: 'S24_3LE',
      sampleRate: 48000,
      periodTimeUs: 1000,
      bufferTimeUs: 4000,
    },
  },
} as unknown as BoardConfig;

t.test('engine stream API: typed errors leave other streams untouched; RX plays to the card', async (t) => {
  const net = new FakeNetwork(['127.0.4.1', '127.0.4.2']);
  const clock = new FakeClock(0);
  const media = new FakeMediaClock(5_000_000_000n);
  const audio = new VirtualAudioBinding({ clock });
  const engine = new AudioEngine({
    board: BOARD,
    audio,
    datagram: net,
    clock,
    mediaClock: media,
    logger: createMemoryLogger(),
    lanA: '127.0.4.1',
  });
  await t.rejects(
    engine.openRx({ id: 'x', kind: 'qlan', channelMap: [0], source: { address: '127.0.4.1', port: 22000 } }),
    {
      code: 'AUDIO_ERR_NOT_STARTED',
    },
  );
  await engine.start();
  const rxSpec = {
    id: 'rx1',
    kind: 'qlan' as const,
    channelMap: [1, 0],
    source: { address: '127.0.4.1', port: 22000 },
    delayMs: 1,
  };
  const st = await engine.openRx(rxSpec);
  t.match(st, { id: 'rx1', direction: 'rx', channels: 2 });
  await t.rejects(engine.openRx(rxSpec), { code: 'AUDIO_ERR_STREAM_EXISTS' });
  await t.rejects(engine.openRx({ ...rxSpec, id: 'bad id!' }), { code: 'AUDIO_ERR_BAD_SPEC' });
  await t.rejects(engine.openRx({ ...rxSpec, id: 'r2', channelMap: [5] }), { code: 'AUDIO_ERR_BAD_SPEC' });
  await t.rejects(engine.openRx({ ...rxSpec, id: 'r2', channelMap: Array(17).fill(0) }), {
    code: 'AUDIO_ERR_BAD_SPEC',
  });
  await t.rejects(engine.openRx({ ...rxSpec, id: 'r2', redundant: true }), { code: 'AUDIO_ERR_BAD_SPEC' });
  await t.rejects(engine.openRx({ ...rxSpec, id: 'r2', source: { address: '127.0.4.9', port: 22002 } }), {
    code: 'AUDIO_ERR_STREAM_START',
  });
  await t.rejects(
    engine.openTx({
      id: 't1',
      kind: 'qlan',
      channelMap: [0],
      destination: { address: '239.69.4.1', port: 22004 },
    }),
    {
      code: 'AUDIO_ERR_BAD_SPEC',
    },
  );
  await t.rejects(
    engine.openTx({
      id: 't1',
      kind: 'aes67',
      channelMap: [0, 1],
      framesPerPacket: 40,
      destination: { address: '239.69.4.1', port: 22004 },
    }),
    {
      code: 'AUDIO_ERR_BAD_SPEC',
    },
  );
  await t.rejects(engine.close('nope'), { code: 'AUDIO_ERR_NO_STREAM' });
  t.throws(() => engine.setGain('output', 9, 0), { code: 'AUDIO_ERR_BAD_SPEC' });
  t.same(
    engine.list().map((s) => s.id),
    ['rx1'],
    'the open stream survived every failed call',
  );
  // Feed it: ch0 = 0.25, ch1 = -0.5; the channel map swaps them.
  const f = qlanFormat(2);
  const ts0 = rtpTimestampAt(media.now);
  const src = new Float32Array(32);
  for (let i = 0; i < 16; i++) {
    src[i * 2] = 0.25;
    src[i * 2 + 1] = -0.5;
  }
  engine.setMute('output', 1, false);
  engine.setGain('output', 0, -6.0206);
  for (let i = 0; i < 30; i++) {
    const payload = Buffer.alloc(payloadBytes(f));
    writePayload('F32', src, 0, 32, payload, 0);
    net.inject(
      { address: '127.0.4.2', port: 30000 },
      { address: '127.0.4.1', port: 22000 },
      encodeRtp({
        padding: false,
        marker: false,
        payloadType: 98,
        sequence: i,
        timestamp: ts0 + i * 16,
        ssrc: 1,
        csrc: [],
        extension: null,
        payload,
      }),
    );
    await flush(1);
    media.now += 333_333n;
    clock.advance(1 / 3);
  }
  clock.advance(5);
  // The card starts with the silence the RX drift loop adds to reach its queue target.
  const start = audio.recorded[0]!.findIndex((v) => v !== 0);
  const [out0, out1] = audio.recorded.map((ch) => ch.slice(start));
  t.ok(out0!.length >= 16 * 20, `played ${out0!.length} frames`);
  t.ok(
    out0!.every((v) => Math.abs(v + 0.25) < 1e-4),
    'stream ch1 -> out 0 at -6 dB',
  );
  t.ok(
    out1!.every((v) => v === 0.25),
    'stream ch0 -> out 1',
  );
  const m = engine.meters();
  t.ok(Math.abs(m.output[1]!.peakDb - 20 * Math.log10(0.25)) < 0.01);
  await engine.stop();
  t.same(engine.list(), []);
});

t.test('virtual card runs at its crystal error', async (t) => {
  const clock = new FakeClock(0);
  const fast = new VirtualAudioBinding({ clock, ppm: 100 });
  let frames = 0;
  const cap = fast.openCapture({ device: 'v', channels: 1, periodFrames: 48 });
  cap.onData((_s, n) => (frames += n));
  clock.advance(100_000);
  t.ok(
    frames >= 4800480 - 96 && frames <= 4800480,
    `${frames} frames in 100 s at +100 ppm (4800480 expected)`,
  );
  await cap.close();
});

/**
 * The engine's use of the sound card: opened only while a stream needs it (no timers at idle),
 * and receive-side drift compensation against a card whose crystal is off, in virtual time.
 */
import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { VIRTUAL_AUDIO_BOARD } from '../../helpers/audio-board.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetwork } from '../../../firmware/net/datagram-fake.js';
import { VirtualAudioBinding } from '../../../firmware/audio/audio-binding.js';
import { CardRateMatcher } from '../../../firmware/audio/card-rate-matcher.js';
import { PlayoutMix } from '../../../firmware/audio/playout-mix.js';
import { AudioEngine } from '../../../firmware/audio/engine.js';
import { FakeMediaClock } from '../../../firmware/audio/media-clock.js';
import { rtpTimestampAt } from '../../../firmware/audio/media-timeline.js';
import { encodeRtp, payloadBytes, qlanFormat, writePayload } from '../../../firmware/audio/rtp-codec.js';

const BOARD = VIRTUAL_AUDIO_BOARD;

const SECONDS = Number(process.env['AUDIO_DRIFT_SECONDS'] ?? 60);

t.test('card rate matcher: +-100 ppm card, media-clock source, zero slips, ratio learned', async (t) => {
  for (const ppm of [100, -100, 250]) {
    const clock = new FakeClock(0);
    const card = new VirtualAudioBinding({ clock, ppm, record: false });
    const pb = card.openPlayback({ device: 'v', channels: 1, periodFrames: 48 });
    const m = new CardRateMatcher({ channels: 1, targetFrames: 144, blockFrames: 48 });
    const src = new Float32Array(48);
    let phase = 0;
    let sumPpm = 0;
    let n = 0;
    let minQ = Infinity;
    let maxQ = 0;
    // The media clock: exactly 48 frames per ms (the fake clock is the PTP time base here).
    for (let ms = 0; ms < SECONDS * 1000; ms++) {
      for (let i = 0; i < 48; i++) src[i] = Math.sin((phase += (2 * Math.PI * 1000) / 48000));
      m.feed(src, 48, pb.queuedFrames!(), (x, f) => pb.write(x, f));
      clock.advance(1);
      if (ms > (SECONDS * 1000) / 2) {
        sumPpm += m.tracker.ppm;
        n++;
        const q = pb.queuedFrames!();
        if (q < minQ) minQ = q;
        if (q > maxQ) maxQ = q;
      }
    }
    const slips = pb.slips!();
    t.same(slips, { underruns: 0, overruns: 0 }, `${ppm} ppm: no card slips in ${SECONDS} s`);
    t.equal(m.overflows, 0, `${ppm} ppm: resampler never overflowed`);
    const learned = sumPpm / n;
    // A card running fast by e needs 1 + e output frames per input frame: step = 1 / (1 + e).
    const expect = (1 / (1 + ppm * 1e-6) - 1) * 1e6;
    t.ok(
      Math.abs(learned - expect) < 2,
      `${ppm} ppm: loop learned ${learned.toFixed(2)} ppm (expect ${expect.toFixed(2)})`,
    );
    t.ok(minQ > 0 && maxQ < 4 * 48, `${ppm} ppm: card queue held in ${minQ}..${maxQ} frames`);
    await pb.close();
  }
});

t.test('engine opens the card only while a stream needs it: no timers at idle', async (t) => {
  const clock = new FakeClock(0);
  const net = new FakeNetwork(['127.0.4.1', '127.0.4.2']);
  const engine = new AudioEngine({
    board: BOARD,
    audio: new VirtualAudioBinding({ clock }),
    datagram: net,
    clock,
    mediaClock: new FakeMediaClock(5_000_000_000n),
    logger: createMemoryLogger(),
    lanA: '127.0.4.1',
  });
  await engine.start();
  t.same(engine.cardState(), { capture: false, playback: false }, 'started: no card side open');
  t.equal(clock.pendingCount, 0, 'no timer runs at idle');
  const rx = {
    id: 'rx1',
    kind: 'qlan' as const,
    channelMap: [0, 1],
    source: { address: '127.0.4.1', port: 22100 },
  };
  await engine.openRx(rx);
  await engine.openRx({ ...rx, id: 'rx2', source: { address: '127.0.4.1', port: 22102 } });
  t.same(engine.cardState(), { capture: false, playback: true }, 'RX opens playback only');
  await t.rejects(engine.openRx({ ...rx, id: 'rx3', source: { address: '127.0.4.9', port: 22104 } }), {
    code: 'AUDIO_ERR_STREAM_START',
  });
  t.same(engine.cardState(), { capture: false, playback: true }, 'a failed open keeps the card for others');
  await engine.close('rx1');
  t.same(engine.cardState(), { capture: false, playback: true }, 'still one RX stream');
  await engine.close('rx2');
  t.same(engine.cardState(), { capture: false, playback: false }, 'last RX closed: playback closed');
  await t.rejects(engine.openRx({ ...rx, id: 'rx3', source: { address: '127.0.4.9', port: 22104 } }), {
    code: 'AUDIO_ERR_STREAM_START',
  });
  t.same(engine.cardState(), { capture: false, playback: false }, 'failed first open leaves none open');
  t.equal(clock.pendingCount, 0, 'idle again: no timers');
  await engine.stop();
});

t.test('engine opens capture for TX streams and closes it after the last', async (t) => {
  const clock = new FakeClock(0);
  const engine = new AudioEngine({
    board: BOARD,
    audio: new VirtualAudioBinding({ clock }),
    datagram: new FakeNetwork(['127.0.4.1']),
    clock,
    mediaClock: new FakeMediaClock(5_000_000_000n),
    logger: createMemoryLogger(),
    lanA: '127.0.4.1',
  });
  await t.rejects(
    engine.openTx({
      id: 'a',
      kind: 'qlan',
      channelMap: [0],
      destination: { address: '127.0.4.2', port: 22110 },
    }),
    { code: 'AUDIO_ERR_NOT_STARTED' },
  );
  await engine.start();
  const tx = {
    id: 'a',
    kind: 'qlan' as const,
    channelMap: [0, 1],
    destination: { address: '127.0.4.2', port: 22110 },
  };
  await engine.openTx(tx);
  t.same(engine.cardState(), { capture: true, playback: false }, 'TX opens capture only');
  t.ok(clock.pendingCount > 0, 'capture timer runs');
  await engine.close('a');
  t.same(engine.cardState(), { capture: false, playback: false }, 'last TX closed: capture closed');
  t.equal(clock.pendingCount, 0, 'no timer left');
  await engine.stop();
  const always = new AudioEngine({
    board: BOARD,
    audio: new VirtualAudioBinding({ clock }),
    datagram: new FakeNetwork(['127.0.4.1']),
    clock,
    mediaClock: new FakeMediaClock(5_000_000_000n),
    logger: createMemoryLogger(),
    lanA: '127.0.4.1',
    captureWhenIdle: true,
  });
  await always.start();
  t.same(always.cardState(), { capture: true, playback: false }, 'captureWhenIdle: live input meters');
  await always.stop();
  t.same(always.cardState(), { capture: false, playback: false }, 'stop closes it');
});

t.test('engine RX into a +100 ppm card: no slips, timestamps never re-anchored, drift learned', async (t) => {
  const seconds = Math.max(30, Math.min(40, SECONDS / 2));
  const clock = new FakeClock(0);
  const net = new FakeNetwork(['127.0.4.1', '127.0.4.2']);
  const t0 = 5_000_000_000n;
  const media = new FakeMediaClock(t0);
  const card = new VirtualAudioBinding({ clock, ppm: 100, record: false });
  const engine = new AudioEngine({
    board: BOARD,
    audio: card,
    datagram: net,
    clock,
    mediaClock: media,
    logger: createMemoryLogger(),
    lanA: '127.0.4.1',
  });
  await engine.start();
  await engine.openRx({
    id: 'rx',
    kind: 'qlan',
    channelMap: [0, 1],
    source: { address: '127.0.4.1', port: 22120 },
    delayMs: 2,
  });
  const f = qlanFormat(2);
  const ts0 = rtpTimestampAt(t0);
  const src = new Float32Array(32).fill(0.25);
  const payload = Buffer.alloc(payloadBytes(f));
  writePayload('F32', src, 0, 32, payload, 0);
  const packets = seconds * 3000;
  for (let i = 0; i < packets; i++) {
    // Packet i leaves the sender on the media clock at i x 1/3 ms; media and card share the fake clock.
    net.inject(
      { address: '127.0.4.2', port: 30000 },
      { address: '127.0.4.1', port: 22120 },
      encodeRtp({
        padding: false,
        marker: false,
        payloadType: 98,
        sequence: i & 0xffff,
        timestamp: (ts0 + i * 16) >>> 0,
        ssrc: 1,
        csrc: [],
        extension: null,
        payload,
      }),
    );
    await Promise.resolve();
    const ms = (i + 1) / 3;
    media.now = t0 + BigInt(Math.round(ms * 1e6));
    clock.advance(ms - clock.monotonicMs());
  }
  const st = engine.list()[0]!;
  const c = st.counters as { received: number; lost: number; late: number; rejoins: number };
  t.equal(c.received, packets, 'every packet received');
  t.equal(c.lost + c.late, 0, 'none lost or late: the jitter buffer kept its anchor');
  t.equal(c.rejoins, 0, 'never re-anchored');
  const pb = (engine as unknown as { playback: { slips(): object } }).playback;
  t.same(pb.slips(), { underruns: 0, overruns: 0 }, `no card slips in ${seconds} s at +100 ppm`);
  t.ok(Math.abs(st.driftPpm! + 100) < 20, `RX drift loop at ${st.driftPpm!.toFixed(1)} ppm (card +100)`);
  await engine.stop();
});

t.test('playout mix: one local timeline, late and overflowing frames dropped, stalls skipped', async (t) => {
  const mix = new PlayoutMix(2, 96);
  const out: number[] = [];
  const emit = (x: Float32Array, n: number): void => {
    for (let i = 0; i < n * 2; i++) out.push(x[i]!);
  };
  t.equal(mix.take(100, emit), 0, 'stopped: nothing taken');
  // Start just below the 2^32 wrap so positions cross it.
  const start = 0xffffffff - 7;
  mix.start(start);
  const ones = new Float32Array(32).fill(1);
  mix.add(start, ones, 16, 2, [0, 1]);
  mix.add(start + 8, ones, 16, 2, [1, -1]);
  t.equal(mix.take((start + 16) >>> 0, emit), 16, '16 frames taken across the wrap');
  t.same(out.slice(0, 2), [1, 1], 'frame 0: one stream on both outputs');
  t.same(out.slice(16, 18), [1, 2], 'frame 8: the second stream adds onto output 1');
  t.same(out.slice(30, 32), [1, 2], 'frame 15');
  mix.add(start, ones, 16, 2, [0, 1]);
  t.equal(mix.counters.droppedFrames, 16, 'a packet behind the cursor is dropped and counted');
  out.length = 0;
  t.equal(mix.take((start + 24) >>> 0, emit), 8);
  t.same(out.slice(0, 4), [0, 1, 0, 1], 'the rest of the second stream, after the wrap');
  mix.add((start + 24 + 90) >>> 0, ones, 16, 2, [0, 1]);
  t.equal(mix.counters.droppedFrames, 16 + 10, 'frames beyond the capacity are dropped');
  t.equal(mix.take((start + 24 + 500) >>> 0, emit), 0, 'a stall longer than the bus is skipped');
  t.equal(mix.counters.skippedFrames, 500);
  t.equal(mix.position, (start + 24 + 500) >>> 0, 'and the bus carries on in time');
  mix.reset();
  t.notOk(mix.running);
});

t.test('engine sums two RX streams (Q-LAN and AES67) that share an output channel', async (t) => {
  const clock = new FakeClock(0);
  const net = new FakeNetwork(['127.0.4.1', '127.0.4.2']);
  const t0 = 7_000_000_000n;
  const media = new FakeMediaClock(t0);
  const card = new VirtualAudioBinding({ clock });
  const engine = new AudioEngine({
    board: BOARD,
    audio: card,
    datagram: net,
    clock,
    mediaClock: media,
    logger: createMemoryLogger(),
    lanA: '127.0.4.1',
  });
  await engine.start();
  await engine.openRx({
    id: 'q',
    kind: 'qlan',
    channelMap: [0],
    source: { address: '127.0.4.1', port: 22200 },
    delayMs: 3,
  });
  await engine.openRx({
    id: 'a',
    kind: 'aes67',
    channelMap: [0, 1],
    source: { address: '127.0.4.1', port: 22202 },
    delayMs: 3,
  });
  const q = qlanFormat(1);
  const a = { encoding: 'L24' as const, channels: 2, framesPerPacket: 48 };
  const qPayload = Buffer.alloc(payloadBytes(q));
  writePayload('F32', new Float32Array(16).fill(0.25), 0, 16, qPayload, 0);
  const aSrc = new Float32Array(96);
  for (let i = 0; i < 48; i++) {
    aSrc[i * 2] = 0.125;
    aSrc[i * 2 + 1] = -0.5;
  }
  const aPayload = Buffer.alloc(payloadBytes(a));
  writePayload('L24', aSrc, 0, 96, aPayload, 0);
  const ts0 = rtpTimestampAt(t0);
  const pkt = (pt: number, seq: number, ts: number, payload: Buffer): Buffer =>
    encodeRtp({
      padding: false,
      marker: false,
      payloadType: pt,
      sequence: seq & 0xffff,
      timestamp: ts >>> 0,
      ssrc: pt,
      csrc: [],
      extension: null,
      payload,
    });
  const ms = 200;
  for (let i = 0; i < ms * 3; i++) {
    net.inject(
      { address: '127.0.4.2', port: 30000 },
      { address: '127.0.4.1', port: 22200 },
      pkt(98, i, ts0 + i * 16, qPayload),
    );
    if (i % 3 === 0)
      net.inject(
        { address: '127.0.4.2', port: 30002 },
        { address: '127.0.4.1', port: 22202 },
        pkt(96, i / 3, ts0 + (i / 3) * 48, aPayload),
      );
    await Promise.resolve();
    const at = (i + 1) / 3;
    media.now = t0 + BigInt(Math.round(at * 1e6));
    clock.advance(at - clock.monotonicMs());
  }
  clock.advance(10);
  // The card starts with the silence the RX drift loop adds to reach its queue target.
  const start = card.recorded[0]!.findIndex((v) => v !== 0);
  const [out0, out1] = card.recorded.map((ch) => ch.slice(start));
  const played = out0!.length;
  t.ok(
    played > 48 * (ms - 10) && played <= 48 * ms,
    `${played} frames played in ${ms} ms: streams summed, not queued`,
  );
  const eps = 1e-6;
  const mid0 = out0!.slice(48, played - 48);
  const mid1 = out1!.slice(48, played - 48);
  t.ok(
    mid0.every((v) => Math.abs(v - 0.375) < eps),
    'output 0 = Q-LAN 0.25 + AES67 ch0 0.125, sample by sample',
  );
  t.ok(
    mid1.every((v) => Math.abs(v + 0.5) < eps),
    'output 1 = AES67 ch1 alone',
  );
  const counters = engine.list().map((s) => s.counters as { lost: number; late: number });
  t.same(
    counters.map((c) => c.lost + c.late),
    [0, 0],
    'neither stream lost or late a packet',
  );
  t.equal(engine.mixCounters()!.droppedFrames, 0, 'no frame fell behind the mix');
  await engine.close('q');
  t.same(card.recorded.length, 2, 'one card; the other stream keeps playing');
  await engine.stop();
});

t.test(
  'card rate matcher: start window pads or trims to the target; only a card slip reopens it',
  async (t) => {
    const m = new CardRateMatcher({ channels: 1, targetFrames: 144, blockFrames: 48, settleFrames: 480 });
    const src = new Float32Array(48).fill(0.5);
    const out: number[] = [];
    const write = (x: Float32Array, n: number): void => void out.push(...x.subarray(0, n));
    m.feed(src, 48, 0, write);
    t.ok(m.startPadded >= 48, `empty card at start: ${m.startPadded} frames of silence added`);
    t.equal(out[0], 0, 'the padding is silence');
    for (let i = 0; i < 9; i++) m.feed(src, 48, 1000, write);
    t.equal(m.startTrimmed, 48 * 9, 'a queue far over target inside the window: blocks dropped');
    const trimmed = m.startTrimmed;
    for (let i = 0; i < 20; i++) m.feed(src, 48, 1000, write);
    t.equal(m.startTrimmed, trimmed, 'after the window nothing is dropped: only the rate bends');
    m.cardSlipped();
    m.feed(src, 48, 1000, write);
    t.equal(m.startTrimmed, trimmed + 48, 'a card slip reopens the window');
    t.equal(m.resyncs, 1);
  },
);

/**
 * The pieces the receive worker is built from, without threads or sockets: counters survive the
 * trip through shared memory in the shape the engine reports, and worker media time agrees with
 * the media clock.
 */
import t from 'tap';
import { JitterBuffer } from '../../../firmware/audio/jitter-buffer.js';
import { createFreeRunningClock, monotonicTsSource } from '../../../firmware/audio/media-clock.js';
import { rtpTimestampAt, tsDiff } from '../../../firmware/audio/media-timeline.js';
import { encodeRtp, payloadBytes, qlanFormat } from '../../../firmware/audio/rtp-codec.js';
import {
  MIX_VALUES,
  readMixCounters,
  readRxCounters,
  readRxState,
  RX_COUNTER_VALUES,
  SharedBlock,
  writeMixCounters,
  writeRxCounters,
} from '../../../firmware/audio/rx-shared.js';

t.test('receiver counters through shared memory: the shape RtpReceiver.counters() has', async (t) => {
  const f = qlanFormat(1);
  const jb = new JitterBuffer({ format: f, payloadType: 98, delayFrames: 32 });
  const payload = Buffer.alloc(payloadBytes(f));
  const pkt = (seq: number, ts: number): Buffer =>
    encodeRtp({
      padding: false,
      marker: false,
      payloadType: 98,
      sequence: seq,
      timestamp: ts,
      ssrc: 1,
      csrc: [],
      extension: null,
      payload,
    });
  jb.push(pkt(0, 1000), 1000, 0);
  jb.push(pkt(0, 1000), 1000, 1);
  jb.push(pkt(2, 1032), 1010, 0);
  jb.push(pkt(1, 1016), 1020, 0);
  jb.push(Buffer.from([1, 2, 3]), 1020, 0);
  jb.push(Buffer.from([1, 2, 3]), 1020, 0);
  jb.playout(1200, () => undefined);
  const block = new SharedBlock(RX_COUNTER_VALUES);
  writeRxCounters(block, jb.counters, 3, {
    depthPackets: jb.depthPackets(),
    aligned: jb.aligned,
    anchored: true,
  });
  const back = new SharedBlock(block.buffer);
  t.same(readRxCounters(back), { ...jb.counters, malformed: { AUDIO_ERR_SHORT: 2 }, rejoins: 3 });
  t.same(readRxState(back), { depthPackets: jb.depthPackets(), aligned: jb.aligned, anchored: true });
  t.same(readRxCounters(new SharedBlock(RX_COUNTER_VALUES)).malformed, {}, 'no malformed: an empty record');
  const mix = new SharedBlock(MIX_VALUES);
  writeMixCounters(mix, { droppedFrames: 1, skippedFrames: 2, playedFrames: 100 }, 10);
  t.same(
    readMixCounters(mix),
    { droppedFrames: 1, skippedFrames: 12, playedFrames: 90 },
    'frames the ring had no room for count as skipped, not played',
  );
});

t.test('worker media time agrees with the media clock within a frame', async (t) => {
  const clock = createFreeRunningClock();
  const now = monotonicTsSource(clock.anchorNs);
  let worst = 0;
  for (let i = 0; i < 2000; i++) {
    const a = rtpTimestampAt(clock.nowNs());
    const b = now();
    const c = rtpTimestampAt(clock.nowNs());
    // b was read between a and c.
    const d = Math.min(Math.abs(tsDiff(a, b)), Math.abs(tsDiff(c, b)));
    if (tsDiff(a, b) >= 0 && tsDiff(b, c) >= 0) continue;
    worst = Math.max(worst, d);
  }
  t.ok(worst <= 1, `off by at most ${worst} frame`);
  const far = monotonicTsSource(0xffff_ffffn * 1_000_000_000n);
  t.ok(Number.isInteger(far()) && far() >= 0 && far() < 2 ** 32, 'wraps mod 2^32');
});

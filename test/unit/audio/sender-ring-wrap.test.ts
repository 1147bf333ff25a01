/**
 * The sender's ring across the int32 index wrap: a ramp written through the ring comes out of the
 * socket sample for sample when the indices start just below 2^31 (signed wrap) or 2^32 (unsigned
 * wrap). With a 4800-slot ring mapped by `index % 4800` the 2^32 wrap landed mid-ring (2^32 is not
 * a multiple of 4800) and corrupted a packet about once a day of real time.
 */
import t from 'tap';
import dgram from 'node:dgram';
import { createFreeRunningClock } from '../../../firmware/audio/media-clock.js';
import { decodeRtp, qlanFormat, QLAN_PAYLOAD_TYPE, readPayload } from '../../../firmware/audio/rtp-codec.js';
import { nextPowerOfTwo, RtpSender } from '../../../firmware/audio/sender.js';

t.test('nextPowerOfTwo', async (t) => {
  t.same([1, 2, 3, 16, 4800, 48000, 65536].map(nextPowerOfTwo), [1, 2, 4, 16, 8192, 65536, 65536]);
});

t.test('ringFrames out of range is a typed error', async (t) => {
  for (const ringFrames of [0, 8, 1.5, 1 << 25])
    t.throws(
      () =>
        new RtpSender({
          format: qlanFormat(1),
          payloadType: QLAN_PAYLOAD_TYPE,
          destination: { address: '127.0.4.2', port: 22140 },
          bindAddress: '127.0.4.1',
          ssrc: 1,
          clock: createFreeRunningClock(),
          ringFrames,
        }),
      { code: 'AUDIO_ERR_STREAM' },
      `ringFrames ${ringFrames}`,
    );
});

// The second case also runs the sender without its busy-wait (sleep to each deadline).
const cases: Array<[string, number, boolean]> = [
  ['unsigned wrap (2^32)', -100, true],
  ['signed wrap (2^31), no busy-wait', 0x7fffffff - 250, false],
];
let port = 22150;
for (const [name, firstRingIndex, busyWait] of cases) {
  t.test(`ramp through the ring across the ${name}`, async (t) => {
    const FRAMES = 9600; // 200 ms: twice round the 4800-frame ring, across the wrap
    const rx = dgram.createSocket('udp4');
    const p = port++;
    await new Promise<void>((r) => rx.bind(p, '127.0.4.2', r));
    t.teardown(() => rx.close());
    const got: number[] = [];
    const s = new Float32Array(16);
    rx.on('message', (m) => {
      const pkt = decodeRtp(m);
      readPayload('F32', pkt.payload, 16, s, 0);
      for (const v of s) if (v !== 0) got.push(v);
    });
    const sender = new RtpSender({
      format: qlanFormat(1),
      payloadType: QLAN_PAYLOAD_TYPE,
      destination: { address: '127.0.4.2', port: p },
      bindAddress: '127.0.4.1',
      ssrc: 7,
      clock: createFreeRunningClock(),
      firstRingIndex,
      underrun: 'hold',
      dscp: null,
      busyWait,
    });
    t.equal(sender.capacity, 4800);
    // Frame k carries (k + 1) / 2^20: exact in float32, never 0 (silence is skipped above).
    const ramp = new Float32Array(FRAMES);
    for (let k = 0; k < FRAMES; k++) ramp[k] = (k + 1) / 2 ** 20;
    let written = sender.write(ramp, 4000);
    await sender.start();
    t.teardown(() => sender.stop());
    while (written < FRAMES) {
      await new Promise((r) => setTimeout(r, 10));
      const n = Math.min(sender.space(), FRAMES - written);
      written += sender.write(ramp, n, written);
    }
    const deadline = Date.now() + 3000;
    while (got.length < FRAMES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.equal(got.length, FRAMES, 'every frame came out');
    let bad = -1;
    for (let k = 0; k < FRAMES && bad < 0; k++) if (got[k] !== ramp[k]) bad = k;
    t.equal(bad, -1, bad < 0 ? 'sample for sample' : `first wrong frame ${bad}: ${got[bad]} != ${ramp[bad]}`);
  });
}

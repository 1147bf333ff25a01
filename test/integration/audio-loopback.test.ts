/**
 * Q-LAN TX -> RX over real UDP on loopback (127.0.4.x): a worker-paced sender and a receiver with
 * a jitter buffer, checked sample-exact. The length is AUDIO_LOOPBACK_SECONDS (default 10; the
 * benchmark runs 60).
 */
import t from 'tap';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { createAudioDatagramBinding } from '../../firmware/audio/audio-datagram.js';
import { createFreeRunningClock } from '../../firmware/audio/media-clock.js';
import { RtpReceiver } from '../../firmware/audio/receiver.js';
import { RtpSender } from '../../firmware/audio/sender.js';
import { qlanFormat, QLAN_PAYLOAD_TYPE } from '../../firmware/audio/rtp-codec.js';

const SECONDS = Number(process.env['AUDIO_LOOPBACK_SECONDS'] ?? 10);

/** Deterministic test signal: channel c of frame i (exactly representable in float32). */
function sampleValue(i: number, c: number): number {
  return (((i * 7 + c * 131) % 65536) - 32768) / 32768;
}

t.test('Q-LAN 16 ch TX -> RX on loopback is sample-exact', async (t) => {
  const channels = 16;
  const format = qlanFormat(channels);
  const mediaClock = createFreeRunningClock();
  const clock = createSystemClock();
  const logger = createMemoryLogger();
  const binding = createAudioDatagramBinding();
  const port = 20000 + (process.pid % 500) * 2;

  const totalFrames = SECONDS * 48000;
  // Frames played, checked as they play. The ring is primed before the sender starts, so the first
  // packet carries frame 0; silence after the last frame (the sender idles) is not checked.
  let expectFrame = -1;
  let mismatches = 0;
  let gaps = 0;
  const rx = new RtpReceiver({
    binding,
    clock,
    mediaClock,
    logger,
    format,
    payloadType: QLAN_PAYLOAD_TYPE,
    delayFrames: 48 * 1000,
    paths: [{ bindAddress: '127.0.4.2', port, group: null }],
    ack: { ssrc: 0x0badcafe, everyMs: 10 },
    sink: (samples, frames, missing) => {
      if (expectFrame < 0) {
        if (missing) return;
        expectFrame = 0;
      }
      if (expectFrame >= totalFrames) return;
      if (missing) gaps++;
      else
        for (let f = 0; f < frames; f++)
          for (let c = 0; c < channels; c++)
            if (samples[f * channels + c] !== sampleValue(expectFrame + f, c)) mismatches++;
      expectFrame += frames;
    },
  });
  await rx.start();

  const sender = new RtpSender({
    format,
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port },
    bindAddress: '127.0.4.1',
    ssrc: 0x12345678,
    sourcePort: port + 2,
    rtcp: binding,
    clock: mediaClock,
    lateLogPackets: 0,
    // Other test files share the two cores: buffer generously and never skip, so a stall delays
    // audio but loses none (the benchmark measures pacing; this test checks integrity).
    ringFrames: 48000,
    maxBurstPackets: 1_000_000,
    underrun: 'hold',
  });
  let written = 0;
  const block = new Float32Array(480 * channels);
  const fill = (): void => {
    while (written < totalFrames) {
      const n = Math.min(480, totalFrames - written, sender.space());
      if (n <= 0) break;
      for (let f = 0; f < n; f++)
        for (let c = 0; c < channels; c++) block[f * channels + c] = sampleValue(written + f, c);
      sender.write(block, n);
      written += n;
    }
  };
  fill();
  const filler = setInterval(fill, 5);
  await sender.start();
  await new Promise<void>((resolve) => {
    const iv = setInterval(() => {
      if (written >= totalFrames && sender.space() >= 48000 - 16) {
        clearInterval(iv);
        resolve();
      }
    }, 50);
  });
  clearInterval(filler);
  await sender.stop();
  const sc = sender.counters();
  // Let the last packets play out (playout delay 1 s).
  await new Promise<void>((r) => {
    const iv = setInterval(() => {
      if (expectFrame >= totalFrames) {
        clearInterval(iv);
        r();
      }
    }, 20);
    setTimeout(() => {
      clearInterval(iv);
      r();
    }, 5000).unref();
  });
  await rx.close();
  const rc = rx.counters();
  t.equal(sc.sendErrors, 0, 'no send errors');
  t.equal(sc.bufferBusy, 0, 'no buffer was reused while in flight');
  t.equal(mismatches, 0, 'every received sample equals what was sent');
  t.equal(rc.late, 0, 'no packet late');
  t.equal(gaps, 0, 'no gaps after the first packet');
  t.equal(expectFrame, totalFrames, 'every frame sent was played');
  t.equal(rc.received, sc.sent, 'every packet sent arrived');
  t.ok(sender.acksReceived > SECONDS * 50, `Q-LAN acks received (${sender.acksReceived})`);
  t.equal(sender.lastAck?.mediaSsrc, 0x12345678, 'acks name our stream');
  t.equal(sender.lastAck?.late, 0, 'ack reports no late packets');
  t.same(rc.malformed, {}, 'no malformed packets');
  t.comment(`sender ${JSON.stringify(sc)}; receiver ${JSON.stringify(rc)}`);
});

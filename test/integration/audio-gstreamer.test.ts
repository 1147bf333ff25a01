/**
 * AES67 interop with GStreamer on loopback multicast (groups 239.69.4.x, interface lo/127.0.4.x):
 * our L24 stream decoded by GStreamer from the caps our SDP describes, and a GStreamer rtpL24pay
 * stream received by our receiver. Both directions carry a 750 Hz tone (period 64 samples, so a
 * lost or repeated 48-sample packet breaks the check) and are checked for frequency and continuity.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { createAudioDatagramBinding } from '../../firmware/audio/audio-datagram.js';
import { estimateFrequency, sine } from '../../firmware/audio/dsp.js';
import { createFreeRunningClock } from '../../firmware/audio/media-clock.js';
import { RtpReceiver } from '../../firmware/audio/receiver.js';
import { RtpSender } from '../../firmware/audio/sender.js';
import { decodeSdp, encodeSdp } from '../../firmware/audio/sdp-codec.js';

const haveGst = spawnSync('gst-launch-1.0', ['--version']).status === 0;
const skip = haveGst
  ? false
  : 'gst-launch-1.0 not installed (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good)';
const base = 23000 + (process.pid % 400) * 4;

/** Largest |x[n] - x[n-64]| over the tone, and frequency. */
function analyse(x: Float32Array | number[]): { freq: number; worst: number; frames: number } {
  let start = 0;
  while (start < x.length && Math.abs(x[start]!) < 1e-3) start++;
  let end = x.length;
  while (end > start && Math.abs(x[end - 1]!) < 1e-3) end--;
  // Trim a little at both ends (start-up and shut-down may cut a period).
  start += 256;
  end -= 256;
  let worst = 0;
  for (let n = start + 64; n < end; n++) worst = Math.max(worst, Math.abs(x[n]! - x[n - 64]!));
  const seg = Array.from({ length: Math.max(0, end - start) }, (_, i) => x[start + i]!);
  return { freq: estimateFrequency(seg), worst, frames: end - start };
}

t.test('our AES67 L24 stream is decoded by GStreamer', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qperiph-audio-gst-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const group = '239.69.4.10';
  const port = base;
  const mediaClock = createFreeRunningClock();
  const sdp = decodeSdp(
    encodeSdp({
      sessionId: '1',
      sessionVersion: '1',
      origin: '127.0.4.1',
      name: 'qperiph interop',
      destination: group,
      ttl: 1,
      port,
      payloadType: 96,
      encoding: 'L24',
      channels: 2,
      rate: 48000,
      ptimeMs: 1,
      framesPerPacket: 48,
      ptp: null,
      mediaclkOffset: 0,
      info: '',
    }),
  );
  const caps = `application/x-rtp,media=audio,clock-rate=${sdp.rate},encoding-name=${sdp.encoding},channels=${sdp.channels},payload=${sdp.payloadType}`;
  const out = join(dir, 'gst.raw');
  const gst = spawn(
    'gst-launch-1.0',
    [
      '-q',
      '-e',
      'udpsrc',
      `address=${sdp.destination}`,
      `port=${sdp.port}`,
      'multicast-iface=lo',
      `caps=${caps}`,
      '!',
      'rtpjitterbuffer',
      'latency=500',
      '!',
      'rtpL24depay',
      '!',
      'audioconvert',
      '!',
      'audio/x-raw,format=F32LE,channels=2',
      '!',
      'filesink',
      `location=${out}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let gstErr = '';
  gst.stderr.on('data', (d: Buffer) => (gstErr += d.toString()));
  t.teardown(() => void gst.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 1500)); // let udpsrc join
  const sender = new RtpSender({
    format: { encoding: 'L24', channels: 2, framesPerPacket: 48 },
    payloadType: 96,
    destination: { address: group, port },
    bindAddress: '127.0.4.1',
    multicastInterface: '127.0.4.1',
    ttl: 1,
    ssrc: 0x1234,
    clock: mediaClock,
    ringFrames: 48000 * 3,
    maxBurstPackets: 1_000_000,
    underrun: 'hold',
  });
  const frames = 48000 * 2;
  const buf = new Float32Array(frames * 2);
  sine(buf, frames, 2, 750, 0.5, 0);
  t.equal(sender.write(buf, frames), frames);
  await sender.start();
  await new Promise<void>((r) => {
    const iv = setInterval(() => {
      if (sender.space() >= 48000 * 3 - 48) {
        clearInterval(iv);
        r();
      }
    }, 50);
  });
  await new Promise((r) => setTimeout(r, 300));
  await sender.stop();
  const exited = new Promise((r) => gst.once('exit', r));
  gst.kill('SIGINT');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  const raw = readFileSync(out);
  const left = new Float32Array(raw.length / 8);
  for (let i = 0; i < left.length; i++) left[i] = raw.readFloatLE(i * 8);
  const a = analyse(left);
  t.comment(`GStreamer decoded ${left.length} frames; ${JSON.stringify(a)} ${gstErr.trim().slice(0, 200)}`);
  t.ok(a.frames > frames * 0.9, `tone spans ${a.frames} of ${frames} frames`);
  t.ok(Math.abs(a.freq - 750) < 0.5, `frequency ${a.freq.toFixed(2)} Hz`);
  t.ok(a.worst < 1e-5, `continuous: worst period-to-period difference ${a.worst}`);
});

t.test('a GStreamer rtpL24pay stream is received by us', { skip }, async (t) => {
  const group = '239.69.4.11';
  const port = base + 2;
  const got: number[] = [];
  let gaps = 0;
  let started = false;
  let pendingGaps = 0;
  const rx = new RtpReceiver({
    binding: createAudioDatagramBinding(),
    clock: createSystemClock(),
    mediaClock: createFreeRunningClock(),
    logger: createMemoryLogger(),
    format: { encoding: 'L24', channels: 2, framesPerPacket: 48 },
    payloadType: 96,
    delayFrames: 48 * 500,
    paths: [{ bindAddress: '127.0.4.2', port, group }],
    silenceMs: 5000,
    sink: (s, n, missing) => {
      if (missing) {
        if (started) pendingGaps++;
        return;
      }
      started = true;
      gaps += pendingGaps; // a gap only counts when audio resumes after it
      pendingGaps = 0;
      for (let f = 0; f < n; f++) got.push(s[f * 2]!);
    },
  });
  await rx.start();
  const gst = spawn(
    'gst-launch-1.0',
    [
      '-q',
      'audiotestsrc',
      'freq=750',
      'volume=0.5',
      'is-live=true',
      'num-buffers=2000',
      'samplesperbuffer=48',
      '!',
      'audio/x-raw,format=S24BE,rate=48000,channels=2',
      '!',
      'rtpL24pay',
      'pt=96',
      'min-ptime=1000000',
      'max-ptime=1000000',
      '!',
      'udpsink',
      `host=${group}`,
      `port=${port}`,
      'multicast-iface=lo',
      'ttl-mc=1',
      'auto-multicast=true',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let gstErr = '';
  gst.stderr.on('data', (d: Buffer) => (gstErr += d.toString()));
  t.teardown(() => void gst.kill('SIGKILL'));
  await new Promise((r) => gst.once('exit', r));
  // Let the playout delay (500 ms) run out before closing.
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    const k = rx.counters();
    if (k.received > 0 && k.playedPackets >= k.received + k.lost) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 100));
  await rx.close();
  const c = rx.counters();
  const a = analyse(got);
  t.comment(
    `received ${got.length} frames; ${JSON.stringify(a)}; counters ${JSON.stringify(c)} ${gstErr.trim().slice(0, 200)}`,
  );
  t.ok(got.length > 48 * 1900, `received ${got.length} frames of 96000`);
  t.equal(gaps, 0, 'no gaps inside the stream');
  t.same(c.malformed, {}, 'nothing malformed');
  t.ok(Math.abs(a.freq - 750) < 0.5, `frequency ${a.freq.toFixed(2)} Hz`);
  t.ok(a.worst < 1e-6, `continuous: worst period-to-period difference ${a.worst}`);
});

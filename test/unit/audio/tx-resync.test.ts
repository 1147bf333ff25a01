/**
 * A TX ring that fell behind its sender for good is put back at its target fill. With keep-time
 * underruns the sender plays silence for frames that have not arrived and drops them when they
 * do; a capture that starts (or resumes) late at the card's steady pace then writes only stale
 * frames, and before the resync the stream stayed silent (the drift loop's 0.1 % needs minutes
 * to close a 100 ms gap). Real UDP on 127.0.4.x.
 */
import dgram from 'node:dgram';
import t from 'tap';
import { createSystemClock } from '../../../firmware/clock/clock.js';
import { VIRTUAL_AUDIO_BOARD } from '../../helpers/audio-board.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import {
  VirtualAudioBinding,
  type AudioBinding,
  type CaptureOptions,
  type CaptureStream,
} from '../../../firmware/audio/audio-binding.js';
import { createAudioDatagramBinding } from '../../../firmware/audio/audio-datagram.js';
import { AudioEngine } from '../../../firmware/audio/engine.js';
import { createFreeRunningClock } from '../../../firmware/audio/media-clock.js';
import { decodeRtp, qlanFormat, QLAN_PAYLOAD_TYPE, readPayload } from '../../../firmware/audio/rtp-codec.js';
import { RtpSender } from '../../../firmware/audio/sender.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const BOARD = VIRTUAL_AUDIO_BOARD;
const PORT = 22300 + (process.pid % 50) * 4;

/** Counts received packets whose first sample is not silence. */
async function listener(port: number): Promise<{ audible(): number; close(): void }> {
  const rx = dgram.createSocket('udp4');
  await new Promise<void>((r) => rx.bind(port, '127.0.4.2', r));
  let audible = 0;
  const s = new Float32Array(16 * 2);
  rx.on('message', (m) => {
    const p = decodeRtp(m);
    const ch = p.payload.length / (16 * 4);
    readPayload('F32', p.payload, 16 * ch, s, 0);
    if (s.some((v) => v !== 0)) audible++;
  });
  return { audible: () => audible, close: () => rx.close() };
}

t.test('RtpSender.resync puts the writer ahead of a sender it fell behind', async (t) => {
  const l = await listener(PORT);
  t.teardown(() => l.close());
  const sender = new RtpSender({
    format: qlanFormat(1),
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port: PORT },
    bindAddress: '127.0.4.1',
    ssrc: 9,
    clock: createFreeRunningClock(),
    busyWait: false,
  });
  await sender.start();
  t.teardown(() => sender.stop());
  // Nothing written for 60 ms: the sender keeps time with silence, so the ring is now behind.
  await sleep(60);
  const tone = new Float32Array(48).fill(0.25);
  sender.write(tone, 48);
  t.ok(sender.fill() < -1000, `ring behind by ${-sender.fill()} frames: the written frames were stale`);
  t.ok(sender.droppedLate >= 48, 'stale frames dropped, not sent late');
  const fill = sender.resync(960);
  t.ok(fill > 900 && fill <= 960, `after resync the ring holds ${fill} frames of silence lead`);
  t.equal(sender.counters().resyncs, 1, 'counted');
  // Write at the card's pace from here on: 48 frames per ms of elapsed time, for 100 ms.
  const before = l.audible();
  const t0 = performance.now();
  let written = 0;
  while (performance.now() - t0 < 100) {
    const due = Math.floor((performance.now() - t0) * 48);
    while (written + 48 <= due) {
      sender.write(tone, 48);
      written += 48;
    }
    await sleep(1);
  }
  await sleep(20);
  const got = l.audible() - before;
  t.ok(got >= 150, `frames written after the resync went out (${got} of ~300 packets audible)`);
  t.ok(sender.resync(1 << 30) <= 8192, 'the lead never exceeds the ring');
});

/** The virtual card, its capture opened `lateMs` after the engine asked (frames count from then). */
function lateCard(lateMs: number): AudioBinding {
  const card = new VirtualAudioBinding({ clock: createSystemClock(), toneHz: 500 });
  return {
    openPlayback: (o) => card.openPlayback(o),
    openCapture(o: CaptureOptions): CaptureStream {
      const handlers: Array<(s: Float32Array, f: number) => void> = [];
      let inner: CaptureStream | null = null;
      let closed = false;
      const timer = setTimeout(() => {
        if (closed) return;
        inner = card.openCapture(o);
        inner.onData((s, f) => handlers.forEach((h) => h(s, f)));
      }, lateMs);
      return {
        onData: (h) => void handlers.push(h),
        onError: () => undefined,
        restarts: 0,
        close: async () => {
          closed = true;
          clearTimeout(timer);
          await inner?.close();
        },
      };
    },
  };
}

t.test('engine: a capture that starts late is resynced, not left silent', async (t) => {
  const l = await listener(PORT + 1);
  t.teardown(() => l.close());
  const logger = createMemoryLogger();
  const engine = new AudioEngine({
    board: BOARD,
    audio: lateCard(150),
    datagram: createAudioDatagramBinding(),
    clock: createSystemClock(),
    mediaClock: createFreeRunningClock(),
    logger,
    lanA: '127.0.4.1',
    txBufferFrames: 480,
    senderBusyWait: false,
  });
  await engine.start();
  t.teardown(() => engine.stop());
  await engine.openTx({
    id: 't',
    kind: 'qlan',
    channelMap: [0, 1],
    destination: { address: '127.0.4.2', port: PORT + 1 },
  });
  // 10 ms of prefill, then 140 ms of silence before the card delivers anything.
  await sleep(600);
  const c = engine.list().find((s) => s.id === 't')!.counters as { resyncs: number; underruns: number };
  t.ok(c.underruns > 100, `the late card left the sender dry (${c.underruns} underruns)`);
  t.ok(c.resyncs >= 1, `resynced ${c.resyncs} time(s)`);
  const rec = logger.records.find((r) => r.event === 'audio_tx_resync');
  t.ok(
    rec && (rec['behindFrames'] as number) > 1000,
    `logged with how far behind it was (${String(rec?.['behindFrames'])} frames)`,
  );
  const before = l.audible();
  await sleep(200);
  const got = l.audible() - before;
  t.ok(got > 400, `audio flows after the resync: ${got} audible packets in 200 ms (600 expected)`);
});

/**
 * The engine's receive worker over real UDP on loopback (127.0.5.x): receivers, jitter buffers,
 * the LAN A / LAN B merge and the playout mix run in a worker thread, so a main thread blocked
 * by a busy loop loses no packet. The same scenario with receive on the main thread shows what
 * the worker fixed (packets late and lost), so the first assertion can fail.
 */
import dgram from 'node:dgram';
import t from 'tap';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { VIRTUAL_AUDIO_BOARD } from '../helpers/audio-board.js';
import { createMemoryLogger, type Logger } from '../../firmware/log/logger.js';
import { VirtualAudioBinding } from '../../firmware/audio/audio-binding.js';
import { createAudioDatagramBinding } from '../../firmware/audio/audio-datagram.js';
import { AudioEngine } from '../../firmware/audio/engine.js';
import type { ReceiverCounters } from '../../firmware/audio/jitter-buffer.js';
import { createFreeRunningClock } from '../../firmware/audio/media-clock.js';
import {
  encodeRtp,
  qlanFormat,
  QLAN_PAYLOAD_TYPE,
  type AudioFormat,
} from '../../firmware/audio/rtp-codec.js';
import { RtpSender, type SenderCounters } from '../../firmware/audio/sender.js';

const BOARD = VIRTUAL_AUDIO_BOARD;

const mediaClock = createFreeRunningClock();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const PORT = 23000 + (process.pid % 200) * 10;
/** Playout delay of every stream here, and what counts as the sender's own lateness. */
const DELAY_MS = 30;
const LATE_MS = DELAY_MS - 2;

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // the main thread is stuck (a GC pause, a burst of requests)
  }
}

function engine(
  rxThread?: 'worker' | 'main',
  lanB?: string,
  logger: Logger = createMemoryLogger(),
): AudioEngine {
  const clock = createSystemClock();
  return new AudioEngine({
    board: BOARD,
    audio: new VirtualAudioBinding({ clock, record: false }),
    datagram: createAudioDatagramBinding(),
    clock,
    mediaClock,
    logger,
    lanA: '127.0.5.2',
    lanB: lanB ?? null,
    ...(rxThread ? { rxThread } : {}),
  });
}

/** A worker-paced sender whose ring never runs dry (refilled every 5 ms, a second deep). */
async function sender(
  format: AudioFormat,
  payloadType: number,
  destination: { address: string; port: number },
  ssrc: number,
): Promise<{ stop(): Promise<number>; counters(): SenderCounters; sentLaterThan(ms: number): number }> {
  const s = new RtpSender({
    format,
    payloadType,
    destination,
    bindAddress: '127.0.5.1',
    multicastInterface: destination.address.startsWith('239.') ? '127.0.5.1' : null,
    ssrc,
    clock: mediaClock,
    ringFrames: 48000,
    underrun: 'hold',
    // On a shared machine the sender itself can fall behind: burst, never skip, so whatever the
    // receiver counts as lost or late is its own doing.
    maxBurstPackets: 1_000_000,
    lateLogPackets: 48000 * 10,
  });
  const block = new Float32Array(480 * format.channels).fill(0.25);
  const fill = (): void => {
    while (s.space() >= 480) s.write(block, 480);
  };
  fill();
  const iv = setInterval(fill, 5);
  await s.start();
  return {
    counters: () => s.counters(),
    // Packets the sender itself put on the wire more than `ms` after they were due: those arrive
    // late whoever receives them.
    sentLaterThan: (ms) => {
      const n = Math.min(s.counters().sent, s.lateLog.length);
      let k = 0;
      for (let i = 0; i < n; i++) if (s.lateLog[i]! > ms * 1e6) k++;
      return k;
    },
    stop: async () => {
      clearInterval(iv);
      await s.stop();
      return s.counters().sent;
    },
  };
}

/** One Q-LAN stream for ~1 s, then ten 50 ms busy loops on the main thread, 200 ms apart. */
async function stallRun(
  rxThread: 'worker' | 'main' | undefined,
  port: number,
): Promise<{ e: AudioEngine; c: ReceiverCounters; mixedWhileBlocked: number[]; explained: number }> {
  const e = engine(rxThread);
  await e.start();
  await e.openRx({
    id: 'r',
    kind: 'qlan',
    channelMap: [0, 1],
    source: { address: '127.0.5.2', port },
    // Room for the sender's and the worker's scheduling hiccups on a shared machine, still
    // shorter than the 50 ms stall.
    delayMs: DELAY_MS,
  });
  const tx = await sender(qlanFormat(2), QLAN_PAYLOAD_TYPE, { address: '127.0.5.2', port }, 7);
  await sleep(1000);
  const mixedWhileBlocked: number[] = [];
  for (let i = 0; i < 10; i++) {
    const before = e.mixCounters()!.playedFrames;
    busy(50);
    mixedWhileBlocked.push(e.mixCounters()!.playedFrames - before);
    await sleep(200);
  }
  // Read before the sender stops (after that every slot plays empty and counts as lost).
  const c = e.list()[0]!.counters as ReceiverCounters;
  const explained = tx.sentLaterThan(LATE_MS);
  await tx.stop();
  return { e, c, mixedWhileBlocked, explained };
}

t.test('RX in the worker keeps receiving and mixing while the main thread is blocked', async (t) => {
  const { e, c, mixedWhileBlocked, explained } = await stallRun(undefined, PORT);
  t.equal(e.rxThread, 'worker', 'the audio datagram binding puts receive in the worker');
  t.ok(c.received > 3000 * 2.5, `${c.received} packets received`);
  // Zero on a quiet machine; on a loaded one only what the sender itself sent too late.
  t.ok(
    c.late <= explained && c.lost <= explained,
    `across ten 50 ms main-thread stalls: ${c.late} late, ${c.lost} lost (sender sent ${explained} packets more than ${LATE_MS} ms late)`,
  );
  t.same(c.malformed, {}, 'nothing malformed');
  // The bus kept mixing into the ring while this thread was stuck (it cannot, on this thread).
  t.ok(
    mixedWhileBlocked.every((n) => n >= 48 * 25),
    `frames mixed during each 50 ms stall: ${mixedWhileBlocked.join(' ')}`,
  );
  t.equal(e.mixCounters()!.skippedFrames, 0, 'the ring never overflowed');
  const st = e.rxState('r')!;
  t.equal(st.aligned, true, 'anchored on our media clock');
  await e.stop();
  t.same(e.cardState(), { capture: false, playback: false });
});

t.test('the same stalls with receive on the main thread lose packets (what the worker fixed)', async (t) => {
  const { e, c, mixedWhileBlocked, explained } = await stallRun('main', PORT + 2);
  t.equal(e.rxThread, 'main');
  t.ok(
    c.lost > explained + 100 && c.late > explained + 100,
    `main thread: ${c.lost} lost, ${c.late} late (sender sent ${explained} packets more than ${LATE_MS} ms late)`,
  );
  t.ok(
    mixedWhileBlocked.every((n) => n === 0),
    'nothing is mixed while the main thread is blocked',
  );
  await e.stop();
});

t.test('worker: typed open errors, other streams untouched, bad datagrams counted', async (t) => {
  const e = engine();
  await e.start();
  const rx = {
    id: 'a',
    kind: 'qlan' as const,
    channelMap: [0, 1],
    source: { address: '127.0.5.2', port: PORT + 4 },
    delayMs: DELAY_MS,
  };
  await e.openRx(rx);
  // 192.0.2.1 (TEST-NET) is not ours: bind fails with EADDRNOTAVAIL inside the worker.
  await t.rejects(e.openRx({ ...rx, id: 'b', source: { address: '192.0.2.1', port: PORT + 6 } }), {
    code: 'AUDIO_ERR_STREAM_START',
  });
  await t.rejects(e.openRx(rx), { code: 'AUDIO_ERR_STREAM_EXISTS' });
  await t.rejects(e.close('b'), { code: 'AUDIO_ERR_NO_STREAM' });
  await e.openRx({ ...rx, id: 'c', source: { address: '127.0.5.2', port: PORT + 8 } });
  const tx = await sender(qlanFormat(2), QLAN_PAYLOAD_TYPE, { address: '127.0.5.2', port: PORT + 4 }, 9);
  const bad = dgram.createSocket('udp4');
  await new Promise<void>((r) => bad.bind(0, '127.0.5.1', r));
  const send = (b: Buffer): Promise<void> =>
    new Promise((r) => bad.send(b, PORT + 4, '127.0.5.2', () => r()));
  await sleep(300);
  const pkt = (pt: number, bytes: number): Buffer =>
    encodeRtp({
      padding: false,
      marker: false,
      payloadType: pt,
      sequence: 1,
      timestamp: 0,
      ssrc: 9,
      csrc: [],
      extension: null,
      payload: Buffer.alloc(bytes),
    });
  await send(Buffer.from([0x80, 0x62, 0]));
  await send(Buffer.from('00620001000000000000000900000000', 'hex'));
  await send(pkt(98, 100));
  await send(pkt(96, 128));
  await send(pkt(98, 128).fill(0, 8, 12)); // another SSRC
  await sleep(300);
  await e.close('c');
  await sleep(300);
  const c = e.list().find((s) => s.id === 'a')!.counters as ReceiverCounters;
  const explained = tx.sentLaterThan(LATE_MS);
  const sent = await tx.stop();
  t.same(
    c.malformed,
    { AUDIO_ERR_SHORT: 1, AUDIO_ERR_VERSION: 1, AUDIO_ERR_PAYLOAD_SIZE: 1 },
    'malformed datagrams dropped and counted by code',
  );
  t.equal(c.payloadTypeErrors, 1, 'wrong payload type counted');
  t.equal(c.ssrcErrors, 1, 'foreign SSRC counted');
  t.ok(
    c.lost <= explained && c.late <= explained,
    `the stream played on through the failed calls and the close of another: ${c.lost} lost, ${c.late} late (sender ${explained} late)`,
  );
  t.ok(c.received > 1500, `${c.received} received (sent ${sent})`);
  t.same(
    e.list().map((s) => s.id),
    ['a'],
  );
  bad.close();
  await e.stop();
});

t.test('worker: LAN A + LAN B multicast merged ST 2022-7 style', async (t) => {
  const e = engine(undefined, '127.0.5.3');
  await e.start();
  const group = '239.69.5.1';
  await e.openRx({
    id: 'm',
    kind: 'aes67',
    channelMap: [0, 1],
    source: { address: group, port: PORT + 10 },
    redundant: true,
    delayMs: DELAY_MS,
  });
  const f = { encoding: 'L24' as const, channels: 2, framesPerPacket: 48 };
  const tx = await sender(f, 96, { address: group, port: PORT + 10 }, 11);
  await sleep(1500);
  const c = e.list()[0]!.counters as ReceiverCounters;
  const explained = tx.sentLaterThan(LATE_MS);
  const sent = await tx.stop();
  t.ok(c.received > 1000, `${c.received} received (sent ${sent})`);
  t.ok(c.perPath[0] > 1000 && c.perPath[1] > 1000, `both paths heard: ${c.perPath.join(' / ')}`);
  t.ok(c.merged > 1000, `second copies merged: ${c.merged}`);
  t.equal(c.duplicate, 0, 'no copy counted as a duplicate');
  // A copy of a late packet is late on both paths.
  t.ok(
    c.lost <= explained && c.late <= 2 * explained,
    `none lost or late but what the sender sent late: ${c.lost} lost, ${c.late} late (sender ${explained})`,
  );
  await e.stop();
});

t.test('worker: a receive worker that dies is logged and replaced for new streams', async (t) => {
  const logger = createMemoryLogger();
  const e = engine(undefined, undefined, logger);
  await e.start();
  const rx = {
    id: 'a',
    kind: 'qlan' as const,
    channelMap: [0, 1],
    source: { address: '127.0.5.2', port: PORT + 12 },
    delayMs: DELAY_MS,
  };
  await e.openRx(rx);
  const w = (e as unknown as { rxWorker: { worker: { terminate(): Promise<number> } } }).rxWorker;
  await w.worker.terminate();
  await sleep(50);
  t.ok(
    logger.records.some((r) => r.event === 'audio_rx_worker_exited'),
    'the exit is logged',
  );
  await e.openRx({ ...rx, id: 'b', source: { address: '127.0.5.2', port: PORT + 14 } });
  const tx = await sender(qlanFormat(2), QLAN_PAYLOAD_TYPE, { address: '127.0.5.2', port: PORT + 14 }, 13);
  await sleep(500);
  const b = e.list().find((s) => s.id === 'b')!.counters as ReceiverCounters;
  t.ok(b.received > 500, `a new stream runs in a new worker: ${b.received} received`);
  await e.close('a');
  t.same(
    e.list().map((s) => s.id),
    ['b'],
    "the dead worker's stream closes cleanly",
  );
  await tx.stop();
  await e.stop();
});

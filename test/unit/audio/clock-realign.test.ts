/**
 * A system clock stepped under the media clock (ptp4l's first synchronisation steps it): the
 * Ptp4lClock catches the skew on its next poll, maps the clock again, says `realigned`, and is
 * not `locked` on a mapping that is off; the engine then reopens every stream on the new mapping.
 */
import t from 'tap';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VirtualAudioBinding } from '../../../firmware/audio/audio-binding.js';
import { AudioEngine } from '../../../firmware/audio/engine.js';
import type { MediaClock, MediaClockEvent, MediaClockStatus } from '../../../firmware/audio/media-clock.js';
import { FakeProcessSeam } from '../../../firmware/audio/process-fake.js';
import { Ptp4lClock } from '../../../firmware/audio/ptp.js';
import { FakeClock } from '../../../firmware/clock/clock.js';
import type { BoardConfig } from '../../../firmware/config/board-types.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetwork } from '../../../firmware/net/datagram-fake.js';

const PMC_FIXTURE = fileURLToPath(new URL('../../fixtures/audio/pmc-slave.txt', import.meta.url));

t.test('Ptp4lClock: a stepped system clock is caught, realigned and never reported locked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qperiph-realign-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // pmc answers as a locked slave (offset -312 ns).
  const pmc = join(dir, 'pmc');
  writeFileSync(pmc, `#!/bin/sh\ncat ${PMC_FIXTURE}\n`);
  chmodSync(pmc, 0o755);
  const skews: Array<bigint | null> = [];
  const seen: bigint[] = [];
  const logger = createMemoryLogger();
  const ptp = new Ptp4lClock({
    ptp: { timestamping: 'software', domain: 0, priority1: 255, priority2: 254 },
    interface: 'lo',
    udsPath: join(dir, 'ptp4l.sock'),
    configPath: join(dir, 'ptp4l.conf'),
    logger,
    ptp4lPath: '/usr/sbin/ptp4l',
    pmcPath: pmc,
    pollMs: 20,
    lockPolls: 1,
    ptp4lSeam: new FakeProcessSeam(),
    clock: new FakeClock(0),
    // Each poll takes the next skew; the default after the list is "in step".
    skewProbe: (anchor) => {
      seen.push(anchor);
      return skews.length ? skews.shift()! : 0n;
    },
  });
  const events: MediaClockEvent[] = [];
  ptp.onEvent((e) => events.push(e));
  const anchor0 = ptp.anchorNs;
  await ptp.start();
  t.teardown(() => ptp.close());
  const until = async (ok: () => boolean): Promise<void> => {
    const end = Date.now() + 5000;
    while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  };
  await until(() => ptp.status().state === 'locked');
  t.equal(ptp.status().state, 'locked', 'locked while the mapping agrees');
  t.equal(ptp.anchorNs, anchor0, 'no realignment in step');

  // The system clock steps by 37 s; the fresh mapping then agrees.
  skews.push(-37_000_000_000n, 0n);
  await until(() => events.some((e) => e.event === 'realigned'));
  const re = events.find((e) => e.event === 'realigned');
  t.match(re, { event: 'realigned', stepNs: -37e9 }, 'realigned event with the step');
  t.equal(ptp.realignments, 1);
  t.equal(ptp.status().state, 'locked', 'the fresh mapping agrees: locked');
  t.ok(
    logger.records.some((r) => r.event === 'media_clock_realigned' && r['stepMs'] === -37000),
    'logged',
  );
  t.ok(seen.length >= 2 && seen[seen.length - 1] !== undefined, 'the probe saw the anchor');

  // A step the fresh mapping cannot fix (probe keeps saying 5 ms): never locked.
  skews.push(5_000_000n, 5_000_000n);
  await until(() => ptp.status().state !== 'locked');
  t.equal(ptp.status().state, 'unlocked', 'still off after mapping again: unlocked');
  t.match(ptp.status().detail, /5\.0 ms off the system clock/);
});

const BOARD = {
  id: 'virtual',
  audio: {
    binding: 'virtual',
    capture: {
      device: 'virtual',
      channels: 2,
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

t.test('AudioEngine.realign: every stream reopens with its spec on the new mapping', async (t) => {
  const status: MediaClockStatus = {
    state: 'locked',
    source: 'ptp4l',
    domain: 0,
    offsetNs: 0,
    pathDelayNs: 0,
    grandmaster: null,
    portState: 'SLAVE',
    detail: 'test',
  };
  // A clock whose mapping the test moves, as Ptp4lClock does when it realigns.
  const media: MediaClock & { anchorNs: bigint } = {
    anchorNs: 5_000_000_000n,
    nowNs: () => process.hrtime.bigint() + media.anchorNs,
    status: () => status,
    onEvent: () => () => undefined,
    close: async () => undefined,
  };
  const logger = createMemoryLogger();
  const engine = new AudioEngine({
    board: BOARD,
    audio: new VirtualAudioBinding({ clock: new FakeClock(0) }),
    datagram: new FakeNetwork(['127.0.4.1', '127.0.4.2']),
    clock: new FakeClock(0),
    mediaClock: media,
    logger,
    lanA: '127.0.4.1',
  });
  await engine.start();
  t.teardown(() => engine.stop());
  await engine.openRx({
    id: 'r',
    kind: 'qlan',
    channelMap: [0, 1],
    source: { address: '127.0.4.1', port: 22300 },
  });
  await engine.openTx({
    id: 't',
    kind: 'qlan',
    channelMap: [1],
    destination: { address: '127.0.4.2', port: 22302 },
  });
  type Inside = { tx: Map<string, { senders: Array<{ timeline: { anchor: { firstDueNs: bigint } } }> }> };
  const before = (engine as unknown as Inside).tx.get('t')!.senders[0]!;
  const opened = process.hrtime.bigint();
  const ssrcBefore = engine.list().find((s) => s.id === 't')!.sdp;

  media.anchorNs += 37_000_000_000n;
  const r0 = process.hrtime.bigint();
  const r = await engine.realign();
  const done = process.hrtime.bigint();
  t.same(r, { reopened: ['r', 't'], failed: [] });
  t.same(
    engine.list().map((s) => [s.id, s.direction, s.channels]),
    [
      ['t', 'tx', 1],
      ['r', 'rx', 2],
    ],
    'same ids, directions and channels',
  );
  const after = (engine as unknown as Inside).tx.get('t')!.senders[0]!;
  t.not(after, before, 'a new sender');
  // The new timeline starts 37 s later on the new mapping, plus the time that passed in between.
  const shift = Number(after.timeline.anchor.firstDueNs - before.timeline.anchor.firstDueNs) / 1e9 - 37;
  const passed = Number(done - opened) / 1e9;
  t.ok(
    shift >= 0 && shift <= passed + 0.02,
    `its timeline follows the new mapping (+37 s + ${shift.toFixed(3)} s, ${passed.toFixed(3)} s passed; realign took ${(Number(done - r0) / 1e6).toFixed(0)} ms)`,
  );
  t.equal(ssrcBefore, null, 'Q-LAN: no SDP');
  t.ok(
    logger.records.some((x) => x.event === 'audio_realigned'),
    'logged',
  );
});

/** The sender worker reports its kernel thread id, and real-time priority goes through chrt. */
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFreeRunningClock } from '../../../firmware/audio/media-clock.js';
import { qlanFormat, QLAN_PAYLOAD_TYPE } from '../../../firmware/audio/rtp-codec.js';
import { RtpSender } from '../../../firmware/audio/sender.js';

t.test('rtPriority: chrt -f -p PRIO TID on the worker thread; failure is reported, not thrown', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qperiph-chrt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const argsFile = join(dir, 'args');
  const okChrt = join(dir, 'chrt-ok');
  writeFileSync(okChrt, `#!/bin/sh\necho "$@" > ${argsFile}\n`);
  chmodSync(okChrt, 0o755);
  const badChrt = join(dir, 'chrt-bad');
  writeFileSync(
    badChrt,
    '#!/bin/sh\necho "chrt: failed to set pid 1\'s policy: Operation not permitted" >&2\nexit 1\n',
  );
  chmodSync(badChrt, 0o755);

  const off = new RtpSender({
    format: qlanFormat(2),
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port: 22130 },
    bindAddress: '127.0.4.1',
    ssrc: 9,
    clock: createFreeRunningClock(),
  });
  t.equal(await off.applyRealtime(), 'off', 'no priority asked: nothing done');
  const noTid = new RtpSender({
    format: qlanFormat(2),
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port: 22130 },
    bindAddress: '127.0.4.1',
    ssrc: 9,
    clock: createFreeRunningClock(),
    rtPriority: 10,
    chrtPath: okChrt,
  });
  t.equal(await noTid.applyRealtime(), 'failed', 'not started: no thread id');
  t.equal(noTid.rtError, 'no worker thread id');

  const s = new RtpSender({
    format: qlanFormat(2),
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port: 22130 },
    bindAddress: '127.0.4.1',
    ssrc: 9,
    clock: createFreeRunningClock(),
    rtPriority: 10,
    chrtPath: okChrt,
  });
  await s.start();
  t.teardown(() => s.stop());
  t.type(s.tid, 'number', 'worker reported its thread id');
  t.ok(existsSync(`/proc/${process.pid}/task/${s.tid}`), 'a thread of this process');
  t.not(s.tid, process.pid, 'not the main thread');
  t.equal(s.rt, 'fifo');
  t.equal(s.timerSlackError, null, 'timer slack set without privileges');
  t.equal(readFileSync(`/proc/${s.tid}/timerslack_ns`, 'utf8').trim(), '1', 'worker thread: 1 ns slack');
  t.not(
    readFileSync(`/proc/${process.pid}/timerslack_ns`, 'utf8').trim(),
    '1',
    'main thread keeps the default',
  );
  t.equal(readFileSync(argsFile, 'utf8').trim(), `-f -p 10 ${s.tid}`);

  const bad = new RtpSender({
    format: qlanFormat(2),
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port: 22130 },
    bindAddress: '127.0.4.1',
    ssrc: 9,
    clock: createFreeRunningClock(),
    rtPriority: 10,
    chrtPath: badChrt,
  });
  // Reuse the started worker's id: applyRealtime only needs a tid.
  bad.tid = s.tid;
  t.equal(await bad.applyRealtime(), 'failed');
  t.match(bad.rtError, /Operation not permitted/);
});

/** phc2sys: command line, when it is needed, the lock rule, and supervision with a fake process. */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import type { MediaClockStatus } from '../../../firmware/audio/media-clock.js';
import { FakeProcessSeam } from '../../../firmware/audio/process-fake.js';
import { ProcessSupervisor } from '../../../firmware/audio/process-supervisor.js';
import { needsPhc2sys, phc2sysArgs, Ptp4lClock, withPhc2sys } from '../../../firmware/audio/ptp.js';

const HW = { timestamping: 'hardware', domain: 3, priority1: 255, priority2: 254 } as const;

t.test('phc2sys command line', async (t) => {
  t.same(phc2sysArgs({ interface: 'eth0', udsPath: '/run/q/ptp4l.sock', domain: 3 }), [
    '-a',
    '-r',
    '-r',
    '-n',
    '3',
    '-z',
    '/run/q/ptp4l.sock',
    '-R',
    '8',
    '-m',
    '-q',
    '-l',
    '5',
  ]);
  t.same(phc2sysArgs({ interface: 'eth0', udsPath: '/u', domain: 0, mode: 'slave' }).slice(0, 9), [
    '-s',
    'eth0',
    '-c',
    'CLOCK_REALTIME',
    '-w',
    '-n',
    '0',
    '-z',
    '/u',
  ]);
  t.ok(needsPhc2sys({ ptp: HW }), 'hardware timestamps: needed');
  t.notOk(
    needsPhc2sys({ ptp: { ...HW, timestamping: 'software' } }),
    'software: ptp4l steers the system clock',
  );
  t.notOk(needsPhc2sys({ ptp: HW, freeRunning: true }), 'free_running: nothing is steered');
});

t.test('lock needs phc2sys running when there is a PHC', async (t) => {
  const st: MediaClockStatus = {
    state: 'locked',
    source: 'ptp4l',
    domain: 0,
    offsetNs: 12,
    pathDelayNs: 500,
    grandmaster: '00-11-22-FF-FE-33-44-55',
    portState: 'SLAVE',
    detail: 'ptp4l port SLAVE',
  };
  t.equal(withPhc2sys(st, true), st, 'running: unchanged');
  const down = withPhc2sys(st, false);
  t.equal(down.state, 'locking');
  t.match(down.detail, /phc2sys not running/);
  t.equal(withPhc2sys({ ...st, state: 'master' }, false).state, 'master');
  t.equal(st.state, 'locked', 'input not mutated');
});

t.test('supervisor: restarts with doubling back-off, resets after a stable run, stops', async (t) => {
  const clock = new FakeClock(0);
  const seam = new FakeProcessSeam();
  const logger = createMemoryLogger();
  const sup = new ProcessSupervisor({
    name: 'phc2sys',
    command: 'phc2sys',
    args: ['-a'],
    logger,
    seam,
    clock,
    restartMs: 500,
    stableMs: 60_000,
  });
  sup.start();
  sup.start();
  t.equal(seam.spawned.length, 1, 'start is idempotent');
  t.ok(sup.running);
  const delays: number[] = [];
  for (let i = 0; i < 8; i++) {
    seam.last!.print('phc2sys[1.2]: failed to open /dev/ptp0\n');
    seam.last!.exit(255);
    t.notOk(sup.running, 'down after exit');
    const before = seam.spawned.length;
    const t0 = clock.monotonicMs();
    while (seam.spawned.length === before) clock.advance(100);
    delays.push(clock.monotonicMs() - t0);
  }
  t.same(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000], 'back-off doubles to 30 s');
  t.equal(sup.restarts, 8);
  clock.advance(61_000);
  seam.last!.exit(1);
  clock.advance(500);
  t.equal(seam.spawned.length, 10, 'after a stable run the back-off starts again at 500 ms');
  const exited = logger.records.filter((r) => r.event === 'phc2sys_exited');
  t.ok(exited.length >= 8, 'exits logged');
  t.match(exited[0], { code: 255, output: /failed to open/ });
  await sup.stop();
  t.same(seam.last!.signals, ['SIGTERM']);
  t.notOk(sup.running);
  clock.advance(60_000);
  t.equal(seam.spawned.length, 10, 'never restarted after stop');
});

t.test('supervisor: SIGKILL when SIGTERM is ignored; stop while waiting to restart', async (t) => {
  const clock = new FakeClock(0);
  const seam = new FakeProcessSeam(false);
  const sup = new ProcessSupervisor({
    name: 'x',
    command: 'x',
    args: [],
    logger: createMemoryLogger(),
    seam,
    clock,
  });
  sup.start();
  const stopping = sup.stop(2000);
  t.same(seam.last!.signals, ['SIGTERM']);
  clock.advance(2000);
  await stopping;
  t.same(seam.last!.signals, ['SIGTERM', 'SIGKILL']);
  const sup2 = new ProcessSupervisor({
    name: 'y',
    command: 'y',
    args: [],
    logger: createMemoryLogger(),
    seam,
    clock,
  });
  sup2.start();
  seam.last!.exit(1);
  await sup2.stop();
  const n = seam.spawned.length;
  clock.advance(60_000);
  t.equal(seam.spawned.length, n, 'a pending restart is cancelled');
});

t.test('Ptp4lClock runs phc2sys for a PHC (through the command prefix), not otherwise', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qperiph-phc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const seam = new FakeProcessSeam();
  const hw = new Ptp4lClock({
    ptp: HW,
    interface: 'eth9',
    udsPath: join(dir, 'ptp4l.sock'),
    configPath: join(dir, 'ptp4l.conf'),
    logger: createMemoryLogger(),
    commandPrefix: ['ip', 'netns', 'exec', 'nsA'],
    ptp4lPath: '/nonexistent/ptp4l',
    pmcPath: '/nonexistent/pmc',
    phc2sys: { seam, path: '/usr/sbin/phc2sys' },
  });
  t.ok(hw.phc2sys, 'hardware timestamping: phc2sys supervised');
  await hw.start();
  t.equal(seam.spawned.length, 1);
  t.equal(seam.last!.cmd, 'ip');
  t.same(seam.last!.args.slice(0, 9), [
    'netns',
    'exec',
    'nsA',
    '/usr/sbin/phc2sys',
    '-a',
    '-r',
    '-r',
    '-n',
    '3',
  ]);
  await hw.close();
  t.same(seam.last!.signals, ['SIGTERM'], 'closed with the clock');
  const sw = new Ptp4lClock({
    ptp: { ...HW, timestamping: 'software' },
    interface: 'eth9',
    udsPath: join(dir, 'b.sock'),
    configPath: join(dir, 'b.conf'),
    logger: createMemoryLogger(),
    phc2sys: { seam },
  });
  t.equal(sw.phc2sys, null, 'software timestamping: no phc2sys');
  const slave = new Ptp4lClock({
    ptp: HW,
    interface: 'eth9',
    role: 'slave',
    udsPath: join(dir, 'c.sock'),
    configPath: join(dir, 'c.conf'),
    logger: createMemoryLogger(),
    phc2sys: { seam },
  });
  t.ok(slave.phc2sys, 'slave-only board: fixed direction');
});

t.test(
  'Ptp4lClock supervises ptp4l with the same supervisor: unlocked on exit, back-off restarts',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'qperiph-ptp4l-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const clock = new FakeClock(0);
    const seam = new FakeProcessSeam();
    const logger = createMemoryLogger();
    const ptp = new Ptp4lClock({
      ptp: { ...HW, timestamping: 'software' },
      interface: 'eth9',
      udsPath: join(dir, 'ptp4l.sock'),
      configPath: join(dir, 'ptp4l.conf'),
      logger,
      ptp4lPath: '/usr/sbin/ptp4l',
      pmcPath: '/nonexistent/pmc',
      pollMs: 3_600_000,
      ptp4lSeam: seam,
      clock,
    });
    const events: string[] = [];
    ptp.onEvent((e) => void (e.event === 'state' && events.push(`${e.from}->${e.to}`)));
    await ptp.start();
    t.equal(seam.spawned.length, 1, 'ptp4l started once');
    t.same([seam.last!.cmd, ...seam.last!.args], ['/usr/sbin/ptp4l', '-f', join(dir, 'ptp4l.conf')]);
    // Pretend it had locked, then dies: the clock must say unlocked at once, never keep "locked".
    (ptp as unknown as { current: { state: string } }).current.state = 'locked';
    seam.last!.print('ptp4l[1]: port 1: bad message\n');
    seam.last!.exit(1);
    t.equal(ptp.status().state, 'unlocked');
    t.equal(ptp.status().detail, 'ptp4l exited (1)');
    t.same(events, ['locked->unlocked']);
    const exited = logger.records.find((r) => r.event === 'ptp4l_exited')!;
    t.match(exited, { code: 1, restartInMs: 500, output: /bad message/ }, 'logged with its last output');
    clock.advance(499);
    t.equal(seam.spawned.length, 1, 'not before the back-off');
    clock.advance(1);
    t.equal(seam.spawned.length, 2, 'restarted after 500 ms');
    seam.last!.exit(null, 'SIGSEGV');
    clock.advance(999);
    t.equal(seam.spawned.length, 2);
    clock.advance(1);
    t.equal(seam.spawned.length, 3, 'the back-off doubles');
    t.equal(ptp.ptp4l.restarts, 2);
    await ptp.close();
    t.same(seam.last!.signals, ['SIGTERM'], 'closed with the clock');
    clock.advance(60_000);
    t.equal(seam.spawned.length, 3, 'never restarted after close');
  },
);

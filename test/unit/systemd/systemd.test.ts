import t from 'tap';

import { FakeClock } from '../../../firmware/clock/clock.js';
import { QperiphError } from '../../../firmware/errors.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import {
  eventLoopLagCheck,
  HealthRegistry,
  type DelayHistogram,
  type HealthResult,
} from '../../../firmware/systemd/health.js';
import {
  childEnv,
  createNotifyTransport,
  formatNotifyMessage,
  MAX_STATUS_CHARS,
  parseNotifySocket,
  statusText,
  SystemdNotifier,
  type NotifyTransport,
} from '../../../firmware/systemd/sd-notify.js';
import { watchdogIntervalMs, WatchdogPinger } from '../../../firmware/systemd/watchdog.js';

/** Records every message with the (virtual) time it was sent. */
class RecordingTransport implements NotifyTransport {
  readonly messages: Array<{ at: number; message: string }> = [];
  failNext = 0;
  closed = false;
  constructor(private readonly clock?: FakeClock) {}
  send(message: string): Promise<void> {
    this.messages.push({ at: this.clock?.monotonicMs() ?? 0, message });
    if (this.failNext > 0) {
      this.failNext--;
      return Promise.reject(new Error('ECONNREFUSED (fake)'));
    }
    return Promise.resolve();
  }
  close(): void {
    this.closed = true;
  }
  texts(): string[] {
    return this.messages.map((m) => m.message);
  }
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('message formatting (sd_notify(3))', async (t) => {
  t.equal(formatNotifyMessage([['READY', 1]]), 'READY=1');
  t.equal(
    formatNotifyMessage([
      ['READY', 1],
      ['STATUS', 'serving on 10.0.0.7'],
    ]),
    'READY=1\nSTATUS=serving on 10.0.0.7',
  );
  t.equal(formatNotifyMessage([['MONOTONIC_USEC', 123456789012n]]), 'MONOTONIC_USEC=123456789012');
  for (const bad of [[['ready', 1]], [['READY=', 1]], [['STATUS', 'two\nlines']], []] as const) {
    t.throws(
      () => formatNotifyMessage(bad as never),
      { code: 'SYSTEMD_ERR_BAD_NOTIFY' },
      JSON.stringify(bad),
    );
  }
  t.equal(statusText('  line one\nline two\r\n\tend '), 'line one line two end');
  const long = statusText('x'.repeat(MAX_STATUS_CHARS + 50));
  t.equal(long.length, MAX_STATUS_CHARS);
  t.ok(long.endsWith('…'));

  const transport = new RecordingTransport();
  const logger = createMemoryLogger();
  const n = new SystemdNotifier(transport, logger, { monotonicUsec: () => 42_000_000n });
  t.ok(n.enabled);
  t.equal(await n.ready(), true);
  await n.ready('up: 2 streams');
  await n.status('audio\nclock locked');
  await n.watchdog();
  await n.reloading();
  await n.extendTimeout(1_500_000.2);
  await n.stopping('SIGTERM');
  await n.stopping();
  t.strictSame(transport.texts(), [
    'READY=1',
    'READY=1\nSTATUS=up: 2 streams',
    'STATUS=audio clock locked',
    'WATCHDOG=1',
    'RELOADING=1\nMONOTONIC_USEC=42000000',
    'EXTEND_TIMEOUT_USEC=1500001',
    'STOPPING=1\nSTATUS=SIGTERM',
    'STOPPING=1',
  ]);
  t.equal(n.sent, 8);
  t.throws(() => n.extendTimeout(0), QperiphError);
  t.throws(() => n.extendTimeout(Number.NaN), { code: 'SYSTEMD_ERR_BAD_NOTIFY' });

  // A failing send is logged, counted and swallowed.
  transport.failNext = 1;
  t.equal(await n.watchdog(), false);
  t.equal(n.sent, 8);
  t.equal(n.failed, 1);
  const fail = logger.records.find((r) => r.event === 'sd_notify_failed');
  t.equal(fail?.level, 'warn');
  t.equal(fail?.['message'], 'WATCHDOG=1');
  t.equal(await n.watchdog(), true);

  n.close();
  t.ok(transport.closed);
  t.notOk(n.enabled);
  t.equal(await n.ready(), false, 'closed notifier is a no-op');

  // No transport (not run by systemd): every call is a quiet no-op.
  const off = new SystemdNotifier(null);
  t.equal(await off.ready('x'), false);
  t.equal(await off.watchdog(), false);
  t.equal(off.sent, 0);
  t.equal(off.failed, 0);

  // A pending transport (createNotifyTransport's promise): early messages wait, in order.
  const later = new RecordingTransport();
  let resolveTransport!: (tr: NotifyTransport | null) => void;
  const pending = new SystemdNotifier(
    new Promise<NotifyTransport | null>((r) => (resolveTransport = r)),
    logger,
  );
  t.notOk(pending.enabled, 'not enabled while pending');
  const early = [pending.status('starting'), pending.ready('up')];
  t.equal(later.messages.length, 0);
  resolveTransport(later);
  t.strictSame(await Promise.all(early), [true, true]);
  t.ok(await pending.settled());
  t.strictSame(later.texts(), ['STATUS=starting', 'READY=1\nSTATUS=up']);

  const closedEarly = new RecordingTransport();
  let resolveClosed!: (tr: NotifyTransport | null) => void;
  const quitter = new SystemdNotifier(new Promise<NotifyTransport | null>((r) => (resolveClosed = r)));
  quitter.close();
  resolveClosed(closedEarly);
  t.equal(await quitter.settled(), false);
  t.ok(closedEarly.closed, 'a transport that arrives after close() is closed');

  const brokenLog = createMemoryLogger();
  const broken = new SystemdNotifier(Promise.reject(new Error('boom')), brokenLog);
  t.equal(await broken.ready(), false);
  t.equal(brokenLog.records[0]?.event, 'sd_notify_unavailable');
});

t.test('NOTIFY_SOCKET parsing, transport choice and childEnv', async (t) => {
  t.strictSame(parseNotifySocket('/run/systemd/notify'), {
    kind: 'path',
    address: '/run/systemd/notify',
    display: '/run/systemd/notify',
  });
  t.strictSame(parseNotifySocket('@sd-notify/42'), {
    kind: 'abstract',
    address: '\0sd-notify/42',
    display: '@sd-notify/42',
  });
  for (const bad of [undefined, '', '@', 'relative/path', 'vsock:2:1234'])
    t.equal(parseNotifySocket(bad), null);

  const logger = createMemoryLogger();
  t.equal(await createNotifyTransport({}, logger), null, 'unset: run plainly');
  t.equal(await createNotifyTransport({ NOTIFY_SOCKET: 'nope' }, logger), null, 'garbage: run plainly');
  t.equal(logger.records.find((r) => r.event === 'sd_notify_unavailable')?.level, 'warn');

  // Addon missing and no systemd-notify on PATH: no transport, a warning.
  const none = createMemoryLogger();
  const missing = await createNotifyTransport({ NOTIFY_SOCKET: '/tmp/x.sock', PATH: '/nonexistent' }, none, {
    loadAddon: () => Promise.reject(new Error('Cannot find module')),
  });
  t.equal(missing, null);
  t.match(String(none.records.find((r) => r.event === 'sd_notify_unavailable')?.['reason']), /did not load/);

  // Addon present: the datagram transport, no spawning.
  const chosen = createMemoryLogger();
  const tr = await createNotifyTransport({ NOTIFY_SOCKET: '/tmp/x.sock' }, chosen, {
    loadAddon: () =>
      Promise.resolve({
        DgramSocket: class {
          sendTo(_b: Buffer, _o: number, _l: number, _p: string, cb?: (err?: Error) => void): void {
            cb?.();
          }
          close(): void {}
          on(): void {}
        },
      }),
  });
  t.ok(tr);
  await t.resolves(tr!.send('READY=1'));
  t.equal(chosen.records.find((r) => r.event === 'sd_notify_transport_selected')?.['kind'], 'dgram');

  const env = {
    PATH: '/usr/bin',
    NOTIFY_SOCKET: '/run/systemd/notify',
    WATCHDOG_USEC: '10000000',
    WATCHDOG_PID: '7',
    NODE_ENV: 'production',
  };
  t.strictSame(childEnv(env), { PATH: '/usr/bin', NODE_ENV: 'production' });
  t.equal(env.NOTIFY_SOCKET, '/run/systemd/notify', 'input env untouched');
});

t.test('watchdogIntervalMs', async (t) => {
  const pid = 4242;
  const cases: Array<[string, NodeJS.ProcessEnv, number | null]> = [
    ['absent', {}, null],
    ['4 s', { WATCHDOG_USEC: '4000000' }, 2000],
    ['10 s, our pid', { WATCHDOG_USEC: '10000000', WATCHDOG_PID: '4242' }, 5000],
    ['empty WATCHDOG_PID counts as unset', { WATCHDOG_USEC: '10000000', WATCHDOG_PID: '' }, 5000],
    ['another pid', { WATCHDOG_USEC: '10000000', WATCHDOG_PID: '1' }, null],
    ['garbage pid', { WATCHDOG_USEC: '10000000', WATCHDOG_PID: 'x42' }, null],
    ['zero', { WATCHDOG_USEC: '0' }, null],
    ['empty', { WATCHDOG_USEC: '' }, null],
    ['negative', { WATCHDOG_USEC: '-4000000' }, null],
    ['fraction', { WATCHDOG_USEC: '4000000.5' }, null],
    ['garbage', { WATCHDOG_USEC: '10s' }, null],
    ['whitespace', { WATCHDOG_USEC: ' 4000000' }, null],
    ['tiny rounds up to 1 ms', { WATCHDOG_USEC: '1' }, 1],
    ['odd µs floors', { WATCHDOG_USEC: '4000999' }, 2000],
    ['huge is capped at the timer ceiling', { WATCHDOG_USEC: '9000000000000' }, 2 ** 31 - 1],
    ['beyond safe integers', { WATCHDOG_USEC: '99999999999999999999' }, null],
  ];
  for (const [name, env, want] of cases) t.equal(watchdogIntervalMs(env, pid), want, name);
  t.equal(
    watchdogIntervalMs({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: String(process.pid) }),
    1000,
    'defaults',
  );
});

t.test('WatchdogPinger in virtual time', async (t) => {
  const clock = new FakeClock(1_000);
  const transport = new RecordingTransport(clock);
  const logger = createMemoryLogger();
  const notifier = new SystemdNotifier(transport, logger);
  const intervalMs = watchdogIntervalMs({ WATCHDOG_USEC: '4000000' }, 1)!;
  t.equal(intervalMs, 2000);
  let healthy = true;
  const pinger = new WatchdogPinger({
    notifier,
    clock,
    intervalMs,
    logger,
    healthCheck: (): HealthResult =>
      healthy ? { ok: true, reasons: [] } : { ok: false, reasons: ['audio: capture stalled'] },
  });
  pinger.start();
  pinger.start(); // idempotent
  t.equal(clock.pendingCount, 1);

  clock.advance(20_000);
  const pingTimes = (): number[] =>
    transport.messages.filter((m) => m.message === 'WATCHDOG=1').map((m) => m.at);
  t.equal(pinger.pings, 10, '10 pings in 20 virtual seconds');
  t.strictSame(
    pingTimes(),
    Array.from({ length: 10 }, (_, i) => 1_000 + (i + 1) * 2000),
    'every 2 s exactly, anchored at start',
  );

  // Unhealthy for 7 s: pings withheld, one state change logged, STATUS says why.
  healthy = false;
  clock.advance(7_000); // ticks at 23, 25, 27 s
  t.equal(pinger.pings, 10);
  t.equal(pinger.withheld, 3);
  t.equal(pinger.state, 'unhealthy');
  const withheld = logger.records.filter((r) => r.event === 'watchdog_withheld');
  t.equal(withheld.length, 1, 'withheld logged once per state change');
  t.equal(withheld[0]?.level, 'warn');
  t.strictSame(withheld[0]?.['reasons'], ['audio: capture stalled']);
  const toUnhealthy = logger.records.filter((r) => r.event === 'state' && r['to'] === 'unhealthy');
  t.equal(toUnhealthy.length, 1);
  t.match(toUnhealthy[0], { from: 'healthy', to: 'unhealthy', cause: 'audio: capture stalled' });
  t.strictSame(
    transport.texts().filter((m) => m.startsWith('STATUS=')),
    ['STATUS=unhealthy: audio: capture stalled'],
    'status sent once while the cause stays the same',
  );

  // Recovery: state back to healthy, pings resume on the same grid.
  healthy = true;
  clock.advance(4_000); // ticks at 29, 31 s
  t.equal(pinger.state, 'healthy');
  t.equal(pinger.pings, 12);
  t.strictSame(pingTimes().slice(-2), [29_000, 31_000]);
  t.match(
    logger.records.filter((r) => r.event === 'state'),
    [
      { from: 'healthy', to: 'unhealthy' },
      { from: 'unhealthy', to: 'healthy', level: 'info' },
    ],
  );
  t.equal(transport.texts().filter((m) => m === 'STATUS=running').length, 1);

  // stop() cancels the timer; every message went through the notifier.
  pinger.stop();
  t.equal(clock.pendingCount, 0);
  clock.advance(10_000);
  t.equal(pinger.pings, 12, 'nothing after stop');
  await flush();
  t.equal(notifier.sent, transport.messages.length);
});

t.test('WatchdogPinger: async and throwing checks, no drift when late', async (t) => {
  const clock = new FakeClock(0);
  const transport = new RecordingTransport(clock);
  const logger = createMemoryLogger();
  const notifier = new SystemdNotifier(transport, logger);
  let mode: 'ok' | 'throw' | 'hang' = 'ok';
  let release: ((r: HealthResult) => void) | undefined;
  const pinger = new WatchdogPinger({
    notifier,
    clock,
    intervalMs: 1000,
    logger,
    healthyStatus: 'ready',
    healthCheck: () => {
      if (mode === 'throw') throw new Error('registry exploded');
      if (mode === 'hang') return new Promise<HealthResult>((resolve) => (release = resolve));
      return Promise.resolve({ ok: true, reasons: [] });
    },
  });
  pinger.start();
  clock.advance(1000);
  await flush();
  t.equal(pinger.pings, 1, 'async ok check pings');

  mode = 'throw';
  clock.advance(1000);
  t.equal(pinger.withheld, 1);
  t.match(transport.texts().at(-1), /^STATUS=unhealthy: health check threw: registry exploded$/);

  mode = 'hang';
  clock.advance(1000); // t=3 s: check starts, never finishes in time
  clock.advance(2000); // t=4, 5 s: skipped while it is still running
  t.equal(pinger.skipped, 2);
  release!({ ok: true, reasons: [] });
  await flush();
  t.equal(pinger.pings, 2);
  t.equal(pinger.state, 'healthy');
  t.equal(transport.texts().filter((m) => m === 'STATUS=ready').length, 1);

  mode = 'ok';
  pinger.stop();
  t.throws(
    () =>
      new WatchdogPinger({
        notifier,
        clock,
        intervalMs: 0,
        logger,
        healthCheck: () => ({ ok: true, reasons: [] }),
      }),
  );

  // A tick that runs far behind (stalled loop) does not burst or shift the grid.
  const lateClock = new FakeClock(0);
  const late = new WatchdogPinger({
    notifier,
    clock: {
      monotonicMs: () => lateClock.monotonicMs(),
      wallMs: () => lateClock.wallMs(),
      // Every timer fires 3.5 intervals late.
      setTimeout: (fn, ms) => lateClock.setTimeout(fn, ms + 3500),
      clearTimeout: (h) => lateClock.clearTimeout(h),
    },
    intervalMs: 1000,
    logger,
    healthCheck: () => ({ ok: true, reasons: [] }),
  });
  late.start();
  lateClock.advance(4500); // first tick fires at 4.5 s instead of 1 s
  t.equal(late.pings, 1);
  t.equal(late.skipped, 3, 'slots 2, 3 and 4 s were skipped');
  late.stop();
});

t.test('HealthRegistry and the event-loop lag check', async (t) => {
  const reg = new HealthRegistry();
  t.strictSame(reg.evaluate(), { ok: true, reasons: [] }, 'empty registry is healthy');
  let audio: boolean | { ok: boolean; reason?: string } = true;
  reg.register('audio', () => audio);
  const unregisterQdp = reg.register('qdp', () => ({ ok: true }));
  reg.register('config', () => {
    throw new Error('bad state');
  });
  t.throws(() => reg.register('audio', () => true), { code: 'SYSTEMD_ERR_DUPLICATE_HEALTH_CHECK' });
  t.throws(() => reg.register('', () => true), QperiphError);
  t.strictSame(reg.names(), ['audio', 'qdp', 'config']);
  t.strictSame(reg.evaluate(), { ok: false, reasons: ['config: check threw: bad state'] });
  t.ok(reg.unregister('config'));
  t.strictSame(reg.evaluate(), { ok: true, reasons: [] });
  audio = false;
  reg.register('ptp', () => ({ ok: false, reason: 'ptp4l not locked' }));
  t.strictSame(reg.evaluate(), { ok: false, reasons: ['audio: failing', 'ptp: ptp4l not locked'] });
  audio = { ok: false, reason: 'capture stalled 3 s' };
  unregisterQdp();
  unregisterQdp();
  t.strictSame(reg.names(), ['audio', 'ptp']);
  t.strictSame(reg.evaluate().reasons, ['audio: capture stalled 3 s', 'ptp: ptp4l not locked']);

  // Lag check over a fake histogram (values in ns, as node reports them).
  let p99Ns = 50e6;
  let resets = 0;
  let enabled = false;
  const histogram: DelayHistogram = {
    count: 100,
    percentile: (p) => (p === 99 ? p99Ns : 0),
    reset: () => void resets++,
    enable: () => void (enabled = true),
    disable: () => void (enabled = false),
  };
  const lag = eventLoopLagCheck({ histogram });
  t.ok(enabled);
  t.equal(lag.check(), true);
  p99Ns = 2_500e6;
  t.strictSame(lag.check(), { ok: false, reason: 'event loop p99 delay 2500 ms > 2000 ms' });
  t.equal(resets, 2, 'each evaluation starts a new window');
  lag.stop();
  t.notOk(enabled);

  // The real monitor: an idle loop is healthy.
  const real = eventLoopLagCheck({ resolutionMs: 10 });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(real.check(), true);
  real.stop();
});

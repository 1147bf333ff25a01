/**
 * sd_notify against real AF_UNIX datagram receivers in a temp dir, the
 * systemd-notify fallback, and `systemd-analyze verify` on the unit file.
 * No systemd instance is involved; nothing leaves the temp dir's sockets.
 */
import t from 'tap';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DgramSocket } from 'node-unix-socket';

import { createMemoryLogger } from '../../firmware/log/logger.js';
import {
  createDgramNotifyTransport,
  createNotifyTransport,
  findExecutable,
  parseNotifySocket,
  SystemdNotifier,
} from '../../firmware/systemd/sd-notify.js';

const dir = mkdtempSync(join(tmpdir(), 'qperiph-notify-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const systemdNotify = findExecutable('/usr/bin/systemd-notify');
const python = findExecutable('python3');
const systemdAnalyze = findExecutable('systemd-analyze');

interface Receiver {
  readonly messages: string[];
  /** Resolves once `count` datagrams have arrived (rejects after a timeout). */
  waitFor(count: number, timeoutMs?: number): Promise<string[]>;
  close(): void;
}

function collect(messages: string[]): Pick<Receiver, 'waitFor'> & { push(m: string): void } {
  const waiters: Array<() => void> = [];
  return {
    push(m) {
      messages.push(m);
      for (const w of waiters.splice(0)) w();
    },
    waitFor(count, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out with ${messages.length}/${count}: ${JSON.stringify(messages)}`)),
          timeoutMs,
        );
        const check = (): void => {
          if (messages.length >= count) {
            clearTimeout(timer);
            resolve(messages.slice());
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

/** A filesystem-path receiver on node-unix-socket, like systemd's /run/systemd/notify. */
function pathReceiver(path: string): Receiver {
  const messages: string[] = [];
  const c = collect(messages);
  const socket = new DgramSocket();
  socket.bind(path);
  socket.on('data', (buf: Buffer) => c.push(buf.toString('utf8')));
  return { messages, waitFor: c.waitFor, close: () => socket.close() };
}

/**
 * An abstract-socket receiver bound the way systemd binds one: the address
 * length covers exactly NUL + name. Python does that; node-unix-socket pads.
 */
async function abstractReceiver(name: string): Promise<Receiver> {
  const script = [
    'import json, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    "s.bind('\\0' + sys.argv[1])",
    "print('BOUND', flush=True)",
    'while True:',
    '    print(json.dumps(s.recv(65536).decode()), flush=True)',
  ].join('\n');
  const child: ChildProcessWithoutNullStreams = spawn(python!, ['-u', '-c', script, name]);
  const messages: string[] = [];
  const c = collect(messages);
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('python receiver did not bind')), 10_000);
    child.once('error', reject);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line === 'BOUND') {
          clearTimeout(timer);
          resolve();
        } else c.push(JSON.parse(line) as string);
      }
    });
  });
  return { messages, waitFor: c.waitFor, close: () => child.kill() };
}

/** systemd-notify adds MAINPID= and sends a separate BARRIER=1; strip both. */
function withoutSpawnExtras(messages: string[], pid: number): string[] {
  return messages
    .filter((m) => m !== 'BARRIER=1')
    .map((m) => {
      const lines = m.split('\n');
      if (lines[0] !== `MAINPID=${pid}`)
        throw new Error(`expected MAINPID=${pid} first in ${JSON.stringify(m)}`);
      return lines.slice(1).join('\n');
    });
}

async function sendLifecycle(n: SystemdNotifier): Promise<boolean[]> {
  return [
    await n.ready('serving: 2 streams'),
    await n.status('clock locked'),
    await n.watchdog(),
    await n.stopping('SIGTERM received'),
  ];
}

const LIFECYCLE = [
  'READY=1\nSTATUS=serving: 2 streams',
  'STATUS=clock locked',
  'WATCHDOG=1',
  'STOPPING=1\nSTATUS=SIGTERM received',
];

t.test('node-unix-socket transport to a real datagram socket', async (t) => {
  const path = join(dir, 'notify.sock');
  const rx = pathReceiver(path);
  t.teardown(() => rx.close());
  const logger = createMemoryLogger();
  const transport = await createNotifyTransport({ NOTIFY_SOCKET: path }, logger);
  t.ok(transport, 'transport created');
  t.match(
    logger.records.find((r) => r.event === 'sd_notify_transport_selected'),
    { kind: 'dgram', socket: path },
  );
  const n = new SystemdNotifier(transport, logger);
  t.strictSame(await sendLifecycle(n), [true, true, true, true]);
  t.strictSame(await rx.waitFor(4), LIFECYCLE, 'each message arrives as one datagram, as sent');
  t.equal(n.sent, 4);

  // Many in a row, none lost or reordered (one socket per message).
  for (let i = 0; i < 50; i++) await n.status(`step ${i}`);
  const all = await rx.waitFor(54);
  t.strictSame(
    all.slice(4),
    Array.from({ length: 50 }, (_, i) => `STATUS=step ${i}`),
  );
  n.close();

  // Nobody listening: logged and counted, not thrown.
  const goneLogger = createMemoryLogger();
  // (The transport promise passed as is, the way main.ts does it.)
  const gone = new SystemdNotifier(
    createNotifyTransport({ NOTIFY_SOCKET: join(dir, 'nobody.sock') }, goneLogger),
    goneLogger,
  );
  t.equal(await gone.ready(), false);
  t.equal(gone.failed, 1);
  t.match(
    goneLogger.records.find((r) => r.event === 'sd_notify_failed'),
    {
      level: 'warn',
      err: { code: 'SYSTEMD_ERR_NOTIFY_SEND' },
    },
  );
});

const NO_PYTHON = python ? false : 'python3 not found: nothing here binds an exact-length abstract name';
const NO_SYSTEMD_NOTIFY = systemdNotify ? false : '/usr/bin/systemd-notify not installed';

t.test('abstract NOTIFY_SOCKET (@name)', { skip: NO_PYTHON }, async (t) => {
  const name = `qperiph-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  const rx = await abstractReceiver(name);
  t.teardown(() => rx.close());

  // Why @name does not use the addon: it sends to NUL+name padded to 108 bytes,
  // which is a different abstract address from the one systemd (and python) bind.
  const { DgramSocket: Ctor } = await import('node-unix-socket');
  const direct = createDgramNotifyTransport({ DgramSocket: Ctor }, parseNotifySocket('@' + name)!);
  const probe = await direct.send('PROBE=1').then(
    () => 'delivered',
    (err: unknown) => String(err),
  );
  t.match(
    probe,
    /Connection refused/,
    'node-unix-socket 0.2.7 cannot reach an exact-length abstract socket; if this changes, createNotifyTransport may use it for @ addresses',
  );

  await t.test('delivered through systemd-notify', { skip: NO_SYSTEMD_NOTIFY }, async (t) => {
    const logger = createMemoryLogger();
    const transport = await createNotifyTransport(
      { NOTIFY_SOCKET: '@' + name, PATH: process.env['PATH'] },
      logger,
    );
    t.match(
      logger.records.find((r) => r.event === 'sd_notify_transport_selected'),
      { kind: 'spawn' },
    );
    const n = new SystemdNotifier(transport, logger);
    t.strictSame(await sendLifecycle(n), [true, true, true, true]);
    const got = await rx.waitFor(8); // each message + its BARRIER=1
    t.strictSame(withoutSpawnExtras(got, process.pid), LIFECYCLE);
    n.close();
  });
});

t.test('systemd-notify fallback when the addon is missing', { skip: NO_SYSTEMD_NOTIFY }, async (t) => {
  const path = join(dir, 'fallback.sock');
  const rx = pathReceiver(path);
  t.teardown(() => rx.close());
  const logger = createMemoryLogger();
  const pid = process.pid;
  const transport = await createNotifyTransport({ NOTIFY_SOCKET: path, PATH: '/usr/bin:/bin' }, logger, {
    pid,
    loadAddon: () => Promise.reject(new Error("Cannot find module 'node-unix-socket-linux-arm64-gnu'")),
  });
  t.match(
    logger.records.find((r) => r.event === 'sd_notify_transport_selected'),
    {
      kind: 'spawn',
      binary: '/usr/bin/systemd-notify',
      reason: /did not load/,
    },
  );
  const n = new SystemdNotifier(transport, logger);
  // Sent without awaiting each: the transport still keeps them in order.
  const results = await Promise.all([
    n.ready('serving: 2 streams'),
    n.status('clock locked'),
    n.watchdog(),
    n.stopping('SIGTERM received'),
  ]);
  t.strictSame(results, [true, true, true, true]);
  t.strictSame(withoutSpawnExtras(await rx.waitFor(8), pid), LIFECYCLE);

  // A failing child is reported like any other send failure.
  const bad = new SystemdNotifier(
    createNotifyTransport({ NOTIFY_SOCKET: join(dir, 'nobody.sock'), PATH: '/usr/bin' }, logger, {
      loadAddon: () => Promise.reject(new Error('no addon')),
    }),
    logger,
  );
  t.equal(await bad.watchdog(), false);
  t.match(
    logger.records.find((r) => r.event === 'sd_notify_failed'),
    { err: { message: /exit 1/ } },
  );
  n.close();
});

t.test('qperiph.service unit file', async (t) => {
  const unitPath = new URL('../../scripts/systemd/qperiph.service', import.meta.url);
  const unit = readFileSync(unitPath, 'utf8');
  for (const line of [
    'Type=notify',
    'NotifyAccess=all',
    'WatchdogSec=10s',
    'Restart=on-failure',
    'TimeoutStopSec=5s',
    'StateDirectory=qperiph',
    'ProtectSystem=strict',
    'WantedBy=multi-user.target',
  ]) {
    t.ok(unit.split('\n').includes(line), line);
  }

  await t.test(
    'systemd-analyze verify',
    { skip: systemdAnalyze ? false : 'systemd-analyze not installed' },
    async (t) => {
      // Point ExecStart at a binary that exists here and run as root, so the only
      // complaints left would be about our directives.
      const check = (text: string): { status: number | null; ours: string[] } => {
        const copy = join(dir, 'qperiph.service');
        // The service requires its socket units; verify sees them next to it.
        for (const sock of ['qperiph-manager.socket', 'qperiph-manager-tls.socket']) {
          const src = new URL(`../../scripts/systemd/${sock}`, import.meta.url);
          writeFileSync(join(dir, sock), readFileSync(src, 'utf8'));
        }
        writeFileSync(
          copy,
          text
            .replace(/^ExecStart=.*$/m, `ExecStart=${process.execPath} -e 0`)
            .replace(/^User=.*$/m, 'User=root')
            .replace(/^Group=.*$/m, 'Group=root'),
        );
        const r = spawnSync(systemdAnalyze!, ['verify', copy], {
          encoding: 'utf8',
          env: { PATH: '/usr/bin:/bin' },
        });
        return { status: r.status, ours: r.stderr.split('\n').filter((l) => l.includes('qperiph.service')) };
      };
      const result = check(unit);
      t.equal(result.status, 0);
      t.strictSame(result.ours, [], 'no warnings about qperiph.service');

      // The check can fail: a misspelt directive is reported.
      const typo = check(unit.replace('WatchdogSec=10s', 'WatchdogSecs=10s'));
      t.match(typo.ours.join('\n'), /Unknown key 'WatchdogSecs'/);
    },
  );
});

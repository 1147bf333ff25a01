/**
 * linuxptp as the media clock: ptp4l as grandmaster in one network namespace and as slave in
 * another (joined by a veth pair the test creates), both supervised by Ptp4lClock. The slave runs
 * free_running 1 so it never adjusts this machine's clock. Our runtime must report `locked` and
 * the master's clock identity.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import type { MediaClockStatus } from '../../firmware/audio/media-clock.js';
import { Ptp4lClock } from '../../firmware/audio/ptp.js';

const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const isRoot = process.getuid?.() === 0;
const skip = !isRoot
  ? 'needs root for network namespaces'
  : !has('ptp4l') || !has('pmc')
    ? 'linuxptp not installed (apt-get install linuxptp)'
    : !has('ip')
      ? 'iproute2 not installed'
      : false;

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

async function waitFor(fn: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return fn();
}

t.test(
  'ptp4l master and slave in two namespaces: slave reports lock and the grandmaster',
  { skip, timeout: 120000 },
  async (t) => {
    const tag = String(process.pid % 100000);
    const nsA = `qpa4-${tag}`;
    const nsB = `qpb4-${tag}`;
    const vA = `qa4${tag}`;
    const vB = `qb4${tag}`;
    const dir = mkdtempSync(join(tmpdir(), 'qperiph-ptp-'));
    ip('netns', 'add', nsA);
    ip('netns', 'add', nsB);
    t.teardown(() => {
      spawnSync('ip', ['netns', 'del', nsA]);
      spawnSync('ip', ['netns', 'del', nsB]);
      rmSync(dir, { recursive: true, force: true });
    });
    ip('link', 'add', vA, 'type', 'veth', 'peer', 'name', vB);
    ip('link', 'set', vA, 'netns', nsA);
    ip('link', 'set', vB, 'netns', nsB);
    ip('-n', nsA, 'addr', 'add', '10.204.4.1/24', 'dev', vA);
    ip('-n', nsB, 'addr', 'add', '10.204.4.2/24', 'dev', vB);
    for (const [ns, dev] of [
      [nsA, vA],
      [nsB, vB],
    ] as const) {
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
    const logger = createMemoryLogger();
    const master = new Ptp4lClock({
      ptp: { timestamping: 'software', domain: 0, priority1: 10, priority2: 10 },
      interface: vA,
      udsPath: join(dir, 'master.sock'),
      configPath: join(dir, 'master.cfg'),
      freeRunning: true,
      role: 'master',
      commandPrefix: ['ip', 'netns', 'exec', nsA],
      logger,
      pollMs: 500,
    });
    const slave = new Ptp4lClock({
      ptp: { timestamping: 'software', domain: 0, priority1: 255, priority2: 255 },
      interface: vB,
      udsPath: join(dir, 'slave.sock'),
      configPath: join(dir, 'slave.cfg'),
      freeRunning: true, // never step or slew this machine's clock
      role: 'slave',
      commandPrefix: ['ip', 'netns', 'exec', nsB],
      logger,
      pollMs: 500,
    });
    const events: string[] = [];
    slave.onEvent((e) => void (e.event === 'state' && events.push(`${e.from}->${e.to}`)));
    t.teardown(async () => {
      await slave.close();
      await master.close();
    });
    await master.start();
    await slave.start();
    t.match(slave.status(), { source: 'ptp4l' });
    t.not(slave.status().state, 'locked', 'never locked before ptp4l says so');
    const locked = await waitFor(() => slave.status().state === 'locked', 60000);
    const ms: MediaClockStatus = master.status();
    const ss: MediaClockStatus = slave.status();
    t.comment(`master ${JSON.stringify(ms)}`);
    t.comment(`slave ${JSON.stringify(ss)}; events ${events.join(', ')}`);
    t.ok(locked, 'slave reports locked');
    t.equal(ms.state, 'master', 'master reports master');
    t.match(ss.grandmaster, /^([0-9A-F]{2}-){7}[0-9A-F]{2}$/, 'grandmaster identity in SDP form');
    t.equal(ss.grandmaster, ms.grandmaster, "slave's grandmaster is the master's clock");
    t.match(ss.portState, /^(SLAVE|UNCALIBRATED)$/, 'free_running slave port state');
    t.ok(Math.abs(ss.offsetNs ?? Infinity) <= 100_000, `offset ${ss.offsetNs} ns within the lock threshold`);
    t.type(ss.pathDelayNs, 'number');
    t.ok(
      events.includes('locking->locked') || events.includes('unlocked->locked'),
      'lock announced as an event',
    );
  },
);

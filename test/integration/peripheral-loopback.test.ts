/**
 * The peripheral as a real process on loopback: it announces, `qperiph
 * discover` lists it, a query gets a unicast answer, tshark decodes the
 * packets, systemd's notify protocol is spoken to a real unix socket, and
 * SIGTERM stops it within 2 s. Addresses 127.0.0.2x keep this file clear of
 * the other integration files that run in parallel.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DgramSocket } from 'node-unix-socket';
import { decodeQdp, encodeQdp } from '../../firmware/qdp/qdp-codec.js';
import { CliProcess, haveCommand, ROOT, runCli } from '../helpers/processes.js';

const GROUP = '224.0.23.175';
const BOARD = path.join(ROOT, 'board-configs', 'virtual.json');
const suffix = process.pid.toString(16);

function tmp(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'qperiph-it-'));
}

t.test('start -> announce -> discover -> query -> stop', async (t) => {
  const dir = tmp();
  const sockPath = path.join(dir, 'notify.sock');
  const notify = new DgramSocket();
  notify.bind(sockPath);
  const messages: Array<{ text: string; atMs: number }> = [];
  notify.on('data', (buf: Buffer) => messages.push({ text: buf.toString('utf8'), atMs: performance.now() }));
  t.teardown(() => notify.close());

  const name = `it-loop-${suffix}`;
  const p = new CliProcess(
    [
      'start',
      '--board',
      BOARD,
      '--state-dir',
      path.join(dir, 'state'),
      '--address',
      '127.0.0.21',
      '--name',
      name,
    ],
    { env: { NOTIFY_SOCKET: sockPath, WATCHDOG_USEC: '1000000' } },
  );
  t.teardown(() => p.stop('SIGKILL'));

  const ready = await p.waitFor((r) => r.event === 'ready');
  t.equal(ready['name'], name);
  t.equal(ready['lanA'], '127.0.0.21');
  const first = await p.waitFor((r) => r.event === 'qdp_first_announce');
  t.ok(
    Number(first['sinceStartMs']) >= 0,
    `first announcement ${first['sinceStartMs']} ms after start (figures: npm run bench:qdp)`,
  );

  // discover lists it (how fast is a benchmark figure: npm run bench:qdp)
  const d = await runCli(['discover', '--timeout', '2', '--json']);
  t.equal(d.code, 0, d.stderr);
  const found = (
    JSON.parse(d.stdout) as {
      devices: Array<{
        device: { name: string; lanAIp: string; type: string; partNumber: string; ref: string };
        firstHeardAfterMs: number;
        from: { port: number };
      }>;
    }
  ).devices.find((x) => x.device.name === name);
  t.ok(found, 'discover lists the peripheral');
  t.equal(found?.device.type, 'ioframe');
  t.equal(found?.device.lanAIp, '127.0.0.21');
  t.equal(found?.device.ref, `device.ioframe.${name}`);
  t.equal(found?.device.partNumber, 'qperiph-virtual');
  t.equal(found?.from.port, 6504, 'heard from source port 6504');
  t.comment(`heard after ${found?.firstHeardAfterMs} ms`);

  // the table form
  const table = await runCli(['discover', '--timeout', '2']);
  t.match(table.stdout, /^NAME\s+TYPE\s+PART NUMBER/m);
  t.match(table.stdout, new RegExp(`^${name}\\s+ioframe\\s+qperiph-virtual`, 'm'));

  // a raw query gets a unicast answer from 127.0.0.21:6504
  const answer = await new Promise<{ from: dgram.RemoteInfo; data: Buffer } | null>((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => (s.close(), resolve(null)), 2000);
    s.on('message', (data, from) => {
      try {
        if (decodeQdp(data).device?.name !== name) return;
      } catch {
        return;
      }
      clearTimeout(timer);
      s.close();
      resolve({ from, data });
    });
    s.bind(0, '127.0.0.1', () => {
      s.setMulticastInterface('127.0.0.1');
      s.send(encodeQdp({ queryRefs: [`device.ioframe.${name}`] }), 2468, GROUP);
    });
  });
  t.ok(answer, 'a unicast answer arrived');
  t.equal(answer?.from.address, '127.0.0.21');
  t.equal(answer?.from.port, 6504);

  // systemd notify protocol over a real unix datagram socket
  await new Promise((r) => setTimeout(r, 1300));
  const texts = messages.map((m) => m.text);
  const readyMsg = texts.find((x) => x.split('\n').includes('READY=1'));
  t.ok(readyMsg, 'READY=1 sent');
  t.match(readyMsg ?? '', /STATUS=announcing as /, 'with a STATUS line');
  const pings = messages.filter((m) => m.text === 'WATCHDOG=1');
  t.ok(pings.length >= 2, `watchdog pinged ${pings.length} times at half of WATCHDOG_USEC`);

  const stopped = await p.stop('SIGTERM');
  t.equal(stopped.code, 0, 'clean exit on SIGTERM');
  t.ok(stopped.ms < 2000, `stopped in ${Math.round(stopped.ms)} ms`);
  t.ok(
    messages.some((m) => m.text.split('\n').includes('STOPPING=1')),
    'STOPPING=1 sent',
  );
  t.ok(p.records.some((r) => r.event === 'stopped'));
  for (const line of p.stdout.trim().split('\n')) {
    t.doesNotThrow(() => JSON.parse(line), 'every stdout line is a JSON record');
  }
});

t.test('the name is persisted and a corrupt state file is recovered', async (t) => {
  const dir = tmp();
  const stateDir = path.join(dir, 'state');
  const args = ['start', '--board', BOARD, '--state-dir', stateDir, '--address', '127.0.0.22'];
  const a = new CliProcess(args);
  t.teardown(() => a.stop('SIGKILL'));
  const r1 = await a.waitFor((r) => r.event === 'ready');
  t.match(String(r1['name']), /^qperiph-[0-9a-f]{4}$/, 'default name: prefix and 4 hex digits');
  await a.stop();

  const b = new CliProcess(args);
  t.teardown(() => b.stop('SIGKILL'));
  const r2 = await b.waitFor((r) => r.event === 'ready');
  t.equal(r2['name'], r1['name'], 'same name after a restart');
  await b.stop();

  const file = path.join(stateDir, 'state.json');
  const whole = readFileSync(file);
  writeFileSync(file, whole.subarray(0, Math.floor(whole.length / 2)));
  const c = new CliProcess(args);
  t.teardown(() => c.stop('SIGKILL'));
  const rec = await c.waitFor((r) => r.event === 'state_recovered');
  t.equal(rec.level, 'warn');
  const r3 = await c.waitFor((r) => r.event === 'ready');
  t.equal(r3['name'], r1['name'], 'the last good copy is used');
  t.ok(
    readdirSync(stateDir).some((f) => f.startsWith('state.json.corrupt')),
    'the corrupt file is kept aside, not deleted',
  );
  await c.stop();
});

t.test('a bad board config stops start-up with every problem and its path', async (t) => {
  const dir = tmp();
  const board = JSON.parse(readFileSync(BOARD, 'utf8')) as Record<string, any>;
  board['ptp']['domain'] = 'zero';
  board['gpio']['contactInputs'][0]['line'] = -4;
  const file = path.join(dir, 'bad.json');
  writeFileSync(file, JSON.stringify(board));
  const r = await runCli(['start', '--board', file, '--state-dir', path.join(dir, 's')]);
  t.equal(r.code, 2);
  t.match(r.stderr, /\/ptp\/domain/);
  t.match(r.stderr, /\/gpio\/contactInputs\/0\/line/);
  const v = await runCli(['board', 'validate', BOARD]);
  t.equal(v.code, 0, v.stderr);
  t.match(v.stdout, /valid/);
});

t.test('--help everywhere', async (t) => {
  for (const args of [['--help'], ['start', '--help'], ['discover', '--help'], ['board', '--help']]) {
    const r = await runCli(args);
    t.equal(r.code, 0, `${args.join(' ')} exits 0`);
    t.match(r.stdout, /Usage: qperiph/);
  }
  const bad = await runCli(['start', '--bogus']);
  t.equal(bad.code, 2, 'unknown flag is a usage error');
  const unknown = await runCli(['frobnicate']);
  t.equal(unknown.code, 2);
});

const tsharkSkip = !haveCommand('tshark')
  ? 'tshark not installed (scripts/install-test-deps.sh)'
  : process.getuid?.() !== 0
    ? 'capturing on lo needs root'
    : false;

t.test('tshark decodes the announcements', { skip: tsharkSkip }, async (t) => {
  const dir = tmp();
  const name = `it-tshark-${suffix}`;
  const cap = spawn(
    'tshark',
    [
      '-i',
      'lo',
      '-l',
      '-a',
      'duration:60',
      '-f',
      'udp and dst host 224.0.23.175 and dst port 2467 and src host 127.0.0.23',
      '-T',
      'fields',
      '-E',
      'separator=|',
      '-e',
      'ip.src',
      '-e',
      'ip.dst',
      '-e',
      'udp.srcport',
      '-e',
      'udp.dstport',
      '-e',
      'ip.ttl',
      '-e',
      '_ws.malformed',
      '-e',
      '_ws.expert',
      '-e',
      'udp.length',
      '-e',
      'udp.payload',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  cap.stdout.on('data', (c: Buffer) => (out += c.toString()));
  cap.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const capDone = new Promise((r) => cap.on('exit', r));
  // tshark needs a moment before it captures
  const deadline = Date.now() + 5000;
  while (!/Capturing on/.test(err) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const p = new CliProcess([
    'start',
    '--board',
    BOARD,
    '--state-dir',
    path.join(dir, 's'),
    '--address',
    '127.0.0.23',
    '--name',
    name,
  ]);
  t.teardown(() => p.stop('SIGKILL'));
  t.teardown(() => cap.kill('SIGKILL'));
  await p.waitFor((r) => r.event === 'qdp_first_announce', 30_000);
  await new Promise((r) => setTimeout(r, 2500)); // two more announcements on the grid
  cap.kill('SIGINT');
  await capDone;
  await p.stop();
  const rows = out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('|'));
  t.ok(rows.length >= 2, `captured ${rows.length} announcements (tshark: ${err.trim().split('\n').pop()})`);
  for (const [src, dst, sport, dport, ttl, malformed, expert, udpLength, payload] of rows) {
    t.equal(src, '127.0.0.23');
    t.equal(dst, GROUP);
    t.equal(sport, '6504');
    t.equal(dport, '2467');
    t.equal(ttl, '1', 'default TTL 1');
    t.equal(malformed, '', 'tshark finds nothing malformed');
    t.equal(expert, '', 'and raises no expert warning');
    const bytes = Buffer.from(payload ?? '', 'hex');
    t.equal(Number(udpLength), bytes.length + 8, 'UDP length matches the payload');
    t.match(bytes.toString('utf8'), /^<QDP><device><name>/);
    const pkt = decodeQdp(bytes);
    t.equal(pkt.device?.name, name);
  }
});

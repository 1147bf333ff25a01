/**
 * `audioPeer` in a design: the Core itself (not a test harness) opens a Q-LAN stream each way to
 * the peripheral once its control link is up, sends a 440 Hz tone, meters the peripheral's
 * 1 kHz virtual capture coming back, and shows it in its snapshot (the dashboard's data); when
 * the Core stops, the peripheral's streams close with the session.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ControlClient } from '../../firmware/control/client.js';
import { createJsonLogger } from '../../firmware/log/logger.js';
import { Core } from '../../bench/core/core.js';
import { parseDesign } from '../../bench/core/design.js';
import type { PeerStats } from '../../bench/core/audio-peer.js';
import { CliProcess, ROOT } from '../helpers/processes.js';

const CORE = '127.0.6.40';
const DEV = { name: 'stage-audio-1', address: '127.0.6.41' };

async function until<T>(what: string, fn: () => T | null | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('the Core runs the design audio peer while the link is up', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-core-audio-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dev = new CliProcess([
    'start',
    '--board',
    path.join(ROOT, 'board-configs', 'virtual.json'),
    '--state-dir',
    path.join(dir, 'dev'),
    '--address',
    DEV.address,
    '--name',
    DEV.name,
  ]);
  t.teardown(() => dev.stop());
  await dev.waitFor((r) => r.event === 'ready', 60_000);

  const design = parseDesign({
    schemaVersion: 1,
    name: 'Audio Peer Test',
    code: 'AudioPeer01',
    peripherals: [
      {
        name: DEV.name,
        partNumber: 'qperiph-virtual',
        address: DEV.address,
        audioPeer: { format: 'qlan', channels: 2, toneHz: 440 },
      },
    ],
  });
  const core = await Core.start({
    design,
    address: CORE,
    stateDir: path.join(dir, 'core'),
    logger: createJsonLogger({ write: () => undefined }),
    dashboardPort: null,
    qrcPort: null,
    audioBasePort: 26100,
  });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : core.stop()));

  type Row = { peripheral: string; state: string; detail: string | null; stats: PeerStats | null };
  const row = (): Row => (core.snapshot() as { audio: Row[] }).audio[0]!;
  await until('link connected', () => core.inventory.get(DEV.name)?.link === 'connected', 20_000);
  await until('audio peer running', () => row().state === 'running', 10_000);
  // A few seconds of audio and at least two polls of the peripheral's counters and meters.
  const s = await until(
    'tone both ways',
    () => {
      const st = row().stats;
      return st &&
        st.rxPackets > 3000 &&
        (st.meters.peripheralOutput?.[0]?.peakDb ?? -Infinity) > -13 &&
        Math.abs(st.meters.receivedHz - 1000) < 5
        ? st
        : null;
    },
    20_000,
  );
  t.equal(row().peripheral, DEV.name);
  t.equal(s.format, 'qlan');
  t.ok(s.txPackets > 3000, `Core sent ${s.txPackets} packets`);
  t.ok(
    Math.abs(s.meters.receivedHz - 1000) < 5,
    `the peripheral's 1 kHz came back (${s.meters.receivedHz} Hz)`,
  );
  t.ok(
    (s.meters.peripheralOutput?.[0]?.peakDb ?? -Infinity) > -13,
    `the Core's tone plays on the peripheral (${s.meters.peripheralOutput?.[0]?.peakDb} dBFS)`,
  );
  t.equal(s.meters.received.length, 2, 'two channels metered');
  t.equal(s.rx.wire?.lost ?? 0, 0, 'nothing lost on loopback');

  // The peripheral lists both streams; they go when the Core stops.
  const probe = await ControlClient.connect({ host: DEV.address, port: 1700, localAddress: '127.0.6.42' });
  t.teardown(() => probe.close());
  const open = await probe.call<unknown[]>('Stream.List');
  t.ok(open.length >= 2, `peripheral lists ${open.length} streams`);
  await core.stop();
  stopped = true;
  t.equal(row().state, 'down', 'peer down after the Core stopped');
  const deadline = Date.now() + 5000;
  let after = await probe.call<unknown[]>('Stream.List');
  while (after.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    after = await probe.call<unknown[]>('Stream.List');
  }
  t.equal(after.length, 0, 'the peripheral closed the streams with the session');
});

/**
 * Two hosts in network namespaces this test creates, joined by a veth pair:
 * the peripheral on host A, `qperiph discover` on host B. The peripheral
 * starts before its interface has an address and must follow the address
 * when it arrives (and when it changes). Needs root and iproute2; skipped
 * with the reason otherwise. Nothing leaves the namespaces.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { CliProcess, haveCommand, ROOT, runCli } from '../helpers/processes.js';

function namespacesPossible(): string | false {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  if (!haveCommand('ip')) return 'iproute2 (ip) is not installed';
  const probe = `qpprobe${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return false;
}

const skip = namespacesPossible();

t.test('two hosts over a veth pair', { skip }, async (t) => {
  const id = (process.pid % 10000).toString();
  const nsA = `qpA${id}`;
  const nsB = `qpB${id}`;
  const vA = `qpa${id}`;
  const vB = `qpb${id}`;
  const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', nsA]);
    spawnSync('ip', ['netns', 'del', nsB]);
  });
  ip('netns', 'add', nsA);
  ip('netns', 'add', nsB);
  ip('link', 'add', vA, 'type', 'veth', 'peer', 'name', vB);
  ip('link', 'set', vA, 'netns', nsA);
  ip('link', 'set', vB, 'netns', nsB);
  for (const [ns, dev] of [
    [nsA, vA],
    [nsB, vB],
  ] as const) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', dev, 'up');
  }
  ip('-n', nsB, 'addr', 'add', '192.0.2.2/24', 'dev', vB);
  ip('-n', nsB, 'route', 'add', '224.0.0.0/4', 'dev', vB);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-ns-'));
  const board = JSON.parse(readFileSync(path.join(ROOT, 'board-configs', 'virtual.json'), 'utf8')) as Record<
    string,
    any
  >;
  board['id'] = 'netns-test';
  board['network']['lanA'] = { interface: vA };
  const boardFile = path.join(dir, 'board.json');
  writeFileSync(boardFile, JSON.stringify(board));

  const name = `it-ns-${id}`;
  const p = new CliProcess(
    ['start', '--board', boardFile, '--state-dir', path.join(dir, 'state'), '--name', name],
    {
      prefix: ['ip', 'netns', 'exec', nsA],
    },
  );
  t.teardown(() => p.stop('SIGKILL'));
  const ready = await p.waitFor((r) => r.event === 'ready');
  t.equal(ready['lanA'], null, 'no address on LAN A yet');

  ip('-n', nsA, 'addr', 'add', '192.0.2.1/24', 'dev', vA);
  ip('-n', nsA, 'route', 'add', '224.0.0.0/4', 'dev', vA);
  const up = await p.waitFor((r) => r.event === 'state' && r['to'] === '192.0.2.1', 8000);
  t.equal(up['cause'], 'address up');

  const d = await runCli(['discover', '--interface', vB, '--timeout', '2', '--json'], {
    prefix: ['ip', 'netns', 'exec', nsB],
  });
  t.equal(d.code, 0, d.stderr);
  const devices = (
    JSON.parse(d.stdout) as {
      devices: Array<{ device: { name: string; lanAIp: string }; from: { address: string; port: number } }>;
    }
  ).devices;
  const found = devices.find((x) => x.device.name === name);
  t.ok(
    found,
    `host B discovers the peripheral on host A (heard: ${devices.map((x) => x.device.name).join(', ')})`,
  );
  t.equal(found?.device.lanAIp, '192.0.2.1');
  t.same(found?.from, { address: '192.0.2.1', port: 6504 }, 'from port 6504 of host A');

  // the address changes: the peripheral follows it
  ip('-n', nsA, 'addr', 'del', '192.0.2.1/24', 'dev', vA);
  ip('-n', nsA, 'addr', 'add', '192.0.2.7/24', 'dev', vA);
  ip('-n', nsA, 'route', 'replace', '224.0.0.0/4', 'dev', vA);
  await p.waitFor((r) => r.event === 'state' && r['to'] === '192.0.2.7', 8000);
  const d2 = await runCli(['discover', '--interface', vB, '--timeout', '2', '--json'], {
    prefix: ['ip', 'netns', 'exec', nsB],
  });
  const again = (
    JSON.parse(d2.stdout) as { devices: Array<{ device: { name: string; lanAIp: string } }> }
  ).devices.find((x) => x.device.name === name);
  t.equal(again?.device.lanAIp, '192.0.2.7', 'announces the new address');
  const stopped = await p.stop();
  t.equal(stopped.code, 0);
});

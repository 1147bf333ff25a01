/**
 * Per-peripheral network namespaces for the drill (root only). Each device
 * gets its own namespace with its own loopback (so its QDP multicast reaches
 * only itself, as on a real LAN of separate boxes, instead of every other
 * peripheral on the machine) and one veth pair to the drill's namespace:
 *
 *   drill ns: qd<tag>-<i>  10.202.0.1/32  route 10.<100+k>.a.b/32 dev qd<tag>-<i>
 *   device ns: eth0 (no address) -> 10.202.0.1; lo holds 127.0.0.1 and 10.<100+k>.a.b/32
 *
 * k is a block no other drill on this machine is using (`freeBlock`), so two
 * drills at once do not fight over routes. The device runs with
 * `--address 10.<100+k>.a.b` on the virtual board's `lo`
 * LAN; the drill, coordinator and bundle server reach it over the veth. The
 * veth's egress is also where `tc` shapes a degraded link. Nothing leaves the
 * machine: the addresses exist only on these veths and namespaces.
 *
 * The plan is pure; `setUpNamespaces` and `tearDownNamespaces` run `ip -batch`
 * (one process for the whole fleet).
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { DrillError } from './scenario.js';

const run = promisify(execFile);

/** The drill side's address on every veth (the bundle server listens here). */
export const HUB_ADDRESS = '10.202.0.1';

export interface NsDevice {
  index: number;
  /** Namespace name and the drill-side veth name (<= 15 characters). */
  name: string;
  /** The device's address (on its own lo), reached over the veth. */
  address: string;
}

/** Device address blocks 10.100.0.0/16 .. 10.199.0.0/16. */
export const BLOCKS = 100;

/** Pure: the first block (from `start`, wrapping) with no route in `routes` (`ip -4 route` output). */
export function pickBlock(routes: string, start: number): number | null {
  const used = new Set<number>();
  for (const m of routes.matchAll(/^10\.(\d+)\./gm)) used.add(Number(m[1]) - 100);
  for (let k = 0; k < BLOCKS; k++) {
    const b = (((start + k) % BLOCKS) + BLOCKS) % BLOCKS;
    if (!used.has(b)) return b;
  }
  return null;
}

/** A block no other drill on this machine is routing (starts from the pid, so concurrent drills spread). */
export async function freeBlock(): Promise<number> {
  const routes = (await run('ip', ['-4', 'route', 'show'])).stdout;
  const b = pickBlock(routes, process.pid);
  if (b === null) throw new DrillError('DRILL_ERR_USAGE', 'every drill address block 10.100-199 is in use');
  return b;
}

/** Pure: namespace names and addresses of devices 1..n under a tag (e.g. the drill's pid) in a block. */
export function planNamespaces(tag: string, n: number, block = 0): NsDevice[] {
  if (!Number.isInteger(block) || block < 0 || block >= BLOCKS)
    throw new DrillError('DRILL_ERR_USAGE', `address block ${block}: must be 0..${BLOCKS - 1}`);
  if (!/^[a-z0-9]{1,8}$/.test(tag)) throw new DrillError('DRILL_ERR_USAGE', `bad namespace tag "${tag}"`);
  if (!Number.isInteger(n) || n < 1 || n > 1000)
    throw new DrillError('DRILL_ERR_USAGE', `namespaces for ${n} devices: must be 1..1000`);
  return Array.from({ length: n }, (_, k) => {
    const i = k + 1;
    return {
      index: i,
      name: `qd${tag}-${i}`,
      address: `10.${100 + block}.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    };
  });
}

/** Pure: the `ip -batch` lines run in the drill's namespace (create and wire the veths). */
export function setupBatch(devices: readonly NsDevice[]): string[] {
  const lines: string[] = [];
  for (const d of devices) {
    lines.push(`netns add ${d.name}`);
    lines.push(`link add ${d.name} type veth peer name eth0 netns ${d.name}`);
    lines.push(`addr add ${HUB_ADDRESS}/32 dev ${d.name} noprefixroute`);
    lines.push(`link set ${d.name} up`);
    lines.push(`route add ${d.address}/32 dev ${d.name} src ${HUB_ADDRESS}`);
  }
  return lines;
}

/** Pure: the `ip -n <name> -batch` lines run inside one device's namespace. */
export function deviceBatch(d: NsDevice): string[] {
  return [
    'link set lo up',
    `addr add ${d.address}/32 dev lo`,
    'link set eth0 up',
    `route add ${HUB_ADDRESS}/32 dev eth0 src ${d.address}`,
  ];
}

async function ipBatch(lines: readonly string[], force: boolean, ns?: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('ip', [...(ns ? ['-n', ns] : []), ...(force ? ['-force'] : []), '-batch', '-'], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 || force ? resolve() : reject(new Error(err.trim() || `ip -batch exited ${code}`)),
    );
    child.stdin.end(lines.join('\n') + '\n');
  });
}

/** Whether this process may create namespaces and veths (root with iproute2). */
export async function namespacesAvailable(): Promise<{ ok: boolean; reason: string }> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root' };
  let probe: NsDevice[] = [];
  try {
    probe = planNamespaces(`p${process.pid % 100000}`, 1, await freeBlock());
    await wire(probe);
    return { ok: true, reason: 'root, ip netns and veth work' };
  } catch (err) {
    return { ok: false, reason: `ip netns/veth refused: ${(err as Error).message.split('\n')[0]}` };
  } finally {
    await tearDownNamespaces(probe);
  }
}

async function wire(devices: readonly NsDevice[]): Promise<void> {
  await ipBatch(setupBatch(devices), false);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let d = devices[next++]; d; d = devices[next++]) await ipBatch(deviceBatch(d), false, d.name);
  };
  await Promise.all(Array.from({ length: 8 }, () => worker()));
}

export async function setUpNamespaces(devices: readonly NsDevice[]): Promise<void> {
  await tearDownNamespaces(devices); // leftovers of a crashed run with the same tag
  try {
    await wire(devices);
  } catch (err) {
    await tearDownNamespaces(devices);
    throw new DrillError(
      'DRILL_ERR_USAGE',
      `cannot create the drill namespaces: ${(err as Error).message}`,
      [],
      {
        cause: err,
      },
    );
  }
}

/** Deleting a namespace removes its veth pair (and its routes) too. */
export async function tearDownNamespaces(devices: readonly NsDevice[]): Promise<void> {
  await ipBatch(
    devices.map((d) => `netns delete ${d.name}`),
    true,
  );
}

/** Remove namespaces left by drills whose process is gone (names qd<pid>-<i>). */
export async function removeStaleNamespaces(): Promise<number> {
  let out: string;
  try {
    out = (await run('ip', ['netns', 'list'])).stdout;
  } catch {
    return 0;
  }
  const stale: NsDevice[] = [];
  for (const line of out.split('\n')) {
    const m = /^qd(\d+)-(\d+)\b/.exec(line.trim());
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (alive) continue;
    stale.push({ index: Number(m[2]), name: `qd${m[1]}-${m[2]}`, address: '' });
  }
  if (stale.length) await tearDownNamespaces(stale);
  return stale.length;
}

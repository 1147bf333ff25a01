/**
 * Per-device network namespaces: the pure address plan and `ip` batches, then
 * (as root, where namespaces can be made) the real thing: a server inside a
 * device namespace is reached from the drill's side over its veth, the device
 * reaches the drill's hub address, a second device's loopback is its own, and
 * teardown leaves no namespace behind.
 */
import { execFile, spawn } from 'node:child_process';
import { createServer, connect, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import {
  deviceBatch,
  freeBlock,
  HUB_ADDRESS,
  namespacesAvailable,
  pickBlock,
  planNamespaces,
  setupBatch,
  setUpNamespaces,
  tearDownNamespaces,
} from '../../../bench/drill/netns.js';

const run = promisify(execFile);

t.test('plan: names fit an interface name, addresses are distinct and off loopback', async (t) => {
  const plan = planNamespaces('4194303', 1000, 1);
  t.equal(plan.length, 1000);
  t.equal(plan[0]!.name, 'qd4194303-1');
  t.equal(plan[0]!.address, '10.101.0.2');
  t.equal(plan[248]!.address, '10.101.0.250');
  t.equal(plan[249]!.address, '10.101.1.1');
  t.ok(plan.every((d) => d.name.length <= 15));
  t.equal(new Set(plan.map((d) => d.address)).size, 1000);
  t.ok(plan.every((d) => /^10\.101\.\d+\.\d+$/.test(d.address) && !d.address.endsWith('.0')));
  t.throws(() => planNamespaces('Bad Tag', 2), { code: 'DRILL_ERR_USAGE' });
  t.throws(() => planNamespaces('x', 0), { code: 'DRILL_ERR_USAGE' });
  t.throws(() => planNamespaces('x', 1001), { code: 'DRILL_ERR_USAGE' });
  t.throws(() => planNamespaces('x', 1, 100), { code: 'DRILL_ERR_USAGE' });
  t.equal(planNamespaces('x', 1, 99)[0]!.address, '10.199.0.2');
});

t.test('pickBlock skips blocks another drill routes', async (t) => {
  const routes =
    'default via 10.0.0.1 dev eth0\n10.105.0.2 dev qd9-1 scope link src 10.202.0.1\n10.106.0.3 dev qd9-2\n';
  t.equal(pickBlock(routes, 5), 7);
  t.equal(pickBlock(routes, 4), 4);
  t.equal(pickBlock(routes, 205), 7, 'start wraps');
  const all = Array.from({ length: 100 }, (_, k) => `10.${100 + k}.0.2 dev x`).join('\n');
  t.equal(pickBlock(all, 0), null);
});

t.test('batches wire one veth per device with host routes both ways', async (t) => {
  const [d] = planNamespaces('7', 1);
  t.same(setupBatch([d!]), [
    'netns add qd7-1',
    'link add qd7-1 type veth peer name eth0 netns qd7-1',
    `addr add ${HUB_ADDRESS}/32 dev qd7-1 noprefixroute`,
    'link set qd7-1 up',
    'route add 10.100.0.2/32 dev qd7-1 src 10.202.0.1',
  ]);
  t.same(deviceBatch(d!), [
    'link set lo up',
    'addr add 10.100.0.2/32 dev lo',
    'link set eth0 up',
    'route add 10.202.0.1/32 dev eth0 src 10.100.0.2',
  ]);
});

const nsExec = (ns: string, code: string) =>
  spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });

const firstLine = (child: ReturnType<typeof nsExec>): Promise<string> =>
  new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.on('exit', (code) => reject(new Error(`exited ${code} before a line: ${out}`)));
  });

t.test('real namespaces', async (t) => {
  const can = await namespacesAvailable();
  const skip = can.ok ? false : `network namespaces unavailable: ${can.reason}`;
  await t.test('reachable over the veth, isolated loopback, clean teardown', { skip }, (t) =>
    realNamespaces(t),
  );
});

async function realNamespaces(t: Test): Promise<void> {
  const devices = planNamespaces(`t${process.pid % 100000}`, 2, await freeBlock());
  await setUpNamespaces(devices);
  t.teardown(() => tearDownNamespaces(devices));
  const [a, b] = devices as [(typeof devices)[0], (typeof devices)[0]];

  // The drill's hub, as the bundle server would be.
  const hub = createServer((s) => s.end('hub\n'));
  await new Promise<void>((r) => hub.listen(0, HUB_ADDRESS, r));
  t.teardown(() => hub.close());
  const hubPort = (hub.address() as AddressInfo).port;

  // Device a: a server on its address plus one on its own 127.0.0.1; it also calls the hub.
  const devA = nsExec(
    a.name,
    `const net=require('net');let n=0;const ready=()=>{if(++n===2){const c=net.connect(${hubPort},'${HUB_ADDRESS}');let s='';c.on('data',d=>s+=d);c.on('end',()=>console.log('hub said '+s.trim()));c.on('error',e=>console.log('hub error '+e.code));}};` +
      `net.createServer(s=>s.end('a\\n')).listen(8443,'${a.address}',ready);net.createServer(s=>s.end('a-lo\\n')).listen(9999,'127.0.0.1',ready);`,
  );
  t.teardown(() => devA.kill());
  t.equal(await firstLine(devA), 'hub said hub', 'the device reaches the hub address');

  const ask = (port: number, host: string): Promise<string> =>
    new Promise((resolve) => {
      const c = connect(port, host);
      let s = '';
      c.on('data', (d) => (s += d.toString()));
      c.on('end', () => resolve(s.trim()));
      c.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
    });
  t.equal(await ask(8443, a.address), 'a', 'the drill reaches the device over its veth');

  // Device b's 127.0.0.1 is b's own: a's loopback server is not there.
  const devB = nsExec(
    b.name,
    `const c=require('net').connect(9999,'127.0.0.1');c.on('data',d=>console.log('got '+d));c.on('error',e=>console.log('error '+e.code));`,
  );
  t.teardown(() => devB.kill());
  t.equal(await firstLine(devB), 'error ECONNREFUSED', "another device's loopback is not shared");

  devA.kill();
  devB.kill();
  await tearDownNamespaces(devices);
  const left = (await run('ip', ['netns', 'list'])).stdout;
  t.notMatch(left, new RegExp(`\\b${a.name}\\b`), 'namespace removed');
  t.notMatch(left, new RegExp(`\\b${b.name}\\b`), 'namespace removed');
}

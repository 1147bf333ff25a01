/**
 * The link-degradation fault's pure parts (tc arguments, tbf counters), then,
 * where namespaces and tc work, a real shaper on a namespace's loopback: a
 * transfer through it is held to the shaped rate and the counters see it.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { parseTbfStats, tbfArgs, tbfAvailable } from '../../../bench/drill/faults/net-degrade.js';
import { namespacesAvailable } from '../../../bench/drill/netns.js';

const run = promisify(execFile);

t.test('tbfArgs: rate, a burst of at least ten frames, a bounded queue', async (t) => {
  t.same(tbfArgs('qd1-3', 2000), [
    'qdisc',
    'replace',
    'dev',
    'qd1-3',
    'root',
    'tbf',
    'rate',
    '2000kbit',
    'burst',
    '15000',
    'latency',
    '200ms',
  ]);
  t.equal(tbfArgs('x', 100_000)[9], '50000', 'burst grows with the rate (4 ms worth)');
});

t.test('parseTbfStats reads the counters of tc -s output', async (t) => {
  const text =
    'qdisc tbf 8004: root refcnt 2 rate 2Mbit burst 3200b lat 200ms \n' +
    ' Sent 412345 bytes 290 pkt (dropped 3, overlimits 117 requeues 0) \n backlog 0b 0p requeues 0\n';
  t.same(parseTbfStats(text), { sentBytes: 412345, dropped: 3, overlimits: 117 });
  t.equal(
    parseTbfStats(
      'qdisc noqueue 0: root refcnt 2 \n Sent 10 bytes 1 pkt (dropped 0, overlimits 0 requeues 0)',
    ),
    null,
    'not a tbf',
  );
  t.equal(parseTbfStats(''), null);
  t.equal(parseTbfStats('qdisc tbf 1: root garbage'), null);
});

const ns = `qdt${process.pid % 100000}`;

async function probe(): Promise<string | false> {
  if (!(await namespacesAvailable()).ok) return 'network namespaces unavailable';
  try {
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // A veth's MTU: tbf drops packets larger than its bucket (lo's MTU is 64 KiB).
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'mtu', '1500']);
  } catch (err) {
    return `cannot make a namespace: ${(err as Error).message}`;
  }
  return (await tbfAvailable('lo', ns)) ? false : 'tc tbf unavailable';
}
t.test('real shaper', async (t) => {
  const skip = await probe();
  t.teardown(() => run('ip', ['netns', 'delete', ns]).catch(() => undefined));
  await t.test('a real tbf holds a transfer to its rate', { skip }, (t) => realShaper(t));
});

async function realShaper(t: Test): Promise<void> {
  await run('tc', ['-n', ns, ...tbfArgs('lo', 2000)]);
  // 200 kB over TCP on the shaped loopback: at 2 Mbit/s (250 kB/s) that is about 0.8 s.
  const code =
    "const net=require('net');const s=net.createServer(c=>{c.end(Buffer.alloc(200000))}).listen(0,'127.0.0.1',()=>{" +
    "const t0=Date.now();let n=0;const c=net.connect(s.address().port,'127.0.0.1');c.on('data',d=>n+=d.length);" +
    "c.on('end',()=>{console.log(JSON.stringify({n,ms:Date.now()-t0}));s.close()})})";
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let o = '';
    child.stdout.on('data', (b: Buffer) => (o += b.toString()));
    child.on('exit', (c) => (c === 0 ? resolve(o) : reject(new Error(`exit ${c}`))));
  });
  const r = JSON.parse(out) as { n: number; ms: number };
  t.equal(r.n, 200000, 'all bytes arrive');
  t.ok(r.ms >= 400, `shaped: 200 kB took ${r.ms} ms (unshaped loopback: a few ms)`);
  const stats = parseTbfStats((await run('tc', ['-n', ns, '-s', 'qdisc', 'show', 'dev', 'lo'])).stdout);
  t.ok(stats && stats.sentBytes >= 200000, `tbf counted ${stats?.sentBytes} bytes`);
  t.ok(stats && stats.overlimits > 0, 'the bucket ran dry (overlimits)');
}

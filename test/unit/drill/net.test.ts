/**
 * The bundle server's Range parsing and the cutting proxy: a download through
 * the proxy is cut once, and a Range request for the rest completes it.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { BundleServer, parseRange } from '../../../bench/drill/bundle-server.js';
import { CuttingProxy, throttleDelayMs } from '../../../bench/drill/faults/net-proxy.js';
import { createCoreTlsIdentity } from '../../../bench/core/signer.js';

t.test('parseRange', async (t) => {
  t.equal(parseRange(undefined, 10), 'none');
  t.equal(parseRange('items=1-2', 10), 'none');
  t.same(parseRange('bytes=4-', 10), { start: 4, end: 9 });
  t.same(parseRange('bytes=2-5', 10), { start: 2, end: 5 });
  t.same(parseRange('bytes=2-50', 10), { start: 2, end: 9 });
  t.same(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  t.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
  t.equal(parseRange('bytes=5-2', 10), 'unsatisfiable');
  t.equal(parseRange('bytes=-', 10), 'none');
});

t.test('throttleDelayMs', async (t) => {
  t.equal(throttleDelayMs(1000, 0, 0, 0), 0, 'unlimited');
  t.equal(throttleDelayMs(1000, 1000, 0, 0), 1000);
  t.equal(throttleDelayMs(1000, 1000, 0, 400), 600);
  t.equal(throttleDelayMs(1000, 1000, 0, 2000), 0);
});

function get(
  url: string,
  ca: string,
  range?: string,
): Promise<{ status: number; body: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    const req = request(url, { ca, headers: range ? { range } : {}, agent: false }, (res) => {
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', (e) =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), error: e.message }),
      );
      res.on('aborted', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), error: 'aborted' }),
      );
    });
    req.on('error', (e) => resolve({ status: 0, body: Buffer.concat(parts), error: e.message }));
    req.end();
  });
}

t.test('a cut download resumes by Range through the proxy', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drill-net-'));
  const file = join(dir, 'b.qpb');
  const data = randomBytes(600_000);
  await writeFile(file, data);
  const tls = await createCoreTlsIdentity(['127.0.0.1']);
  const server = new BundleServer(tls);
  server.files.set('/b.qpb', file);
  const port = await server.listen('127.0.0.1');
  const proxy = new CuttingProxy({
    listenHost: '127.0.0.1',
    upstreamHost: '127.0.0.1',
    upstreamPort: port,
    cutAfterBytes: 200_000,
    bytesPerSecond: 20 * 1024 * 1024,
  });
  const cuts: number[] = [];
  proxy.on('cut', (e: { afterBytes: number }) => cuts.push(e.afterBytes));
  const pport = await proxy.listen();
  t.teardown(async () => {
    await proxy.close();
    await server.close();
  });
  const url = `https://127.0.0.1:${pport}/b.qpb`;
  const first = await get(url, tls.caPem);
  t.ok(first.error, `the first download was cut (${first.error})`);
  t.ok(first.body.length < data.length);
  t.same(cuts, [200_000]);
  const have = first.body.length;
  const rest = await get(url, tls.caPem, `bytes=${have}-`);
  t.equal(rest.status, 206);
  t.equal(rest.error, undefined);
  const whole = Buffer.concat([first.body, rest.body]);
  t.equal(createHash('sha256').update(whole).digest('hex'), createHash('sha256').update(data).digest('hex'));
  t.equal(server.rangeRequests, 1);
  t.equal(proxy.cutsDone, 1);
  t.equal((await get(`https://127.0.0.1:${pport}/nope`, tls.caPem)).status, 404);
  t.equal((await get(url, tls.caPem, 'bytes=600000-')).status, 416);
});

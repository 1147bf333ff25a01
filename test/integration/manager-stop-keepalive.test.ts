/**
 * A Core polling a device's Core API over a kept-alive connection (as it does while it watches
 * an update) must not hold the device when it stops to reboot into the new slot: the runtime's
 * HTTPS server closing waited for that connection, and a drill saw devices stuck in `rebooting`
 * until the Core gave up five minutes later. Now stop() sweeps idle connections while the
 * servers close and cuts busy ones after a 2 s grace.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createCoreTlsIdentity } from '../../bench/core/signer.js';
import { CliProcess, ROOT } from '../helpers/processes.js';

const HOST = '127.0.3.7';

t.test('a stopping runtime is not held by a polling keep-alive client', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qp-stop-ka-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dev = new CliProcess([
    'start',
    '--board',
    path.join(ROOT, 'board-configs', 'virtual.json'),
    '--state-dir',
    path.join(dir, 'state'),
    '--address',
    HOST,
    '--name',
    'stop-keepalive',
  ]);
  t.teardown(() => dev.stop());
  await dev.waitFor((r) => r.event === 'ready', 60_000);
  const tls = await createCoreTlsIdentity(['127.0.0.1']);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const sockets = new Set<unknown>();
  const get = (): Promise<number> =>
    new Promise((resolve) => {
      const req = request(
        {
          host: HOST,
          port: 8443,
          path: '/api/v1/core/firmware',
          agent,
          cert: tls.cert,
          key: tls.key,
          rejectUnauthorized: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('socket', (s) => sockets.add(s));
      req.on('error', () => resolve(-1));
      req.end();
    });
  let polls = 0;
  let polling = true;
  const poller = (async () => {
    // Back to back: a request is nearly always in flight when the stop comes.
    while (polling) if ((await get()) === 200) polls++;
  })();
  await new Promise((r) => setTimeout(r, 800));
  t.ok(polls >= 3, `${polls} status polls answered before the stop`);
  t.equal(sockets.size, 1, 'all on one kept-alive connection');
  const t0 = Date.now();
  dev.child.kill('SIGTERM');
  const exit = await Promise.race([dev.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
  polling = false;
  await poller;
  t.ok(exit, `the runtime exited ${exit ? `after ${Date.now() - t0} ms` : 'not within 20 s'} while polled`);
  t.equal(exit?.code, 0, 'a clean exit');
});

/**
 * systemd socket activation, as systemd does it: this test listens on two TCP sockets (the
 * "socket units"), starts `qperiph start` with them as fds 3 and 4 plus LISTEN_PID (the child's
 * own pid, set through socketActivationSpawn), LISTEN_FDS=2 and LISTEN_FDNAMES=http:https, closes
 * its own copies and talks HTTP and HTTPS to the child on those sockets. Loopback 127.0.3.200.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { socketActivationSpawn } from '../../firmware/systemd/listen-fds.js';
import { assertBuilt, CLI, ROOT } from '../helpers/processes.js';

const HOST = '127.0.3.200';

async function listenSocket(): Promise<{ server: Server; fd: number; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { server, fd, port: (server.address() as { port: number }).port };
}

function get(secure: boolean, port: number, url: string): Promise<{ status: number; body: string }> {
  const request = secure ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      { host: HOST, port, path: url, method: 'GET', rejectUnauthorized: false, timeout: 10_000 },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

t.test('qperiph start serves the Manager on sockets passed by LISTEN_FDS', async (t) => {
  assertBuilt();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qp-sa-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const http = await listenSocket();
  const https = await listenSocket();
  const r = socketActivationSpawn(
    process.execPath,
    [
      CLI,
      'start',
      '--board',
      path.join(ROOT, 'board-configs', 'virtual.json'),
      '--state-dir',
      path.join(dir, 'state'),
      '--address',
      HOST,
      '--control-port',
      '17209',
      // would be used only if the passed sockets were ignored
      '--http-port',
      '0',
      '--https-port',
      '0',
    ],
    [
      { fd: http.fd, name: 'http' },
      { fd: https.fd, name: 'https' },
    ],
    { ...process.env, NOTIFY_SOCKET: undefined, WATCHDOG_USEC: undefined },
  );
  const child = spawn(r.file, r.args, { env: r.env, stdio: ['ignore', 'pipe', 'pipe', ...r.extraStdio] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  // the child holds its own copies now; ours would otherwise take some of the connections
  await new Promise<void>((resolve) => http.server.close(() => resolve()));
  await new Promise<void>((resolve) => https.server.close(() => resolve()));

  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no manager_listening:\n${out}\n${err}`)), 30_000);
    child.on('exit', (code) => reject(new Error(`exited ${code}:\n${out}\n${err}`)));
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      for (const line of out.split('\n')) {
        if (!line.includes('"manager_listening"')) continue;
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
      }
    });
  });
  t.same(listening['socketActivated'], { http: true, https: true }, 'both sockets used');
  t.equal(listening['httpPort'], http.port, 'HTTP on the passed socket');
  t.equal(listening['httpsPort'], https.port, 'HTTPS on the passed socket');

  const a = await get(false, http.port, '/api/v1/auth');
  t.equal(a.status, 200);
  t.equal((JSON.parse(a.body) as { passwordSet: boolean }).passwordSet, false);
  const b = await get(true, https.port, '/api/v1/auth');
  t.equal(b.status, 200, 'TLS on the passed socket');

  child.kill('SIGTERM');
  await exited;
  t.equal(child.exitCode, 0, 'clean stop');
});

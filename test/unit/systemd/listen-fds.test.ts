import t from 'tap';
import {
  LISTEN_FDS_START,
  ListenFdsError,
  managerListenFds,
  parseListenFds,
  socketActivationSpawn,
  withoutListenEnv,
} from '../../../firmware/systemd/listen-fds.js';

t.test('parse: names, defaults, not for us', async (t) => {
  t.same(parseListenFds({ LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'http:https' }, 42), [
    { fd: 3, name: 'http' },
    { fd: 4, name: 'https' },
  ]);
  t.equal(LISTEN_FDS_START, 3);
  t.same(
    parseListenFds({ LISTEN_PID: '42', LISTEN_FDS: '2' }, 42),
    [
      { fd: 3, name: 'unknown' },
      { fd: 4, name: 'unknown' },
    ],
    'no names: unknown (as systemd)',
  );
  t.same(parseListenFds({ LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: ':https' }, 42)[0], {
    fd: 3,
    name: 'unknown',
  });
  t.same(
    parseListenFds({ LISTEN_PID: '41', LISTEN_FDS: '2', LISTEN_FDNAMES: 'http:https' }, 42),
    [],
    'another pid',
  );
  t.same(parseListenFds({ LISTEN_FDS: '2' }, 42), [], 'no LISTEN_PID');
  t.same(parseListenFds({ LISTEN_PID: '42' }, 42), [], 'no LISTEN_FDS');
  t.same(parseListenFds({}, 42), []);
  t.same(parseListenFds({ LISTEN_PID: '42', LISTEN_FDS: '0', LISTEN_FDNAMES: '' }, 42), []);
});

t.test('parse: malformed values are a typed error', async (t) => {
  const bad: Array<Record<string, string>> = [
    { LISTEN_PID: '-1', LISTEN_FDS: '1' },
    { LISTEN_PID: '42x', LISTEN_FDS: '1' },
    { LISTEN_PID: '', LISTEN_FDS: '1' },
    { LISTEN_PID: '42', LISTEN_FDS: 'two' },
    { LISTEN_PID: '42', LISTEN_FDS: '1.5' },
    { LISTEN_PID: '42', LISTEN_FDS: '65' },
    { LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'http' },
    { LISTEN_PID: '42', LISTEN_FDS: '1', LISTEN_FDNAMES: 'http:https' },
  ];
  for (const env of bad) {
    t.throws(() => parseListenFds(env, 42), { code: 'SYSTEMD_ERR_LISTEN_FDS' }, JSON.stringify(env));
  }
  t.ok(new ListenFdsError('x') instanceof Error);
});

t.test('fuzz: never anything but a list or the typed error', async (t) => {
  const alphabet = ['0', '1', '2', '3', '42', ':', 'http', '-', ' ', '9999999999', ''];
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % alphabet.length;
  const pick = () => Array.from({ length: rnd() % 4 }, () => alphabet[rnd()]).join('');
  for (let i = 0; i < 2000; i++) {
    const env = { LISTEN_PID: pick(), LISTEN_FDS: pick(), LISTEN_FDNAMES: pick() };
    try {
      const fds = parseListenFds(env, 42);
      if (fds.length > 0) {
        t.equal(Number(env.LISTEN_PID), 42);
        t.equal(fds.length, Number(env.LISTEN_FDS));
      }
    } catch (err) {
      if ((err as ListenFdsError).code !== 'SYSTEMD_ERR_LISTEN_FDS') throw err;
    }
  }
});

t.test('manager sockets by name', async (t) => {
  t.same(
    managerListenFds([
      { fd: 3, name: 'https' },
      { fd: 4, name: 'http' },
      { fd: 5, name: 'metrics' },
    ]),
    { http: 4, https: 3, unused: [{ fd: 5, name: 'metrics' }] },
  );
  t.same(managerListenFds([]), { unused: [] });
  t.throws(
    () =>
      managerListenFds([
        { fd: 3, name: 'http' },
        { fd: 4, name: 'http' },
      ]),
    { code: 'SYSTEMD_ERR_LISTEN_FDS' },
  );
});

t.test('environment for children', async (t) => {
  t.same(withoutListenEnv({ A: '1', LISTEN_PID: '1', LISTEN_FDS: '2', LISTEN_FDNAMES: 'x:y' }), { A: '1' });
  const r = socketActivationSpawn(
    '/usr/bin/node',
    ['cli.js', 'start'],
    [
      { fd: 3, name: 'http' },
      { fd: 4, name: 'https' },
    ],
    { PATH: '/bin', LISTEN_PID: '1', LISTEN_FDS: '9' },
  );
  t.same(r, {
    file: '/bin/sh',
    args: ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', '/usr/bin/node', 'cli.js', 'start'],
    env: { PATH: '/bin', LISTEN_FDS: '2', LISTEN_FDNAMES: 'http:https' },
    extraStdio: [3, 4],
  });
  t.throws(() => socketActivationSpawn('x', [], [{ fd: 3, name: 'a:b' }], {}), {
    code: 'SYSTEMD_ERR_LISTEN_FDS',
  });
});

t.test('the shell sets LISTEN_PID to the exec-ed child', async (t) => {
  const { spawn } = await import('node:child_process');
  const r = socketActivationSpawn(
    process.execPath,
    [
      '-e',
      'process.stdout.write(JSON.stringify([process.pid, process.env.LISTEN_PID, process.env.LISTEN_FDNAMES]))',
    ],
    [],
    process.env,
  );
  const child = spawn(r.file, r.args, { env: r.env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  await new Promise((resolve) => child.on('exit', resolve));
  const [pid, listenPid, names] = JSON.parse(out) as [number, string, string];
  t.equal(pid, child.pid, 'exec kept the pid');
  t.equal(listenPid, String(child.pid));
  t.equal(names, '');
});

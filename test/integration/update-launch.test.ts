/**
 * The app-slot launcher with the real runtime on the virtual board
 * (127.0.2.120, ports 28080/28443/28700): a supervisor plays systemd
 * (Restart=on-failure) around `node dist/firmware/launch.js --app-root
 * <state>/app -- start ...`. A signed app bundle made from the project's own
 * dist/ + package.json (new version) is uploaded; the runtime exits 75, the
 * launcher starts the trial slot, the new version reports itself and commits.
 * Then a broken app bundle (cli.js throws): the trial crashes, the next start
 * runs the committed slot, which records the rollback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createPki } from '../../firmware/update/pki.js';
import { signAppBundle, stageRuntimeTree } from '../../firmware/update/runtime-tree.js';
import { provision } from '../fixtures/update/helpers.js';
import { ROOT } from '../helpers/processes.js';

const HOST = '127.0.2.120';
const HTTP = 28080;
const HTTPS = 28443;
const CONTROL = 28700;
const LAUNCH = join(ROOT, 'dist', 'firmware', 'launch.js');
// ~30 s on a quiet machine; generous because the CI box may be shared.
t.setTimeout(480_000);

type Rec = { event: string; [k: string]: unknown };

/** systemd's part: start the launcher again after a failure exit (75 included). */
class Supervisor {
  readonly runs: Array<{ records: Rec[]; code: number | null; signal: string | null; out: string }> = [];
  private child: ChildProcess | null = null;
  private stopping = false;
  private waiters: Array<() => void> = [];
  constructor(
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  start(): void {
    const run = { records: [] as Rec[], code: null as number | null, signal: null as string | null, out: '' };
    this.runs.push(run);
    const child = spawn(process.execPath, [LAUNCH, ...this.args], {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let partial = '';
    child.stdout!.on('data', (d: Buffer) => {
      partial += d.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        run.out += l + '\n';
        if (!l.startsWith('{')) continue;
        try {
          run.records.push(JSON.parse(l) as Rec);
        } catch {
          // not a log line
        }
      }
      this.wake();
    });
    child.stderr!.on('data', (d: Buffer) => {
      run.out += d.toString('utf8');
    });
    child.on('exit', (code, signal) => {
      run.code = code;
      run.signal = signal;
      this.wake();
      if (!this.stopping && code !== 0 && this.runs.length < 8) setTimeout(() => this.start(), 100);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The first record matching in run `i` (waits for the run to exist). */
  async waitFor(i: number, pred: (r: Rec) => boolean, timeoutMs = 120_000): Promise<Rec> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = this.runs[i];
      const hit = run?.records.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline)
        throw new Error(
          `timeout in run ${i}; runs: ${this.runs.map((r) => r.code).join(',')}\n${run?.out.slice(-3000) ?? ''}`,
        );
      await new Promise<void>((res) => {
        this.waiters.push(res);
        setTimeout(res, 250);
      });
    }
  }

  async waitExit(i: number, timeoutMs = 90_000): Promise<number | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const r = this.runs[i];
      if (r && (r.code !== null || r.signal !== null)) return r.code;
      await new Promise<void>((res) => {
        this.waiters.push(res);
        setTimeout(res, 250);
      });
    }
    throw new Error(`run ${i} did not exit`);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const done = new Promise((res) => c.once('exit', res));
      c.kill('SIGTERM');
      await done;
    }
  }
}

function https(
  method: string,
  path: string,
  o: { body?: Buffer | string; cookie?: string; csrf?: string; type?: string } = {},
): Promise<{ status: number; body: Record<string, unknown>; cookie: string | null }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (o.type) headers['content-type'] = o.type;
    if (o.cookie) headers['cookie'] = o.cookie;
    if (o.csrf) headers['x-csrf-token'] = o.csrf;
    const req = request(
      { host: HOST, port: HTTPS, path, method, headers, rejectUnauthorized: false, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          let body: Record<string, unknown>;
          try {
            body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
          } catch {
            body = {};
          }
          const sc = res.headers['set-cookie']?.[0];
          resolve({ status: res.statusCode ?? 0, body, cookie: sc ? (sc.split(';')[0] as string) : null });
        });
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

const PASSWORD = 'update-launch-test';
async function adminSession(first: boolean): Promise<{ cookie: string; csrf: string }> {
  const r = await https('POST', first ? '/api/v1/auth/setup' : '/api/v1/auth/login', {
    body: JSON.stringify({ password: PASSWORD }),
    type: 'application/json',
  });
  if (r.status !== 200 || !r.cookie) throw new Error(`login failed: ${r.status} ${JSON.stringify(r.body)}`);
  return { cookie: r.cookie, csrf: r.body['csrf'] as string };
}

async function upload(file: string, first: boolean): Promise<number> {
  const s = await adminSession(first);
  const r = await https('POST', '/api/v1/firmware/bundle', {
    body: await readFile(file),
    type: 'application/octet-stream',
    ...s,
  });
  if (r.status !== 202) throw new Error(`upload: ${r.status} ${JSON.stringify(r.body)}`);
  return r.status;
}

if (!existsSync(LAUNCH)) {
  t.fail(`${LAUNCH} is missing: run 'npm run build' first`);
} else {
  const base = await mkdtemp(join(tmpdir(), 'qperiph-update-launch-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const state = join(base, 'state');
  const pki = createPki({ alg: 'p256' });
  await provision(state, pki, 'dev');
  const projectVersion = (
    JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  ).version;

  // A real runtime tree with a new version, and a broken one.
  const good = join(base, 'tree-good');
  await stageRuntimeTree(ROOT, good, { version: '9.9.1' });
  const goodBundle = join(base, 'good.qpb');
  const sign = { key: pki.signer.key, chain: [pki.signer.der], securityVersion: 1, compatible: ['virtual'] };
  await signAppBundle({ ...sign, tree: good, out: goodBundle, version: '9.9.1' });
  const broken = join(base, 'tree-broken');
  await mkdir(join(broken, 'dist', 'firmware'), { recursive: true });
  await writeFile(
    join(broken, 'package.json'),
    JSON.stringify({ name: 'qperiph', version: '9.9.2', type: 'module' }),
  );
  await writeFile(join(broken, 'dist', 'firmware', 'cli.js'), "throw new Error('broken build');\n");
  const brokenBundle = join(base, 'broken.qpb');
  await signAppBundle({ ...sign, tree: broken, out: brokenBundle, version: '9.9.2' });

  const sup = new Supervisor(
    [
      '--app-root',
      join(state, 'app'),
      '--',
      'start',
      '--board',
      join(ROOT, 'board-configs', 'virtual.json'),
      '--state-dir',
      state,
      '--address',
      HOST,
      '--http-port',
      String(HTTP),
      '--https-port',
      String(HTTPS),
      '--control-port',
      String(CONTROL),
    ],
    { QPERIPH_UPDATE_HEALTH_DEADLINE_MS: '30000', NOTIFY_SOCKET: '' },
  );
  t.teardown(() => sup.stop());
  sup.start();

  t.test('fresh install: the launcher runs its own tree on slot a', async (t) => {
    t.match(await sup.waitFor(0, (r) => r.event === 'launch'), { slot: 'a', fresh: true });
    t.match(await sup.waitFor(0, (r) => r.event === 'starting'), { version: projectVersion });
    await sup.waitFor(0, (r) => r.event === 'ready');
  });

  t.test('a good app bundle: exit 75, trial slot b runs the new version and commits', async (t) => {
    await upload(goodBundle, true);
    t.equal(await sup.waitExit(0), 75, 'the runtime asks for a restart');
    t.match(await sup.waitFor(1, (r) => r.event === 'launch'), {
      slot: 'b',
      fresh: false,
      modules: 'linked',
    });
    t.match(await sup.waitFor(1, (r) => r.event === 'starting'), { version: '9.9.1' });
    t.match(await sup.waitFor(1, (r) => r.event === 'update_outcome'), {
      result: 'committed',
      version: '9.9.1',
    });
    t.equal(await readlink(join(state, 'app', 'current')), 'b');
    const journal = JSON.parse(await readFile(join(state, 'update.json'), 'utf8')) as {
      job: unknown;
      last: { result: string };
    };
    t.equal(journal.job, null);
    t.equal(journal.last.result, 'committed');
    const s = await adminSession(false);
    const fw = await https('GET', '/api/v1/firmware', s);
    t.match(fw, { status: 200, body: { version: '9.9.1' } }, 'the device reports the new version');
  });

  t.test('a broken app bundle: the trial crashes, the committed slot records the rollback', async (t) => {
    await upload(brokenBundle, false);
    t.equal(await sup.waitExit(1), 75);
    t.match(await sup.waitFor(2, (r) => r.event === 'launch'), { slot: 'a' });
    t.equal(await sup.waitExit(2), 1, 'the broken runtime crashes');
    t.match(sup.runs[2]?.out ?? '', /broken build/);
    t.match(await sup.waitFor(3, (r) => r.event === 'launch'), { slot: 'b' });
    t.match(await sup.waitFor(3, (r) => r.event === 'starting'), { version: '9.9.1' });
    t.match(await sup.waitFor(3, (r) => r.event === 'update_outcome'), {
      result: 'rolled-back',
      version: '9.9.2',
    });
    t.equal(await readlink(join(state, 'app', 'current')), 'b');
    t.notOk(existsSync(join(state, 'app', 'tryboot')), 'no trial pending');
    await sup.waitFor(3, (r) => r.event === 'ready');
  });

  t.test('SIGTERM reaches the runtime through the launcher', async (t) => {
    await sup.stop();
    const last = sup.runs.at(-1)!;
    t.equal(last.code, 0, last.out.slice(-500));
    t.ok(last.records.some((r) => r.event === 'stopped'));
    t.strictSame(
      sup.runs.map((r) => r.code),
      [75, 75, 1, 0],
    );
  });
}

/**
 * The app-slot launcher against temp app roots and tiny fake runtime trees
 * (a cli.js that prints its slot and exits with a chosen code): slot choice,
 * the one-shot trial flag, fallback after a crashed trial, fresh installs,
 * the node_modules link, exit codes and signal forwarding.
 */
import { EventEmitter } from 'node:events';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { DirectoryBootSelector, initDirectorySlots } from '../../../firmware/update/boot-selector.js';
import {
  EXIT_RESTART,
  launcherTree,
  linkModules,
  parseLaunchArgs,
  planLaunch,
  runLauncher,
} from '../../../firmware/update/launch.js';

const tmp = await mkdtemp(join(tmpdir(), 'qperiph-launch-unit-'));
t.teardown(() => rm(tmp, { recursive: true, force: true }));
let seq = 0;
const fresh = async (): Promise<{ app: string; own: string; out: string }> => {
  const d = join(tmp, `d${seq++}`);
  const own = join(d, 'own');
  await fakeRuntime(own, 'own');
  await mkdir(join(own, 'node_modules', 'dep'), { recursive: true });
  return { app: join(d, 'app'), own, out: join(d, 'out.txt') };
};

/** A runtime tree whose cli.js appends "<name> <args>" to $OUT and exits with $CODE_<name> (default 0). */
async function fakeRuntime(tree: string, name: string, body?: string): Promise<void> {
  await mkdir(join(tree, 'dist', 'firmware'), { recursive: true });
  await writeFile(
    join(tree, 'package.json'),
    JSON.stringify({ name: 'fake', version: name, type: 'module' }),
  );
  await writeFile(
    join(tree, 'dist', 'firmware', 'cli.js'),
    body ??
      `import { appendFileSync } from 'node:fs';
appendFileSync(process.env.OUT, ${JSON.stringify(name)} + ' ' + process.argv.slice(2).join(' ') + ' ' + process.env.QPERIPH_APP_ROOT + ' ' + process.env.QPERIPH_BOOTED_SLOT + '\\n');
process.exitCode = Number(process.env['CODE_' + ${JSON.stringify(name)}] ?? 0);
`,
  );
}

const quiet = { logger: createMemoryLogger() };

t.test('argument parsing: --app-root required, rest passed through', async (t) => {
  t.strictSame(parseLaunchArgs(['--app-root', '/x', '--', 'start', '--board', 'b']), {
    appRoot: '/x',
    cliArgs: ['start', '--board', 'b'],
  });
  t.strictSame(parseLaunchArgs(['--app-root=/y', 'version']), { appRoot: '/y', cliArgs: ['version'] });
  t.throws(() => parseLaunchArgs(['--', 'start']), { code: 'UPDATE_ERR_USAGE' });
  t.throws(() => parseLaunchArgs(['--app-root']), { code: 'UPDATE_ERR_USAGE' });
  t.throws(() => parseLaunchArgs(['--app-root', '--', 'x']), { code: 'UPDATE_ERR_USAGE' });
  t.throws(() => parseLaunchArgs(['--app-root=']), { code: 'UPDATE_ERR_USAGE' });
});

t.test('launcherTree finds the directory holding package.json', async (t) => {
  const { own } = await fresh();
  const url = new URL(`file://${join(own, 'dist', 'firmware', 'update', 'launch.js')}`).href;
  t.equal(launcherTree(url), own);
});

t.test('fresh install runs the launcher tree; slot a is recorded as booted', async (t) => {
  const { app, own, out } = await fresh();
  const r = await runLauncher(['--app-root', app, '--', 'start', '--x'], {
    ...quiet,
    ownTree: own,
    env: { ...process.env, OUT: out },
  });
  t.strictSame(r, { code: 0 });
  t.equal(await readFile(out, 'utf8'), `own start --x ${app} a\n`);
  t.equal(await readlink(join(app, 'current')), 'a');
  t.equal((await readFile(join(app, 'booted'), 'utf8')).trim(), 'a');
});

t.test('the trial slot runs once; a crash falls back to the committed slot', async (t) => {
  const { app, own, out } = await fresh();
  await initDirectorySlots(app);
  await fakeRuntime(join(app, 'a'), 'A');
  await fakeRuntime(join(app, 'b'), 'B');
  const sel = new DirectoryBootSelector(app);
  await sel.armTrial('b');
  const env = { ...process.env, OUT: out, CODE_B: '3' };
  t.strictSame(await runLauncher(['--app-root', app, '--', 'start'], { ...quiet, ownTree: own, env }), {
    code: 3,
  });
  t.strictSame(await runLauncher(['--app-root', app, '--', 'start'], { ...quiet, ownTree: own, env }), {
    code: 0,
  });
  t.equal(await readFile(out, 'utf8'), `B start ${app} b\nA start ${app} a\n`, 'trial once, then primary');
  t.equal(await sel.booted(), 'a');
  t.equal(await sel.primary(), 'a');
});

t.test('exit 75 is passed through; after a commit the new slot keeps running', async (t) => {
  const { app, own, out } = await fresh();
  await initDirectorySlots(app);
  await fakeRuntime(join(app, 'a'), 'A');
  await fakeRuntime(join(app, 'b'), 'B');
  const env = { ...process.env, OUT: out, CODE_A: String(EXIT_RESTART) };
  const sel = new DirectoryBootSelector(app);
  await sel.armTrial('b');
  // pretend A armed the trial and asked for a restart
  t.strictSame(await runLauncher(['--app-root', app, 'x'], { ...quiet, ownTree: own, env }), { code: 0 });
  await sel.commit('b');
  t.strictSame(await runLauncher(['--app-root', app, 'y'], { ...quiet, ownTree: own, env }), { code: 0 });
  await sel.armTrial('a');
  t.strictSame(await runLauncher(['--app-root', app, 'z'], { ...quiet, ownTree: own, env }), {
    code: EXIT_RESTART,
  });
  t.equal(await readFile(out, 'utf8'), `B x ${app} b\nB y ${app} b\nA z ${app} a\n`);
});

t.test('a trial slot without a runtime is marked bad and never runs', async (t) => {
  const { app, own } = await fresh();
  await initDirectorySlots(app);
  await fakeRuntime(join(app, 'a'), 'A');
  const sel = new DirectoryBootSelector(app);
  await sel.armTrial('b');
  const plan = await planLaunch(app, own);
  t.equal(plan.slot, 'a');
  t.equal(plan.badTrial, 'b');
  t.equal(plan.fresh, false);
  t.ok(await sel.isBad('b'));
  t.equal(await sel.booted(), 'a');
  // A bad-marked trial (markBad after arming) falls back too.
  await fakeRuntime(join(app, 'b'), 'B');
  await sel.armTrial('b');
  await sel.markBad('b');
  t.equal((await planLaunch(app, own)).slot, 'a');
});

t.test('node_modules: linked to the launcher tree when the slot has none', async (t) => {
  const { app, own } = await fresh();
  await initDirectorySlots(app);
  await fakeRuntime(join(app, 'b'), 'B');
  t.equal(await linkModules(app, join(app, 'b'), own), 'linked');
  t.equal(await readlink(join(app, 'node_modules')), join(own, 'node_modules'));
  t.equal(await linkModules(app, join(app, 'b'), own), 'already');
  // a stale link is replaced
  await rm(join(app, 'node_modules'));
  await symlink('/nonexistent', join(app, 'node_modules'));
  t.equal(await linkModules(app, join(app, 'b'), own), 'linked');
  t.equal(await readlink(join(app, 'node_modules')), join(own, 'node_modules'));
  await mkdir(join(app, 'a', 'node_modules'), { recursive: true });
  t.equal(await linkModules(app, join(app, 'a'), own), 'slot-has-own');
  t.equal(await linkModules(app, join(app, 'b'), join(tmp, 'nowhere')), 'no-source');
  t.ok((await lstat(join(app, 'node_modules'))).isSymbolicLink());
});

t.test('SIGTERM to the launcher reaches the runtime; the launcher exits as the runtime did', async (t) => {
  const { app, own, out } = await fresh();
  await initDirectorySlots(app);
  await fakeRuntime(
    join(app, 'a'),
    'A',
    `import { appendFileSync } from 'node:fs';
process.on('SIGTERM', () => { appendFileSync(process.env.OUT, 'got SIGTERM\\n'); process.exit(7); });
appendFileSync(process.env.OUT, 'ready\\n');
setInterval(() => {}, 1000);
`,
  );
  const signals = new EventEmitter();
  const done = runLauncher(['--app-root', app, '--', 'start'], {
    ...quiet,
    ownTree: own,
    signals,
    env: { ...process.env, OUT: out },
  });
  for (let i = 0; i < 200; i++) {
    if ((await readFile(out, 'utf8').catch(() => '')).includes('ready')) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  signals.emit('SIGTERM');
  t.strictSame(await done, { code: 7 });
  t.equal(signals.listenerCount('SIGTERM'), 0, 'handlers removed');
  t.equal(await readFile(out, 'utf8'), 'ready\ngot SIGTERM\n');
});

t.test('a runtime killed by a signal is reported as that signal', async (t) => {
  const { app, own } = await fresh();
  await initDirectorySlots(app);
  await fakeRuntime(join(app, 'a'), 'A', `process.kill(process.pid, 'SIGKILL');\n`);
  t.strictSame(await runLauncher(['--app-root', app], { ...quiet, ownTree: own }), { signal: 'SIGKILL' });
});

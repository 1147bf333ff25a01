/**
 * The supervisor's restart rule (pure), then real child processes: exit 75
 * restarts at once, a crash restarts, the restart limit gives up, a power
 * cut kills the whole group and powers it back on, stop ends it.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { groupRss, restartDecision, Supervisor } from '../../../bench/drill/supervisor.js';

t.test('restartDecision', async (t) => {
  const e = (code: number | null, stopping = false) => ({ code, signal: null, stopping });
  t.equal(restartDecision(e(75), 0, 3), 'restart-now');
  t.equal(restartDecision(e(1), 0, 3), 'restart-later');
  t.equal(restartDecision(e(null), 0, 3), 'restart-later', 'killed by a signal');
  t.equal(restartDecision(e(0), 0, 3), 'stay-down');
  t.equal(restartDecision(e(1, true), 0, 3), 'stay-down');
  t.equal(restartDecision(e(75), 3, 3), 'give-up');
});

const until = async (cond: () => boolean, ms = 90_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
};

t.test('exit 75 and crashes restart; the limit gives up', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drill-sup-'));
  const script = join(dir, 'app.mjs');
  // Run 1 exits 75, run 2 crashes, run 3 logs a JSON line and stays up.
  await writeFile(
    script,
    `import { readFileSync, writeFileSync } from 'node:fs';
const f = ${JSON.stringify(join(dir, 'n'))};
let n = 0; try { n = Number(readFileSync(f, 'utf8')); } catch {}
writeFileSync(f, String(n + 1));
if (n === 0) process.exit(75);
if (n === 1) throw new Error('boom');
console.log(JSON.stringify({ event: 'ready', run: n + 1 }));
setInterval(() => {}, 1000);
`,
  );
  const sup = new Supervisor({
    id: 'x',
    command: process.execPath,
    args: [script],
    env: process.env,
    restartDelayMs: 10,
    logFile: join(dir, 'log'),
  });
  t.teardown(() => sup.stop());
  const logs: unknown[] = [];
  sup.on('log', (l) => logs.push(l));
  sup.start();
  await until(() => logs.length > 0);
  t.same(logs, [{ event: 'ready', run: 3 }]);
  t.equal(sup.runs, 3);
  const states = sup.events.map((e) => `${e.state}${e.detail?.startsWith('code') ? ` ${e.detail}` : ''}`);
  t.same(states.slice(0, 7), [
    'starting',
    'exited code 75',
    'restarting',
    'starting',
    'exited code 1',
    'restarting',
    'starting',
  ]);
  t.match(sup.events[2]?.detail, /exit 75/);
  // Power cut: the group dies, the supervisor powers it back on.
  const pid = sup.pid as number;
  t.ok(sup.powerCut());
  await until(() => sup.runs === 4 && sup.pid !== null && sup.pid !== pid);
  t.ok(sup.events.some((e) => e.state === 'power-cut' && e.detail === 'signal SIGKILL'));
  t.ok((await groupRss(new Set([sup.pid as number]))) > 1_000_000, 'RSS of the group is sampled');
  await sup.stop();
  t.equal(sup.state, 'stopped');
  t.equal(sup.pid, null);
  t.notOk(sup.powerCut(), 'nothing to cut when stopped');
});

t.test('a process that always crashes is given up', async (t) => {
  const sup = new Supervisor({
    id: 'y',
    command: process.execPath,
    args: ['-e', 'process.exit(3)'],
    env: process.env,
    restartDelayMs: 1,
    restartLimit: 2,
  });
  t.teardown(() => sup.stop());
  const down = new Promise((r) => sup.once('down', r));
  sup.start();
  await down;
  t.equal(sup.state, 'gave-up');
  t.equal(sup.runs, 3);
});

/**
 * Crash injection: the compiled installer (dist/) runs as a child process and
 * is SIGKILLed at every journal transition, at random byte offsets of the slot
 * write, and at random times from outside; then the device is power-cycled
 * (the boot selector consumes its one-shot flag) and the journal is resumed.
 * After each trial: a committed, bootable primary slot holding exactly the old
 * or the new tree, one primary, no trial pending, no job left.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { createSimDevice } from '../../firmware/update/device-sim.js';
import { createPki } from '../../firmware/update/pki.js';
import { appArchive, makeBundle, provision, snapshotSlots } from '../fixtures/update/helpers.js';
import { ROOT } from '../helpers/processes.js';

const ENTRY = join(ROOT, 'dist', 'firmware', 'update', 'bundle-main.js');
const TRIALS = Number(process.env['QPERIPH_CRASH_TRIALS'] ?? 200);
// Each trial spawns node (~0.3 s): generous on a loaded 2-core machine.
t.setTimeout(600_000);

if (!existsSync(ENTRY)) {
  t.fail(`${ENTRY} is missing: run 'npm run build' first`);
} else {
  // tmpfs when there is one: SIGKILL keeps the page cache, so fsync latency only slows the trials.
  const base = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'qperiph-update-crash-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const pki = createPki();
  const template = join(base, 'template');
  await provision(template, pki);
  const big = (v: string) =>
    appArchive(v, [
      { type: 'file', path: 'lib/blob.bin', mode: 0o644, data: Buffer.alloc(150_000, v.charCodeAt(0)) },
    ]);
  const v1 = join(base, 'v1.qpb');
  await makeBundle(v1, pki, {
    version: '1.0.0',
    securityVersion: 1,
    payloads: [{ name: 'app', type: 'app', data: big('1.0.0') }],
  });
  const v2 = join(base, 'v2.qpb');
  const v2archive = big('2.0.0');
  await makeBundle(v2, pki, {
    version: '2.0.0',
    securityVersion: 2,
    installOrder: 'crash-order-2',
    payloads: [{ name: 'app', type: 'app', data: v2archive }],
  });
  {
    const dev = await createSimDevice({ root: template, logger: createMemoryLogger() });
    await dev.installer.install(v1);
    await dev.selector.boot();
    const r = await (
      await createSimDevice({ root: template, logger: createMemoryLogger() })
    ).installer.resume();
    if (r === null || r === 'rebooting' || r.result !== 'committed') throw new Error('template setup failed');
  }
  // System slots: a factory rootfs image in slot a; the update writes slot b chunk by chunk,
  // journalling its progress every 4 chunks, so a resumed write continues after the last one.
  const sysCs = 4096;
  const oldSys = randomBytes(40 * sysCs + 500);
  const newSys = randomBytes(40 * sysCs + 500);
  await writeFile(join(template, 'system', 'rootfs-a.img'), oldSys);
  const v2sys = join(base, 'v2sys.qpb');
  await makeBundle(v2sys, pki, {
    version: '2.0.0',
    securityVersion: 2,
    installOrder: 'crash-order-sys',
    chunkSize: sysCs,
    payloads: [{ name: 'rootfs', type: 'rootfs', data: newSys }],
  });
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const oldSysHash = sha(oldSys);
  const newSysHash = sha(newSys);
  const treeHash = async (dir: string): Promise<string> => {
    const h = createHash('sha256');
    for (const f of ['VERSION', 'bin/run.js', 'lib/blob.bin'])
      h.update(await readFile(join(dir, f)).catch(() => Buffer.from('missing')));
    h.update(await readlink(join(dir, 'start')).catch(() => 'missing'));
    return h.digest('hex');
  };
  const templatePrimary = await readlink(join(template, 'app', 'current'));
  const oldHash = await treeHash(join(template, 'app', templatePrimary));

  // The children run the compiled installer only: without tap's NODE_OPTIONS (its process-info
  // hook, and coverage) each one costs a third of the CPU time.
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(childEnv))
    if (k === 'NODE_OPTIONS' || /^(NODE_V8_COVERAGE|TAP|_TAPJS)/.test(k)) delete childEnv[k];

  type Step = 'install' | 'boot';
  interface Trial {
    name: string;
    system?: boolean;
    healthy: boolean;
    crash: { step: number; spec?: string; externalMs?: number };
  }
  const run = (args: string[], env: Record<string, string>, externalMs?: number) =>
    new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [ENTRY, ...args], {
        env: { ...childEnv, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const timer = externalMs === undefined ? null : setTimeout(() => child.kill('SIGKILL'), externalMs);
      child.on('exit', (code, signal) => {
        if (timer) clearTimeout(timer);
        resolve({ code, signal, out });
      });
    });

  const trials: Trial[] = [];
  for (const healthy of [true, false]) {
    for (const p of ['verified', 'writing', 'marked-bad', 'written', 'trial-armed', 'rebooting'])
      trials.push({ name: `install@${p}`, healthy, crash: { step: 0, spec: `phase:${p}` } });
    const bootPoints = healthy
      ? ['trial', 'committing', 'selector-committed']
      : ['trial', 'rolling-back', 'marked-bad-after-trial'];
    for (const p of bootPoints)
      trials.push({ name: `boot@${p}`, healthy, crash: { step: 1, spec: `phase:${p}` } });
    if (!healthy)
      trials.push({
        name: 'second-boot@marked-bad-after-trial',
        healthy,
        crash: { step: 2, spec: 'phase:marked-bad-after-trial' },
      });
  }
  let k = 0;
  while (trials.length < TRIALS) {
    const healthy = k % 2 === 0;
    if (k % 8 === 7) {
      const ms = 40 + (randomBytes(2).readUInt16BE() % 160);
      trials.push({ name: `install killed after ${ms} ms`, healthy, crash: { step: 0, externalMs: ms } });
    } else if (k % 4 === 1) {
      const off = randomBytes(4).readUInt32BE() % newSys.length;
      trials.push({
        name: `system install@byte ${off}`,
        system: true,
        healthy,
        crash: { step: 0, spec: `byte:${off}` },
      });
    } else {
      const off = randomBytes(4).readUInt32BE() % v2archive.length;
      trials.push({ name: `install@byte ${off}`, healthy, crash: { step: 0, spec: `byte:${off}` } });
    }
    k++;
  }

  const failures: string[] = [];
  const results = { committed: 0, rolledBack: 0, killed: 0, resumedWrites: 0, systemTrials: 0 };
  const runTrial = async (trial: Trial, i: number): Promise<void> => {
    const t0 = performance.now();
    if (process.env['QPERIPH_CRASH_DEBUG']) process.stderr.write(`start ${trial.name}\n`);
    const root = join(base, `t${i}`);
    await cp(template, root, { recursive: true, verbatimSymlinks: true });
    const steps: Array<{ step: Step; args: string[] }> = [
      { step: 'install', args: ['install', trial.system ? v2sys : v2, '--root', root] },
      { step: 'boot', args: ['boot', '--root', root, ...(trial.healthy ? [] : ['--unhealthy'])] },
      { step: 'boot', args: ['boot', '--root', root, ...(trial.healthy ? [] : ['--unhealthy'])] },
    ];
    for (let s = 0; s <= trial.crash.step; s++) {
      const last = s === trial.crash.step;
      const env: Record<string, string> = {
        QPERIPH_UPDATE_PROGRESS_BYTES: String(4 * sysCs),
        ...(last && trial.crash.spec ? { QPERIPH_UPDATE_CRASH: trial.crash.spec } : {}),
      };
      const r = await run(steps[s]!.args, env, last ? trial.crash.externalMs : undefined);
      if (r.signal === 'SIGKILL') results.killed++;
      if (last && trial.crash.spec && r.signal !== 'SIGKILL')
        failures.push(`${trial.name}: crash point not reached (${r.code}) ${r.out.slice(-300)}`);
      if (!last && r.code !== 0) failures.push(`${trial.name}: step ${s} exited ${r.code}`);
    }
    // Power cycles until the journal is idle (at most 4).
    let outcome: string | null = null;
    for (let c = 0; c < 4; c++) {
      const logger = createMemoryLogger();
      const dev = await createSimDevice({
        root,
        logger,
        healthy: () => Promise.resolve(trial.healthy),
        healthDeadlineMs: 100,
        progressEveryBytes: 4 * sysCs,
      });
      await dev.selector.boot();
      await dev.systemSelector.boot();
      const r = await dev.installer.resume();
      if (logger.records.some((x) => x.event === 'update.write-resumed' && Number(x['fromChunk']) > 0))
        results.resumedWrites++;
      if (r === 'rebooting') continue;
      outcome = r === null ? (dev.installer.current.last?.result ?? 'idle') : r.result;
      break;
    }
    const dev = await createSimDevice({ root, logger: createMemoryLogger() });
    const state = await dev.installer.load();
    const appRoot = join(root, 'app');
    const primary = await dev.selector.primary();
    const primaryHash = await treeHash(join(appRoot, primary));
    const problems: string[] = [];
    if (state.job !== null) problems.push(`job left in phase ${state.job.phase}`);
    if (existsSync(join(appRoot, 'tryboot'))) problems.push('a trial boot is still pending');
    if (await dev.selector.isBad(primary)) problems.push('the primary is marked bad');
    // The system slots: the primary image is the old one or, after a commit, the complete new one.
    const sysPrimary = await dev.systemSelector.primary();
    const sysHash = sha(
      await readFile(join(root, 'system', `rootfs-${sysPrimary}.img`)).catch(() => Buffer.alloc(0)),
    );
    if (existsSync(join(root, 'system', 'tryboot'))) problems.push('a system trial boot is still pending');
    if (await dev.systemSelector.isBad(sysPrimary)) problems.push('the system primary is marked bad');
    if (sysHash !== oldSysHash) {
      if (!trial.system) problems.push('an app update changed the system primary');
      else if (sysHash !== newSysHash) problems.push(`system primary ${sysPrimary} is neither old nor new`);
      else if (state.securityVersion !== 2)
        problems.push('new system primary but security version not committed');
      else if (!trial.healthy) problems.push('an unhealthy system trial ended on the new image');
      else results.committed++;
    } else if (trial.system) {
      if (!trial.healthy && state.securityVersion !== 1)
        problems.push('unhealthy trial committed a security version');
      results.rolledBack++;
    }
    if (trial.system) {
      results.systemTrials++;
      if (primaryHash !== oldHash) problems.push('a system update changed the app primary');
    } else if (primaryHash !== oldHash) {
      // Only a committed new version may be primary, and it must be complete.
      const newDir = join(appRoot, primary);
      const expect = createHash('sha256')
        .update(await readFile(join(newDir, 'VERSION')).catch(() => Buffer.alloc(0)))
        .digest('hex');
      if ((await readFile(join(newDir, 'VERSION'), 'utf8').catch(() => '')).trim() !== '2.0.0')
        problems.push(`primary ${primary} is neither old nor new (${expect})`);
      if ((await readFile(join(newDir, 'lib/blob.bin')).catch(() => Buffer.alloc(0))).length !== 150_000)
        problems.push('new primary incomplete');
      if (state.securityVersion !== 2) problems.push('new slot primary but security version not committed');
      if (outcome !== 'committed' && state.last?.result !== 'committed')
        problems.push(`new primary without a commit (${outcome})`);
      results.committed++;
    } else if (!trial.system) {
      if (!trial.healthy && state.securityVersion !== 1)
        problems.push('unhealthy trial committed a security version');
      results.rolledBack++;
    }
    // Once the switch happened, the new slot must stay; before it, a power cut falls back (both are consistent).
    if (trial.crash.spec === 'phase:selector-committed' && primaryHash === oldHash)
      problems.push('a commit that switched the slot was lost');
    if (!trial.healthy && primaryHash !== oldHash) problems.push('an unhealthy trial ended on the new slot');
    if (trial.system && trial.healthy && sysHash !== newSysHash)
      problems.push(`a healthy system trial did not end on the new image (${outcome})`);
    if (problems.length)
      failures.push(
        `${trial.name} (${trial.healthy ? 'healthy' : 'unhealthy'}): ${problems.join('; ')} [outcome ${outcome}, snapshot ${await snapshotSlots(appRoot)}]`,
      );
    await rm(root, { recursive: true, force: true });
    if (process.env['QPERIPH_CRASH_DEBUG'])
      process.stderr.write(`${trial.name} ${Math.round(performance.now() - t0)} ms\n`);
  };

  t.test(`${trials.length} crash trials end bootable, committed, with one primary`, async (t) => {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < trials.length) {
        const i = next++;
        await runTrial(trials[i]!, i);
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    t.same(failures, [], 'no trial broke an invariant');
    t.ok(results.killed >= trials.length - 25, `the installer was SIGKILLed in ${results.killed} trials`);
    if (results.systemTrials > 0)
      t.ok(
        results.resumedWrites > 0,
        `${results.resumedWrites} of ${results.systemTrials} system trials resumed a write after the last synced chunk`,
      );
    t.ok(
      results.committed > 0 && results.rolledBack > 0,
      `both endings seen (committed ${results.committed}, rolled back ${results.rolledBack})`,
    );
  });
}

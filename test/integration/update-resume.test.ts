/**
 * Resumed slot writes: the compiled installer writing a rootfs image is
 * SIGKILLed half-way; the journal holds the synced chunk count; the next start
 * re-hashes those chunks and continues after the last one that still matches
 * (a chunk damaged after the cut is written again), then the trial commits.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { createSimDevice } from '../../firmware/update/device-sim.js';
import { createPki } from '../../firmware/update/pki.js';
import { makeBundle, provision } from '../fixtures/update/helpers.js';
import { ROOT } from '../helpers/processes.js';

const ENTRY = join(ROOT, 'dist', 'firmware', 'update', 'bundle-main.js');
const CS = 4096;
const SIZE = 64 * CS + 1000;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const childEnv: NodeJS.ProcessEnv = { ...process.env };
for (const k of Object.keys(childEnv))
  if (k === 'NODE_OPTIONS' || /^(NODE_V8_COVERAGE|TAP|_TAPJS)/.test(k)) delete childEnv[k];

function run(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [ENTRY, ...args], {
      env: { ...childEnv, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code, signal) => resolve({ code, signal, out }));
  });
}

if (!existsSync(ENTRY)) {
  t.fail(`${ENTRY} is missing: run 'npm run build' first`);
} else {
  const base = await mkdtemp(join(tmpdir(), 'qperiph-update-resume-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const pki = createPki();
  const oldImage = randomBytes(SIZE);
  const newImage = randomBytes(SIZE);
  const bundle = join(base, 'sys.qpb');
  await makeBundle(bundle, pki, {
    version: '3.0.0',
    securityVersion: 3,
    chunkSize: CS,
    payloads: [{ name: 'rootfs', type: 'rootfs', data: newImage }],
  });

  const scenario = async (name: string, damageChunk: number | null): Promise<void> => {
    await t.test(name, async (t) => {
      const root = join(base, name.replace(/\W+/g, '-'));
      await provision(root, pki);
      await createSimDevice({ root, logger: createMemoryLogger() });
      await writeFile(join(root, 'system', 'rootfs-a.img'), oldImage);
      const killAt = 40 * CS + 123;
      const r = await run(['install', bundle, '--root', root], {
        QPERIPH_UPDATE_CRASH: `byte:${killAt}`,
        QPERIPH_UPDATE_PROGRESS_BYTES: String(8 * CS),
      });
      t.equal(r.signal, 'SIGKILL', r.out.slice(-500));
      const journal = JSON.parse(await readFile(join(root, 'state', 'update.json'), 'utf8')) as {
        job: { phase: string; written?: { payload: number; chunks: number } };
      };
      t.equal(journal.job.phase, 'writing');
      const claimed = journal.job.written?.chunks ?? 0;
      t.ok(claimed >= 32 && claimed <= 40, `journal claims ${claimed} synced chunks`);
      if (damageChunk !== null) {
        const fh = await open(join(root, 'system', 'rootfs-b.img'), 'r+');
        await fh.write(Buffer.from('damaged'), 0, 7, damageChunk * CS + 10);
        await fh.close();
      }
      const logger = createMemoryLogger();
      const dev = await createSimDevice({ root, logger });
      await dev.selector.boot();
      await dev.systemSelector.boot();
      t.equal(await dev.installer.resume(), 'rebooting');
      t.match(
        logger.records.find((x) => x.event === 'update.write-resumed'),
        { claimed, fromChunk: damageChunk ?? claimed },
        'continued after the last matching chunk',
      );
      t.equal(
        sha(await readFile(join(root, 'system', 'rootfs-b.img'))),
        sha(newImage),
        'slot b holds the image',
      );
      t.equal(sha(await readFile(join(root, 'system', 'rootfs-a.img'))), sha(oldImage), 'slot a untouched');
      const dev2 = await createSimDevice({ root, logger: createMemoryLogger() });
      await dev2.selector.boot();
      t.equal(await dev2.systemSelector.boot(), 'b');
      t.match(await dev2.installer.resume(), { result: 'committed', version: '3.0.0' });
      t.equal(await dev2.systemSelector.primary(), 'b');
    });
  };
  await scenario('resume after a cut', null);
  await scenario('resume with a damaged chunk', 5);
}

/**
 * Benchmark of the update path. Prints figures; asserts nothing.
 *
 *   npm run bench:update                       # 512 MB verification, 100 MB app install
 *   npm run bench:update -- --size 128 --app-size 50 --deadline 2000
 *
 * 1. Verification throughput of a signed bundle (chain, signature, every
 *    chunk hash) against `sha256sum` over the same file.
 * 2. Install time of an app bundle on a development device directory
 *    (verify pass, write + read-back, arm) and the commit after the trial boot.
 * 3. Worst-case time from a failing trial to the old slot running again:
 *    the health deadline plus the rollback work (the platform's reboot time
 *    comes on top on real hardware).
 * 4. With `--crash-trials N` (e.g. 1000): the SIGKILL crash-injection test
 *    (test/integration/update-crash.test.ts) with N trials instead of CI's 200;
 *    prints its summary and wall time.
 * All files live in a temp directory that is deleted at the end.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { writeBundle } from '../../firmware/update/bundle.js';
import { verifyBundleFile } from '../../firmware/update/bundle.js';
import { createSimDevice } from '../../firmware/update/device-sim.js';
import { packAppDir } from '../../firmware/update/pack.js';
import { createPki, derToPem } from '../../firmware/update/pki.js';
import { TrustStore } from '../../firmware/update/trust.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '512' },
    'app-size': { type: 'string', default: '100' },
    deadline: { type: 'string', default: '2000' },
    runs: { type: 'string', default: '3' },
    'crash-trials': { type: 'string', default: '0' },
  },
});
const MB = 1024 * 1024;
const size = Number(values.size) * MB;
const appSize = Number(values['app-size']) * MB;
const deadline = Number(values.deadline);
const runs = Number(values.runs);

const progress = (msg: string): void => {
  process.stderr.write(`… ${msg}\n`);
};

async function fillFile(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  const block = randomBytes(8 * MB);
  try {
    for (let o = 0; o < bytes; o += block.length) {
      await fh.write(block, 0, Math.min(block.length, bytes - o));
      block.writeUInt32BE(o >>> 0, 0);
      if ((o / block.length) % 16 === 0)
        process.stderr.write(`\r  writing ${Math.round((o / bytes) * 100)}%   `);
    }
    process.stderr.write('\r');
  } finally {
    await fh.close();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const dir = await mkdtemp(join(tmpdir(), 'qperiph-bench-update-'));
try {
  const pki = createPki({ alg: 'ed25519' });
  const store = new TrustStore({ channel: 'dev', anchors: [pki.root.cert] });

  // 1. verification throughput
  progress(`writing a ${values.size} MB rootfs payload and signing it`);
  const payload = join(dir, 'rootfs.img');
  await fillFile(payload, size);
  const bundle = join(dir, 'rootfs.qpb');
  let t0 = performance.now();
  await writeBundle(bundle, {
    product: 'qperiph',
    compatible: ['virtual'],
    version: '1.0.0',
    securityVersion: 1,
    installOrder: 'bench-rootfs',
    payloads: [{ name: 'rootfs', type: 'rootfs', path: payload }],
    key: pki.signer.key,
    chain: [pki.signer.der],
  });
  const signMs = performance.now() - t0;
  await rm(payload);
  const bundleBytes = (await stat(bundle)).size;
  const policy = {
    product: 'qperiph',
    board: 'virtual',
    securityVersion: 0,
    usedInstallOrders: [],
    nowMs: Date.now(),
    lastGoodMs: 0,
    buildTimeMs: 0,
  };
  const shaTimes: number[] = [];
  const verifyTimes: number[] = [];
  const hasSha = spawnSync('sha256sum', ['--version']).status === 0;
  for (let r = 0; r < runs; r++) {
    progress(`run ${r + 1}/${runs}: sha256sum and verify over ${(bundleBytes / MB).toFixed(0)} MB`);
    if (hasSha) {
      t0 = performance.now();
      spawnSync('sha256sum', [bundle]);
      shaTimes.push(performance.now() - t0);
    }
    t0 = performance.now();
    await verifyBundleFile(bundle, store, policy);
    verifyTimes.push(performance.now() - t0);
  }
  await rm(bundle);

  // 2. install of an app bundle
  progress(`building a ${values['app-size']} MB app tree and bundle`);
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'lib'), { recursive: true });
  const files = 10;
  for (let i = 0; i < files; i++)
    await fillFile(join(tree, 'lib', `part${i}.bin`), Math.floor(appSize / files));
  await writeFile(join(tree, 'VERSION'), '2.0.0\n');
  const archive = join(dir, 'app.qapp');
  await packAppDir(tree, archive);
  await rm(tree, { recursive: true });
  const appBundle = join(dir, 'app.qpb');
  await writeBundle(appBundle, {
    product: 'qperiph',
    compatible: ['virtual'],
    version: '2.0.0',
    securityVersion: 1,
    installOrder: 'bench-app',
    payloads: [{ name: 'app', type: 'app', path: archive }],
    key: pki.signer.key,
    chain: [pki.signer.der],
  });
  await rm(archive);
  const devRoot = join(dir, 'device');
  await mkdir(join(devRoot, 'anchors', 'dev'), { recursive: true });
  await writeFile(join(devRoot, 'anchors', 'dev', 'root.pem'), derToPem(pki.root.der));
  progress('installing the app bundle');
  const dev = await createSimDevice({ root: devRoot, logger: createMemoryLogger(), buildTimeMs: Date.now() });
  t0 = performance.now();
  await dev.installer.install(appBundle);
  const installMs = performance.now() - t0;
  await dev.selector.boot();
  t0 = performance.now();
  const commit = await (
    await createSimDevice({ root: devRoot, logger: createMemoryLogger(), buildTimeMs: Date.now() })
  ).installer.resume();
  const commitMs = performance.now() - t0;

  // 3. failed trial -> old slot running
  progress(`failing trial with a ${deadline} ms health deadline`);
  const small = join(dir, 'small.qpb');
  await writeBundle(small, {
    product: 'qperiph',
    compatible: ['virtual'],
    version: '3.0.0',
    securityVersion: 1,
    installOrder: 'bench-fail',
    payloads: [
      {
        name: 'app',
        type: 'app',
        data: (await import('../../firmware/update/app-archive.js')).encodeAppArchive([
          { type: 'file', path: 'VERSION', mode: 0o644, data: Buffer.from('3\n') },
        ]),
      },
    ],
    key: pki.signer.key,
    chain: [pki.signer.der],
  });
  const unhealthy = () =>
    createSimDevice({
      root: devRoot,
      logger: createMemoryLogger(),
      buildTimeMs: Date.now(),
      healthy: () => Promise.resolve(false),
      healthDeadlineMs: deadline,
    });
  await (await unhealthy()).installer.install(small);
  await dev.selector.boot();
  t0 = performance.now();
  await (await unhealthy()).installer.resume(); // trial: deadline passes, asks for a normal reboot
  await dev.selector.boot(); // the "reboot": the old slot is picked
  const back = await (await unhealthy()).installer.resume();
  const fallbackMs = performance.now() - t0;

  const mbps = (ms: number): string => (bundleBytes / MB / (ms / 1000)).toFixed(0);
  const v = median(verifyTimes);
  console.log(
    `\nupdate benchmark (node ${process.version}, ${values.size} MB verification, ${runs} runs, medians)`,
  );
  console.log(`  sign (hash + write)         ${(signMs / 1000).toFixed(2)} s`);
  if (hasSha) {
    const s = median(shaTimes);
    console.log(`  sha256sum                   ${(s / 1000).toFixed(2)} s  ${mbps(s)} MB/s`);
    console.log(
      `  bundle verify               ${(v / 1000).toFixed(2)} s  ${mbps(v)} MB/s  = ${(s / v).toFixed(2)}x sha256sum (goal >= 0.9x)`,
    );
  } else {
    console.log(
      `  bundle verify               ${(v / 1000).toFixed(2)} s  ${mbps(v)} MB/s  (sha256sum not installed)`,
    );
  }
  console.log(
    `  install ${values['app-size']} MB app bundle     ${(installMs / 1000).toFixed(2)} s  (verify pass + extract + read-back + arm)`,
  );
  console.log(
    `  trial boot -> committed     ${commitMs.toFixed(0)} ms  (${commit === null || commit === 'rebooting' ? String(commit) : commit.result})`,
  );
  console.log(
    `  failed trial -> old slot    ${fallbackMs.toFixed(0)} ms  (deadline ${deadline} ms + rollback; ${back === null || back === 'rebooting' ? String(back) : back.result}; add the platform reboot)`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}

// 4. many more crash trials than CI runs (the test's own invariants; needs the dev tree with tap)
const crashTrials = Number(values['crash-trials']);
if (crashTrials > 0) {
  progress(`${crashTrials} crash-injection trials`);
  const t0 = performance.now();
  const r = spawnSync(
    'npx',
    ['tap', '--disable-coverage', '--reporter=terse', '--timeout=0', 'test/integration/update-crash.test.ts'],
    {
      cwd: new URL('../../..', import.meta.url).pathname,
      env: { ...process.env, QPERIPH_CRASH_TRIALS: String(crashTrials) },
      encoding: 'utf8',
    },
  );
  const secs = (performance.now() - t0) / 1000;
  const summary = `${r.stdout ?? ''}`
    .split('\n')
    .filter((l) => /# \{|pass|fail/.test(l))
    .slice(-3);
  console.log(
    `  crash trials ${crashTrials}            ${secs.toFixed(1)} s  (${r.status === 0 ? 'all invariants held' : `FAILED, exit ${r.status}`}) ${summary.join(' ')}`,
  );
}

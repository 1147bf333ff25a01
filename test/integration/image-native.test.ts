/**
 * The card-CPU node_modules stage for real, offline: sockopt (whose
 * prebuilds/linux-arm64 file is a macOS binary) cross-compiled with
 * aarch64-linux-gnu-g++ and node-gyp against the Node headers on this machine
 * (--nodedir: nothing is downloaded), the bogus prebuilds pruned, every .node
 * left checked to be an AArch64 ELF. The npm install step is not run here
 * (it needs the registry); the tree is copied from the project's own.
 *
 * Opt-in: with QPERIPH_ARM64_ROOT=<an arm64 Debian root with nodejs, e.g. the
 * unpacked 'image base'> and qemu-aarch64-static, the built add-on is loaded
 * by that root's own node under qemu-user and sets a socket option.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ImageError } from '../../scripts/image/errors.js';
import { assertNativeTree, describeBinary } from '../../scripts/image/native-check.js';
import { findNodeDir, stageNativeModules } from '../../scripts/image/native-stage.js';
import { missingTools } from '../../scripts/image/build.js';

const PROJECT = join(import.meta.dirname, '..', '..');
const exec = promisify(execFile);
const noCc = (await missingTools(['aarch64-linux-gnu-g++'])).length > 0;
const headers = await findNodeDir().catch(() => null);
const skip = noCc
  ? 'aarch64-linux-gnu-g++ missing (apt-get install g++-aarch64-linux-gnu)'
  : headers
    ? false
    : 'no Node headers (include/node/node_api.h) next to node or in /usr';

t.test('sockopt cross-compiled for arm64 without a download', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qperiph-native-real-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const p of ['sockopt', 'node-addon-api', 'node-gyp-build'])
    await cp(join(PROJECT, 'node_modules', p), join(dir, 'node_modules', p), {
      recursive: true,
      verbatimSymlinks: true,
    });
  // the host build is what an ordinary npm install leaves: it must not survive
  const r = await stageNativeModules({ projectRoot: PROJECT, outDir: dir, arch: 'arm64', skipInstall: true });
  t.same(r.built, ['node_modules/sockopt']);
  t.same(r.addons, ['node_modules/sockopt/build/Release/sockopt.node']);
  t.ok(
    r.pruned.includes('node_modules/sockopt/prebuilds/linux-arm64/node.napi.node'),
    'the Mach-O "linux-arm64"',
  );
  const head = (await readFile(join(dir, 'node_modules/sockopt/build/Release/sockopt.node'))).subarray(0, 20);
  t.same(describeBinary(head), { format: 'elf', bits: 64, machine: 183, label: 'ELF 64-bit AArch64' });
  const scan = await assertNativeTree(join(dir, 'node_modules'), 'arm64', 'staged tree');
  t.same(scan.foreign, []);
  try {
    await assertNativeTree(join(dir, 'node_modules'), 'armhf', 'staged tree');
    t.fail('an arm64 tree must not pass for an armhf card');
  } catch (err) {
    t.equal((err as ImageError).code, 'IMAGE_ERR_NATIVE_FOREIGN');
    t.same((err as ImageError).files, ['sockopt/build/Release/sockopt.node']);
  }

  const arm64Root = process.env['QPERIPH_ARM64_ROOT'];
  const noQemu = (await missingTools(['qemu-aarch64-static'])).length > 0;
  await t.test(
    "loads in the card's node under qemu-user",
    {
      skip: !arm64Root
        ? 'set QPERIPH_ARM64_ROOT to an arm64 root with nodejs'
        : noQemu
          ? 'qemu-aarch64-static missing'
          : false,
    },
    async (t) => {
      const root = arm64Root as string;
      const mod = join(dir, 'node_modules/sockopt');
      const script = `const s=require(${JSON.stringify(mod)});const net=require('net');const srv=net.createServer().listen(0,'127.0.0.1',()=>{const c=net.connect(srv.address().port,'127.0.0.1',()=>{s.setsockopt(c,6,1,1);console.log(process.arch+' '+s.getsockopt(c,6,1));c.destroy();srv.close();});});`;
      const { stdout } = await exec(
        'qemu-aarch64-static',
        ['-L', root, join(root, 'usr/bin/node'), '-e', script],
        {
          timeout: 100_000,
        },
      );
      t.equal(stdout.trim(), 'arm64 1', 'TCP_NODELAY set and read back through the arm64 add-on');
    },
  );
});
